"""Mask pasting and detection post-processing equal detectron2's, bit for bit."""

import torch
from detectron2.layers import paste_masks_in_image
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, Instances

from blendmask.inference import paste_masks, postprocess_detections


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


def test_postprocess_detections_equals_detector_postprocess():
    g = torch.Generator().manual_seed(1)
    boxes = _random_boxes(40, 60, 80, g)
    probs = torch.rand(40, 28, 28, generator=g)
    det = Instances((60, 80), pred_boxes=Boxes(boxes.clone()), scores=torch.rand(40, generator=g),
                    pred_classes=torch.randint(0, 5, (40,), generator=g), pred_masks=probs[:, None].clone())
    theirs = detector_postprocess(det, 120, 150)
    for paste in ("lazy", "detectron2", "grid"):
        ours = postprocess_detections(
            {"boxes": boxes, "scores": det.scores, "classes": det.pred_classes, "mask_probs": probs},
            (60, 80), (120, 150), paste=paste)
        assert len(ours["scores"]) == len(theirs) < 40  # empty boxes were dropped
        assert torch.equal(ours["scores"], theirs.scores) and torch.equal(ours["classes"], theirs.pred_classes)
        assert torch.equal(ours["boxes"], theirs.pred_boxes.tensor)
        assert torch.equal(ours["masks"], theirs.pred_masks), paste
    separable = postprocess_detections({"boxes": boxes, "mask_probs": probs}, (60, 80), (120, 150),
                                       paste="separable")
    # float rounding of the matrix-product form flips at most a few pixels at the threshold
    assert (separable["masks"] != theirs.pred_masks).float().mean() < 1e-4


def test_postprocess_without_paste_keeps_the_probabilities():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]])  # the second is outside
    out = postprocess_detections({"boxes": boxes, "mask_probs": torch.rand(2, 5, 5)}, (20, 20), (40, 40),
                                 paste=None)
    assert "masks" not in out and out["mask_probs"].shape == (1, 5, 5)
    assert out["boxes"].tolist() == [[0.0, 0.0, 20.0, 20.0]]


def test_unknown_paste_backend_is_a_clear_error():
    import pytest

    with pytest.raises(ValueError, match="paste backend"):
        paste_masks(torch.rand(1, 4, 4), torch.tensor([[0.0, 0, 2, 2]]), (4, 4), backend="fast")
