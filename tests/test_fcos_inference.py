import torch

from blendmask.modeling.fcos.inference import keep_top_k_with_ties, predict_instances
from blendmask.modeling.fcos.targets import compute_locations


def _logit(p):
    return torch.log(torch.tensor(p) / (1 - torch.tensor(p)))


def _single_level(num_classes=3, h=4, w=4):
    logits = torch.full((1, num_classes, h, w), -20.0)
    reg = torch.ones(1, 4, h, w)  # 1 stride in every direction
    ctr = torch.full((1, 1, h, w), 20.0)  # sigmoid ~ 1
    return logits, reg, ctr


def _predict(logits, reg, ctr, top=None, **kw):
    args = dict(strides=[8], thresh=0.05, pre_nms_topk=1000, post_nms_topk=100, nms_thresh=0.6,
                thresh_with_ctr=False)
    args.update(kw)
    locs = compute_locations([logits], args["strides"])
    return predict_instances(locs, [logits], [reg], [ctr], [top] if top is not None else None,
                             [(32, 32)], **args)[0]


def test_threshold_box_decoding_and_score():
    logits, reg, ctr = _single_level()
    logits[0, 1, 2, 3] = _logit(0.5)
    ctr[0, 0, 2, 3] = _logit(0.32)
    reg[0, :, 2, 3] = torch.tensor([0.5, 1.0, 1.5, 2.0])
    out = _predict(logits, reg, ctr)
    assert len(out) == 1
    assert out.pred_classes.tolist() == [1]
    # location (3*8+4, 2*8+4) = (28, 20); l,t,r,b = 4, 8, 12, 16 px
    assert out.pred_boxes.tensor.tolist() == [[24.0, 12.0, 40.0, 36.0]]  # not clipped to 32
    torch.testing.assert_close(out.scores, torch.tensor([0.4]))
    assert out.locations.tolist() == [[28.0, 20.0]] and out.fpn_levels.tolist() == [0]


def test_thresh_with_ctr_changes_which_candidates_pass():
    logits, reg, ctr = _single_level()
    logits[0, 0, 0, 0] = _logit(0.2)
    ctr[0, 0, 0, 0] = _logit(0.1)  # cls * ctr = 0.02 < 0.05
    assert len(_predict(logits, reg, ctr, thresh_with_ctr=False)) == 1
    assert len(_predict(logits, reg, ctr, thresh_with_ctr=True)) == 0
    # the threshold is strict
    logits[0, 0, 0, 0] = _logit(0.05) - 1e-6
    assert len(_predict(logits, reg, ctr, thresh=0.05)) == 0


def test_pre_nms_topk_keeps_highest_and_nms_is_per_class():
    logits, reg, ctr = _single_level(num_classes=2, h=8, w=8)
    reg[:] = 0.4  # tiny non-overlapping boxes
    probs = torch.linspace(0.1, 0.9, 64).reshape(8, 8)
    logits[0, 0] = _logit(probs)
    out = _predict(logits, reg, ctr, pre_nms_topk=5)
    assert len(out) == 5
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
    assert len(out) == 1 and out.locations.tolist() == [[4.0, 4.0]]


def test_post_nms_topk_and_ties():
    scores = torch.tensor([0.9, 0.5, 0.5, 0.5, 0.1])
    assert keep_top_k_with_ties(scores, 2).tolist() == [0, 1, 2, 3]
    assert keep_top_k_with_ties(scores, 1).tolist() == [0]
    assert keep_top_k_with_ties(scores, 10).tolist() == [0, 1, 2, 3, 4]


def test_top_feats_travel_with_their_detections():
    logits, reg, ctr = _single_level()
    logits[0, 2, 1, 1] = _logit(0.7)
    logits[0, 0, 3, 0] = _logit(0.6)
    top = torch.arange(4 * 16, dtype=torch.float32).reshape(1, 4, 4, 4)
    out = _predict(logits, reg, ctr, top=top[0:1])
    by_class = {c: t for c, t in zip(out.pred_classes.tolist(), out.top_feat.tolist())}
    assert by_class[2] == top[0, :, 1, 1].tolist()
    assert by_class[0] == top[0, :, 3, 0].tolist()


def test_no_candidates_gives_empty_instances():
    logits, reg, ctr = _single_level()
    top = torch.zeros(1, 7, 4, 4)
    out = _predict(logits, reg, ctr, top=top)
    assert len(out) == 0 and out.top_feat.shape == (0, 7) and out.pred_boxes.tensor.shape == (0, 4)
