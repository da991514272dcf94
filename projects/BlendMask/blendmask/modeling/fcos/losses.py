"""FCOS losses: focal classification, IoU/GIoU box regression, centerness BCE."""

import torch
from detectron2.utils import comm
from fvcore.nn import sigmoid_focal_loss_jit
from torch.nn import functional as F


def iou_loss(pred, target, weight=None, loss_type: str = "giou"):
    """Sum of IoU-type losses between (P, 4) l,t,r,b distances from the same locations.

    IoU is (I + 1) / (U + 1) as AdelaiDet computes it. ``loss_type``: "iou" (-log IoU),
    "linear_iou" (1 - IoU) or "giou" (1 - GIoU). ``weight`` (P,) multiplies each term.
    """
    pred_area = (pred[:, 0] + pred[:, 2]) * (pred[:, 1] + pred[:, 3])
    target_area = (target[:, 0] + target[:, 2]) * (target[:, 1] + target[:, 3])
    w_inter = torch.min(pred[:, 0], target[:, 0]) + torch.min(pred[:, 2], target[:, 2])
    h_inter = torch.min(pred[:, 3], target[:, 3]) + torch.min(pred[:, 1], target[:, 1])
    w_enclose = torch.max(pred[:, 0], target[:, 0]) + torch.max(pred[:, 2], target[:, 2])
    h_enclose = torch.max(pred[:, 3], target[:, 3]) + torch.max(pred[:, 1], target[:, 1])
    area_inter = w_inter * h_inter
    area_union = target_area + pred_area - area_inter
    ious = (area_inter + 1.0) / (area_union + 1.0)
    if loss_type == "iou":
        losses = -torch.log(ious)
    elif loss_type == "linear_iou":
        losses = 1 - ious
    elif loss_type == "giou":
        area_enclose = w_enclose * h_enclose
        losses = 1 - (ious - (area_enclose - area_union) / area_enclose)
    else:
        raise ValueError(f"MODEL.FCOS.LOC_LOSS_TYPE must be iou, linear_iou or giou: {loss_type!r}")
    if weight is not None:
        losses = losses * weight
    return losses.sum()


def reduce_mean_across_workers(value: float, device) -> float:
    """Average a Python number over all workers (identity when not distributed)."""
    world_size = comm.get_world_size()
    if world_size == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(tensor)
    return tensor.item() / world_size


def fcos_losses(
    logits, reg_pred, ctrness_pred, labels, reg_targets, ctrness_targets,
    *, num_classes, alpha=0.25, gamma=2.0, loc_loss_type="giou", cls_weight=1.0,
):
    """The three FCOS losses, normalised as AdelaiDet does.

    Args:
        logits: (P, C) over all locations; labels: (P,) with ``num_classes`` = background.
        reg_pred, ctrness_pred, reg_targets (stride units), ctrness_targets: positives only,
            (F, 4), (F,), (F, 4), (F,).
    Returns:
        (losses dict, loss_denorm) where loss_denorm is the mean over workers of the sum of
        centerness targets (the box and mask losses divide by it).
    """
    pos = labels != num_classes
    num_pos_avg = max(reduce_mean_across_workers(float(pos.sum().item()), logits.device), 1.0)
    class_target = torch.zeros_like(logits)
    pos_idx = torch.nonzero(pos).squeeze(1)
    class_target[pos_idx, labels[pos_idx]] = 1
    cls_loss = sigmoid_focal_loss_jit(logits, class_target, alpha=alpha, gamma=gamma, reduction="sum")
    loss_denorm = max(reduce_mean_across_workers(ctrness_targets.sum().item(), logits.device), 1e-6)
    if pos_idx.numel() > 0:
        loc_loss = iou_loss(reg_pred, reg_targets, ctrness_targets, loc_loss_type) / loss_denorm
        ctr_loss = F.binary_cross_entropy_with_logits(
            ctrness_pred, ctrness_targets, reduction="sum") / num_pos_avg
    else:
        loc_loss = reg_pred.sum() * 0
        ctr_loss = ctrness_pred.sum() * 0
    losses = {
        "loss_fcos_cls": cls_loss / num_pos_avg * cls_weight,
        "loss_fcos_loc": loc_loss,
        "loss_fcos_ctr": ctr_loss,
    }
    return losses, loss_denorm
