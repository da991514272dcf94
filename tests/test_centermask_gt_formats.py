"""CenterMask trains on every ground-truth mask format (polygons, bitmasks from RLE or
INPUT.MASK_FORMAT bitmask), and centermask2's yaml files run through detectron2's own
GeneralizedRCNN + build_model with our CenterROIHeads, giving our CenterMask's outputs and losses."""

import numpy as np
import pytest
import torch
from centermask_fixtures import (
    BOX_ATOL,
    LOSS_RTOL,
    SCORE_ATOL,
    centermask_file,
    load_tiny_model,
    register_tiny_spec,
    training_inputs,
)
from detectron2.structures import BitMasks, Boxes, Instances, PolygonMasks
from detectron2.utils.events import EventStorage

from blendmask.modeling.centermask import maskiou_targets

# Polygons and their bitmasks differ by rasterisation along the outline: pixels whose coverage is
# partial are in or out. For a shape of perimeter P and area A that moves A by up to ~P/2 pixels,
# so the area fraction inside a box by ~P/(2A); our shapes are >= 20 px across (P/(2A) <= 0.1 for a
# 20 px square) and IoUs agree to a few hundredths. 0.05 is the tolerance, half the worst case.
IOU_ATOL = 0.05


def _l_shapes(height=96, width=120):
    """Four L-shaped polygons (boxes without their top-right quarter) and random proposal boxes
    around them, half reaching past the object so part of it lies outside."""
    rng = np.random.default_rng(0)
    polygons, boxes = [], []
    for x0, y0, w, h in ((5, 6, 40, 30), (50, 10, 36, 44), (20, 50, 60, 34), (70, 60, 30, 28)):
        xm, ym = x0 + w / 2, y0 + h / 2
        polygons.append([np.array([x0, y0, xm, y0, xm, ym, x0 + w, ym, x0 + w, y0 + h, x0, y0 + h], dtype=np.float64)])
        for _ in range(3):
            jitter = rng.uniform(-0.3, 0.3, 4) * [w, h, w, h]
            boxes.append([x0 + jitter[0], y0 + jitter[1], x0 + w + jitter[2], y0 + h + jitter[3]])
    return polygons, torch.tensor(boxes, dtype=torch.float32), (height, width)


def _fg(gt_masks, boxes, image_size):
    inst = Instances(image_size)
    inst.proposal_boxes = Boxes(boxes)
    inst.gt_masks = gt_masks
    return inst


def _targets(fg, logits):
    crops = fg.gt_masks.crop_and_resize(fg.proposal_boxes.tensor, logits.shape[-1])
    return maskiou_targets([fg], logits, crops)


def test_maskiou_targets_are_the_same_for_polygons_and_bitmasks():
    polygons, boxes, size = _l_shapes()
    index = torch.arange(len(boxes)) // 3
    as_polygons = PolygonMasks([polygons[i] for i in index])
    as_bitmasks = BitMasks.from_polygon_masks(as_polygons, *size)
    torch.manual_seed(0)
    logits = torch.randn(len(boxes), 28, 28) + 1.0  # a predicted mask covering most of each box
    from_polygons = _targets(_fg(as_polygons, boxes, size), logits)
    from_bitmasks = _targets(_fg(as_bitmasks, boxes, size), logits)
    assert from_bitmasks.dtype == torch.float64 and torch.isfinite(from_bitmasks).all()
    assert from_polygons.min() > 0.1  # real overlaps, not an empty comparison
    np.testing.assert_allclose(from_bitmasks.numpy(), from_polygons.numpy(), rtol=0, atol=IOU_ATOL)
    # the estimate of the object's full size sees the part outside the box: a box over half the
    # object scores lower than the same crop would if the object ended at the box
    half = torch.tensor([[5.0, 6.0, 25.0, 36.0]])
    full = torch.ones(1, 28, 28) * 5
    iou_half = _targets(_fg(BitMasks.from_polygon_masks(PolygonMasks([polygons[0]]), *size), half, size), full)
    assert iou_half.item() < 0.9


def test_maskiou_targets_reject_an_unknown_mask_type():
    _, boxes, size = _l_shapes()
    inst = _fg(torch.zeros(len(boxes), *size), boxes, size)
    with pytest.raises(TypeError, match="PolygonMasks or BitMasks"):
        maskiou_targets([inst], torch.zeros(len(boxes), 28, 28), torch.zeros(len(boxes), 28, 28))


def test_fixture_maskiou_targets_from_bitmasks_match_the_polygon_ones():
    """The centermask2 fixture's training step: the same foreground ROIs with their ground truth
    as bitmasks give MaskIoU targets within IOU_ATOL of the polygon ones (which equal centermask2's)."""
    model = load_tiny_model(eval_mode=False)
    inputs, record = training_inputs()
    gt = [inputs["instances"]]
    torch.manual_seed(record["train_seed"])
    with torch.no_grad(), EventStorage():
        images = model.preprocess_image([inputs])
        features = model.backbone(images.tensor)
        fcos = model.proposal_generator(images, features, gt)
        fg = model.roi_heads.sample_proposals([d["boxes"] for d in fcos.detections], gt)[0]
        pooled, _ = model.roi_heads.pool(features, [fg.proposal_boxes.tensor], images.image_sizes)
        logits = model.roi_heads.mask_head(pooled)[torch.arange(len(fg)), fg.gt_classes]
    bitmask_fg = _fg(BitMasks.from_polygon_masks(fg.gt_masks, *fg.image_size), fg.proposal_boxes.tensor,
                     fg.image_size)
    np.testing.assert_allclose(_targets(bitmask_fg, logits).numpy(), _targets(fg, logits).numpy(), rtol=0,
                               atol=IOU_ATOL)


def _detectron2_built_model():
    """centermask2's slim yaml as a centermask2 user's script builds it: detectron2's get_cfg, our
    add_centermask_config, merge_from_file, detectron2's build_model (GeneralizedRCNN)."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    from blendmask import add_centermask_config

    register_tiny_spec()
    cfg = add_centermask_config(get_cfg())
    cfg.merge_from_file(str(centermask_file("cm_tiny.yaml")))
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    DetectionCheckpointer(model).load(str(centermask_file("cm_tiny.pth")))
    return model


def test_centermask2_yaml_through_detectron2_build_model_equals_our_centermask():
    from PIL import Image

    d2 = _detectron2_built_model().eval()
    ours = load_tiny_model()
    assert type(d2).__name__ == "GeneralizedRCNN" and type(ours).__name__ == "CenterMask"
    assert d2.state_dict().keys() == ours.state_dict().keys()
    png = centermask_file("../adelaidet/tiny_blendmask_test_img0.png")
    bgr = np.asarray(Image.open(png).convert("RGB"))[:, :, ::-1]
    inputs = [{"image": torch.from_numpy(np.ascontiguousarray(bgr.transpose(2, 0, 1))).float()}]
    with torch.no_grad():
        a, b = d2(inputs)[0]["instances"], ours(inputs)[0]["instances"]
    assert len(a) == len(b) > 0
    torch.testing.assert_close(a.pred_boxes.tensor, b.pred_boxes.tensor, rtol=0, atol=BOX_ATOL)
    torch.testing.assert_close(a.scores, b.scores, rtol=0, atol=SCORE_ATOL)
    torch.testing.assert_close(a.mask_scores, b.mask_scores, rtol=0, atol=SCORE_ATOL)
    assert torch.equal(a.pred_classes, b.pred_classes)
    # masks: pixels on the 0.5 boundary may flip with float rounding (the fixture README's 1e-3)
    flipped = (a.pred_masks != b.pred_masks).sum().item()
    assert flipped <= 1e-3 * b.pred_masks.sum().item()


def test_centermask2_yaml_through_detectron2_build_model_trains_with_our_losses():
    inputs, record = training_inputs()
    losses = {}
    for name, model in (("d2", _detectron2_built_model().train()), ("ours", load_tiny_model(eval_mode=False))):
        torch.manual_seed(record["train_seed"])
        with EventStorage():
            losses[name] = {k: float(v) for k, v in model([inputs]).items()}
    assert losses["d2"].keys() == losses["ours"].keys() and "loss_maskiou" in losses["d2"]
    for key, value in losses["ours"].items():
        assert losses["d2"][key] == pytest.approx(value, rel=LOSS_RTOL), key
