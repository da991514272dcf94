import math

import pytest
import torch

from blendmask.modeling.fcos.losses import fcos_losses, iou_loss


def _ltrb_to_boxes(ltrb):
    return torch.stack([-ltrb[:, 0], -ltrb[:, 1], ltrb[:, 2], ltrb[:, 3]], dim=1)


def _reference_giou(pred, target):
    """Independent GIoU (with AdelaiDet's +1 smoothing) from boxes around the origin."""
    p, t = _ltrb_to_boxes(pred), _ltrb_to_boxes(target)
    out = []
    for a, b in zip(p.tolist(), t.tolist()):
        iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = iw * ih
        area_a = (a[2] - a[0]) * (a[3] - a[1])
        area_b = (b[2] - b[0]) * (b[3] - b[1])
        union = area_a + area_b - inter
        enclose = (max(a[2], b[2]) - min(a[0], b[0])) * (max(a[3], b[3]) - min(a[1], b[1]))
        iou = (inter + 1) / (union + 1)
        out.append((iou, 1 - (iou - (enclose - union) / enclose)))
    return out


def test_iou_losses_against_box_geometry():
    torch.manual_seed(0)
    pred = torch.rand(20, 4) * 10 + 0.1
    target = torch.rand(20, 4) * 10 + 0.1
    weight = torch.rand(20)
    ref = _reference_giou(pred, target)
    giou = sum(w * g for w, (_, g) in zip(weight.tolist(), ref))
    assert iou_loss(pred, target, weight, "giou").item() == pytest.approx(giou, rel=1e-5)
    iou = sum(-math.log(i) for i, _ in ref)
    assert iou_loss(pred, target, None, "iou").item() == pytest.approx(iou, rel=1e-5)
    assert iou_loss(pred, pred, None, "linear_iou").item() == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(ValueError, match="LOC_LOSS_TYPE"):
        iou_loss(pred, target, None, "l1")


def test_fcos_losses_against_direct_formulas():
    torch.manual_seed(0)
    num_classes, alpha, gamma = 4, 0.25, 2.0
    logits = torch.randn(30, num_classes)
    labels = torch.full((30,), num_classes)
    labels[[2, 7, 11]] = torch.tensor([0, 3, 3])
    reg_pred = torch.rand(3, 4) + 0.5
    reg_targets = torch.rand(3, 4) + 0.5
    ctr_pred = torch.randn(3)
    ctr_targets = torch.rand(3)
    losses, denorm = fcos_losses(logits, reg_pred, ctr_pred, labels, reg_targets, ctr_targets,
                                 num_classes=num_classes, alpha=alpha, gamma=gamma)
    # focal loss written out element by element
    focal = 0.0
    for i in range(30):
        for c in range(num_classes):
            y = 1.0 if labels[i] == c else 0.0
            p = torch.sigmoid(logits[i, c]).item()
            pt = p if y else 1 - p
            a = alpha if y else 1 - alpha
            focal += -a * (1 - pt) ** gamma * math.log(pt)
    assert losses["loss_fcos_cls"].item() == pytest.approx(focal / 3, rel=1e-5)
    assert denorm == pytest.approx(ctr_targets.sum().item())
    assert losses["loss_fcos_loc"].item() == pytest.approx(
        iou_loss(reg_pred, reg_targets, ctr_targets).item() / ctr_targets.sum().item(), rel=1e-6)
    bce = sum(
        -(t * math.log(torch.sigmoid(x).item()) + (1 - t) * math.log(1 - torch.sigmoid(x).item()))
        for x, t in zip(ctr_pred, ctr_targets.tolist())
    )
    assert losses["loss_fcos_ctr"].item() == pytest.approx(bce / 3, rel=1e-5)


def test_no_positives_gives_finite_zero_box_losses():
    logits = torch.randn(10, 3, requires_grad=True)
    labels = torch.full((10,), 3)
    empty = torch.zeros(0, 4, requires_grad=True)
    losses, denorm = fcos_losses(logits, empty, torch.zeros(0), labels, torch.zeros(0, 4),
                                 torch.zeros(0), num_classes=3)
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_fcos_loc"].item() == 0 and losses["loss_fcos_ctr"].item() == 0
    assert losses["loss_fcos_cls"].item() > 0  # negatives still train the classifier
    sum(losses.values()).backward()
    assert logits.grad is not None
