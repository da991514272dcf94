"""FCOS inference (the trace-safe core that eager models and exports both run)."""

from types import SimpleNamespace

import torch

from blendmask.inference import top_k_with_ties
from blendmask.modeling.fcos.inference import detect_single_image


def _logit(p):
    p = torch.as_tensor(p)
    return torch.log(p / (1 - p))


def _single_level(num_classes=3, h=4, w=4):
    logits = torch.full((1, num_classes, h, w), -20.0)
    reg = torch.ones(1, 4, h, w)  # 1 stride in every direction
    ctr = torch.full((1, 1, h, w), 20.0)  # sigmoid ~ 1
    return logits, reg, ctr


def _predict(logits, reg, ctr, **kw):
    args = dict(strides=[8], thresh=0.05, pre_nms_topk=1000, post_nms_topk=100, nms_thresh=0.6,
                thresh_with_ctr=False, num_classes=logits.shape[1])
    args.update(kw)
    det = detect_single_image([logits[0]], [reg[0]], [ctr[0]], **args)
    stride = args["strides"][0]
    width = logits.shape[-1]
    locations = torch.stack([(det["cells"] % width) * stride + stride // 2,
                             det["cells"] // width * stride + stride // 2], dim=1).float()
    return SimpleNamespace(pred_boxes=det["boxes"], scores=det["scores"], pred_classes=det["classes"],
                           fpn_levels=det["levels"], cells=det["cells"], locations=locations, n=len(det["scores"]))


def _len(out):
    return out.n


def test_threshold_box_decoding_and_score():
    logits, reg, ctr = _single_level()
    logits[0, 1, 2, 3] = _logit(0.5)
    ctr[0, 0, 2, 3] = _logit(0.32)
    reg[0, :, 2, 3] = torch.tensor([0.5, 1.0, 1.5, 2.0])
    out = _predict(logits, reg, ctr)
    assert _len(out) == 1
    assert out.pred_classes.tolist() == [1]
    # location (3*8+4, 2*8+4) = (28, 20); l,t,r,b = 4, 8, 12, 16 px
    assert out.pred_boxes.tolist() == [[24.0, 12.0, 40.0, 36.0]]  # not clipped to 32
    torch.testing.assert_close(out.scores, torch.tensor([0.4]))
    assert out.locations.tolist() == [[28.0, 20.0]] and out.fpn_levels.tolist() == [0]


def test_thresh_with_ctr_changes_which_candidates_pass():
    logits, reg, ctr = _single_level()
    logits[0, 0, 0, 0] = _logit(0.2)
    ctr[0, 0, 0, 0] = _logit(0.1)  # cls * ctr = 0.02 < 0.05
    assert _len(_predict(logits, reg, ctr, thresh_with_ctr=False)) == 1
    assert _len(_predict(logits, reg, ctr, thresh_with_ctr=True)) == 0
    # the threshold is strict
    logits[0, 0, 0, 0] = _logit(0.05) - 1e-6
    assert _len(_predict(logits, reg, ctr, thresh=0.05)) == 0


def test_pre_nms_topk_keeps_highest_and_nms_is_per_class():
    logits, reg, ctr = _single_level(num_classes=2, h=8, w=8)
    reg[:] = 0.4  # tiny non-overlapping boxes
    probs = torch.linspace(0.1, 0.9, 64).reshape(8, 8)
    logits[0, 0] = _logit(probs)
    out = _predict(logits, reg, ctr, pre_nms_topk=5)
    assert _len(out) == 5
    torch.testing.assert_close(out.scores.sort().values, probs.flatten().topk(5).values.sort().values.sqrt())
    # two identical boxes: suppressed within a class, both kept across classes
    logits, reg, ctr = _single_level(num_classes=2, h=1, w=1)
    logits[0, :, 0, 0] = _logit(0.9)
    assert sorted(_predict(logits, reg, ctr).pred_classes.tolist()) == [0, 1]
    two = torch.cat([logits, logits], dim=3)
    reg2 = torch.full((1, 4, 1, 2), 4.0)  # 64 px boxes 8 px apart: IoU > 0.6
    ctr2 = torch.full((1, 1, 1, 2), 20.0)
    two[0, 1] = -20.0
    two[0, 0, 0, 1] = _logit(0.8)
    out = _predict(two, reg2, ctr2)
    assert _len(out) == 1 and out.locations.tolist() == [[4.0, 4.0]]


def test_post_nms_topk_and_ties():
    scores = torch.tensor([0.9, 0.5, 0.5, 0.5, 0.1])
    assert top_k_with_ties(scores, 2).tolist() == [0, 1, 2, 3]
    assert top_k_with_ties(scores, 1).tolist() == [0]
    assert top_k_with_ties(scores, 10).tolist() == [0, 1, 2, 3, 4]
    assert top_k_with_ties(scores, 0).tolist() == [0, 1, 2, 3, 4]
    assert top_k_with_ties(scores[:0], 3).tolist() == []


def test_post_nms_topk_limits_the_detections():
    logits, reg, ctr = _single_level(num_classes=2, h=8, w=8)
    reg[:] = 0.4  # tiny non-overlapping boxes
    logits[0, 1] = _logit(torch.linspace(0.1, 0.9, 64).reshape(8, 8))
    out = _predict(logits, reg, ctr, post_nms_topk=7)
    assert _len(out) == 7 and (out.scores[:-1] >= out.scores[1:]).all()


def test_cells_and_levels_say_where_each_detection_was_predicted():
    logits, reg, ctr = _single_level()
    logits[0, 2, 1, 1] = _logit(0.7)
    logits[0, 0, 3, 0] = _logit(0.6)
    out = _predict(logits, reg, ctr)
    assert dict(zip(out.pred_classes.tolist(), out.cells.tolist())) == {2: 1 * 4 + 1, 0: 3 * 4 + 0}
    assert out.fpn_levels.tolist() == [0, 0]


def test_no_candidates_gives_empty_detections():
    logits, reg, ctr = _single_level()
    out = _predict(logits, reg, ctr)
    assert _len(out) == 0 and out.pred_boxes.shape == (0, 4) and out.cells.shape == (0,)


def test_a_level_smaller_than_pre_nms_topk():
    """Fewer cells x classes than PRE_NMS_TOPK: every candidate is kept, padding never is."""
    logits, reg, ctr = _single_level(num_classes=2, h=2, w=2)
    reg[:] = 0.4
    logits[:] = _logit(0.9)
    assert _len(_predict(logits, reg, ctr, pre_nms_topk=1000)) == 8
