"""Mask pasting and detection post-processing equal detectron2's, bit for bit."""

import torch
from detectron2.layers import paste_masks_in_image
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, Instances

from blendmask.modeling.postprocess import paste_masks, postprocess_instances


def _random_boxes(n, height, width, generator):
    """Boxes of many sizes, some crossing or outside the border, some degenerate."""
    ctr = torch.rand(n, 2, generator=generator) * torch.tensor([width * 1.2, height * 1.2]) - 0.1 * torch.tensor(
        [width, height])
    size = torch.rand(n, 2, generator=generator) ** 3 * torch.tensor([width, height]) + 0.3
    boxes = torch.cat([ctr - size / 2, ctr + size / 2], dim=1)
    boxes[:3, 2:] = boxes[:3, :2]  # zero width and height
    return boxes


def test_paste_masks_equals_detectron2_paste_masks_in_image():
    g = torch.Generator().manual_seed(0)
    height, width = 97, 131
    boxes = Boxes(_random_boxes(60, height, width, g))
    boxes.clip((height, width))  # as detector_postprocess does: detectron2 fails on boxes outside the image
    boxes = boxes.tensor
    probs = torch.rand(60, 14, 14, generator=g)
    ours = paste_masks(probs, boxes, (height, width))
    theirs = paste_masks_in_image(probs, Boxes(boxes), (height, width))
    assert ours.dtype == torch.bool and ours.shape == (60, height, width)
    assert theirs.any() and torch.equal(ours, theirs)
    assert torch.equal(paste_masks(probs, boxes, (height, width), 0.8),
                       paste_masks_in_image(probs, Boxes(boxes), (height, width), threshold=0.8))


def test_paste_masks_is_exact_for_values_at_the_threshold():
    """Values within float rounding of 0.5: any change of arithmetic would flip some of them."""
    g = torch.Generator().manual_seed(2)
    boxes = Boxes(_random_boxes(40, 150, 90, g))
    boxes.clip((150, 90))
    near_half = 0.5 + (torch.rand(40, 56, 56, generator=g) - 0.5) * 2e-6
    ours = paste_masks(near_half, boxes.tensor, (150, 90))
    theirs = paste_masks_in_image(near_half, boxes, (150, 90))
    assert 0 < theirs.sum() < theirs.numel() and torch.equal(ours, theirs)


def test_paste_masks_of_no_detections():
    out = paste_masks(torch.zeros(0, 14, 14), torch.zeros(0, 4), (20, 30))
    assert out.shape == (0, 20, 30) and out.dtype == torch.bool


def test_postprocess_instances_equals_detector_postprocess():
    g = torch.Generator().manual_seed(1)
    boxes = _random_boxes(40, 60, 80, g)
    det = Instances((60, 80), pred_boxes=Boxes(boxes), scores=torch.rand(40, generator=g),
                    pred_classes=torch.randint(0, 5, (40,), generator=g),
                    pred_masks=torch.rand(40, 1, 28, 28, generator=g))
    copy = Instances((60, 80), **{k: v.clone() for k, v in det.get_fields().items()})
    ours = postprocess_instances(det, 120, 150)
    theirs = detector_postprocess(copy, 120, 150)
    assert len(ours) == len(theirs) < 40  # empty boxes were dropped
    assert set(ours.get_fields()) == set(theirs.get_fields())
    for key in ("scores", "pred_classes", "pred_masks"):
        assert torch.equal(ours.get(key), theirs.get(key)), key
    assert torch.equal(ours.pred_boxes.tensor, theirs.pred_boxes.tensor)
