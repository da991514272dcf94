import numpy as np
import torch
from detectron2.structures import BitMasks, Boxes, Instances
from torch.nn import functional as F

from blendmask.inference import Locations
from blendmask.modeling.blendmask import Blender, blend
from blendmask.modeling.fcos import Positives


def _positives(gt_inds, gt_ctrs):
    zeros = torch.zeros_like(gt_inds)
    return Positives(Locations(zeros, zeros, zeros), gt_inds=gt_inds, gt_ctrs=gt_ctrs, labels=zeros)


def test_blend_uniform_attention_averages_bases():
    rois = torch.randn(3, 4, 8, 8)
    attns = torch.zeros(3, 4 * 2 * 2)
    torch.testing.assert_close(blend(rois, attns, attn_size=2), rois.mean(dim=1))


def test_blend_one_hot_attention_selects_a_basis():
    rois = torch.randn(2, 3, 6, 6)
    attns = torch.full((2, 3, 3, 3), -100.0)
    attns[0, 1] = 100.0  # detection 0 -> basis 1
    attns[1, 2] = 100.0
    out = blend(rois, attns.flatten(1), attn_size=3)
    torch.testing.assert_close(out[0], rois[0, 1])
    torch.testing.assert_close(out[1], rois[1, 2])


def test_blend_attention_layout_is_k_then_row_then_column():
    """Channel k*M*M + y*M + x is basis k at cell (y, x); the upsampled map keeps that layout."""
    rois = torch.stack([torch.zeros(4, 4), torch.ones(4, 4)])[None]  # basis 0 = 0, basis 1 = 1
    attns = torch.zeros(1, 2, 2, 2)
    attns[0, 1, 0, 1] = 50.0  # basis 1 wins only in the top-right cell
    out = blend(rois, attns.flatten(1), attn_size=2, interp="nearest")[0]
    assert out[:2, 2:].min() > 0.99 and out[2:, :].max() < 0.51 and out[:2, :2].max() < 0.51
    # bilinear with align_corners=False, then softmax over bases
    expected_attn = F.interpolate(attns, size=(4, 4), mode="bilinear", align_corners=False).softmax(1)
    torch.testing.assert_close(blend(rois, attns.flatten(1), attn_size=2)[0], expected_attn[0, 1])


def _blender(k=2, m=2, r=4):
    return Blender(num_bases=k, attn_size=m, resolution=r, pooler_scales=(0.25,))


def test_inference_pools_bases_in_boxes_and_sets_probabilities():
    blender = _blender().eval()
    bases = torch.zeros(1, 2, 16, 16)
    bases[0, 0, :, :8] = 10.0  # left half of the image (stride 4) strongly positive in basis 0
    boxes = torch.tensor([[0.0, 0.0, 24.0, 24.0], [40.0, 40.0, 64.0, 64.0]])
    attn = torch.full((2, 2, 2, 2), -50.0)
    attn[:, 0] = 50.0
    probs = blender.mask_probs([bases], [boxes], attn.flatten(1))
    assert probs.shape == (2, 4, 4)
    assert probs[0].min() > 0.99  # box inside the positive half
    torch.testing.assert_close(probs[1], torch.full((4, 4), 0.5))  # zero bases there


def test_mask_probs_of_a_batch_pool_each_image_in_its_own_bases():
    blender = _blender().eval()
    bases = torch.randn(2, 2, 16, 16)
    boxes = [torch.tensor([[0.0, 0.0, 24.0, 24.0]]), torch.tensor([[8.0, 4.0, 40.0, 60.0], [1.0, 2.0, 3.0, 4.0]])]
    attn = torch.randn(3, 8)
    together = blender.mask_probs([bases], boxes, attn)
    alone = torch.cat([blender.mask_probs([bases[:1]], boxes[:1], attn[:1]),
                       blender.mask_probs([bases[1:]], boxes[1:], attn[1:])])
    torch.testing.assert_close(together, alone)


def test_inference_with_zero_detections():
    blender = _blender(r=7).eval()
    probs = blender.mask_probs([torch.randn(1, 2, 8, 8)], [torch.zeros(0, 4)], torch.zeros(0, 8))
    assert probs.shape == (0, 7, 7)


def test_training_loss_matches_direct_computation():
    torch.manual_seed(0)
    blender = _blender(k=2, m=2, r=4).train()
    bases = torch.randn(1, 2, 16, 16, requires_grad=True)
    gt = Instances((64, 64))
    gt.gt_boxes = Boxes(torch.tensor([[8.0, 8.0, 40.0, 40.0], [20.0, 4.0, 60.0, 30.0]]))
    masks = torch.zeros(2, 64, 64, dtype=torch.bool)
    masks[0, 8:24, 8:40] = True
    masks[1, 4:30, 20:60] = True
    gt.gt_masks = BitMasks(masks)
    pos = _positives(gt_inds=torch.tensor([0, 1, 1]), gt_ctrs=torch.tensor([0.5, 1.0, 0.25]))
    attns = torch.randn(3, 8)
    loss = blender.losses([bases], attns, pos, [gt], loss_denorm=1.75)["loss_mask"]

    rois = blender.pooler([bases], [gt.gt_boxes])
    targets = gt.gt_masks.crop_and_resize(gt.gt_boxes.tensor, 4).float()
    expected = 0.0
    for i, g in enumerate(pos.gt_inds.tolist()):
        logits = blend(rois[g:g + 1], attns[i:i + 1], 2)[0]
        expected += F.binary_cross_entropy_with_logits(logits, targets[g]) * pos.gt_ctrs[i]
    torch.testing.assert_close(loss, expected / 1.75)
    # the top half of instance 0's box is foreground: targets were cropped to the box
    np.testing.assert_array_equal(targets[0].numpy(), np.array([[1] * 4] * 2 + [[0] * 4] * 2))
    loss.backward()
    assert bases.grad is not None and torch.isfinite(bases.grad).all()


def test_training_without_positives_is_zero_and_differentiable():
    blender = _blender().train()
    bases = torch.randn(1, 2, 8, 8, requires_grad=True)
    pos = _positives(gt_inds=torch.zeros(0, dtype=torch.long), gt_ctrs=torch.zeros(0))
    loss = blender.losses([bases], torch.zeros(0, 8, requires_grad=True), pos, [], loss_denorm=1e-6)["loss_mask"]
    assert loss.item() == 0.0
    loss.backward()
