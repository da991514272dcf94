"""Our CenterMask, loading the centermask2 fixture as a user would (its slim yaml, its VoVNet spec
registered with blendmask.register_vovnet_spec, its weights through MODEL.WEIGHTS), reproduces
centermask2's outputs, ROI levels, intermediate tensors and training losses.

Fixture and tolerances: ../shared/reference/centermask2 (README sections 3, 5 and 6). Each image
runs on its own, as centermask2 did (padding changes eSE and GroupNorm statistics).
"""

import numpy as np
import pytest
import torch
from centermask_fixtures import (
    ATTENTION_ATOL,
    BOX_ATOL,
    CROP_ATOL,
    LOGIT_ATOL,
    LOGIT_RTOL,
    LOSS_RTOL,
    MASKIOU_ATOL,
    MAX_FLIPPED_FRACTION,
    MIN_MASK_IOU,
    SCORE_ATOL,
    centermask_file,
    load_tiny_model,
    match_detections,
    run_with_intermediates,
    training_inputs,
)
from detectron2.utils.events import EventStorage


@pytest.fixture(scope="module")
def model():
    return load_tiny_model()


@pytest.fixture(scope="module")
def ref():
    return np.load(centermask_file("cm_tiny_outputs.npz"))


@pytest.fixture(scope="module")
def runs(model, ref):
    out = []
    for i in range(3):
        h, w = (int(v) for v in ref[f"img{i}_orig_hw"])
        result, captured = run_with_intermediates(model, ref[f"img{i}_input_bgr_chw_u8"], h, w)
        match = match_detections(ref[f"img{i}_pred_boxes"], ref[f"img{i}_pred_classes"],
                                 result.pred_boxes.tensor.numpy(), result.pred_classes.numpy())
        out.append((result, captured, match))
    return out


def _logits_close(ours, theirs):
    return np.abs(ours - theirs).max() if ours.size else 0.0, np.all(
        np.abs(ours - theirs) <= LOGIT_ATOL + LOGIT_RTOL * np.abs(theirs))


def test_the_fixture_loads_with_nothing_missing_or_unexpected(model):
    state = torch.load(centermask_file("cm_tiny.pth"), weights_only=True)["model"]
    assert sorted(state) == sorted(model.state_dict())
    assert type(model).__name__ == "CenterMask"


def test_detections_and_scores(ref, runs):
    counts = []
    for i, (result, captured, match) in enumerate(runs):
        n = len(ref[f"img{i}_scores"])
        counts.append(len(result))
        assert len(result) == n, f"image {i}: detection count"
        assert (match >= 0).all(), f"image {i}: unmatched reference detections {np.nonzero(match < 0)[0]}"
        np.testing.assert_array_equal(result.pred_classes.numpy()[match], ref[f"img{i}_pred_classes"])
        np.testing.assert_allclose(result.pred_boxes.tensor.numpy()[match], ref[f"img{i}_pred_boxes"], rtol=0,
                                   atol=BOX_ATOL)
        np.testing.assert_allclose(result.scores.numpy()[match], ref[f"img{i}_scores"], rtol=0, atol=SCORE_ATOL)
        # mask_scores = scores * maskiou; scores stay FCOS's
        np.testing.assert_allclose(result.mask_scores.numpy()[match], ref[f"img{i}_mask_scores"], rtol=0,
                                   atol=SCORE_ATOL)
        np.testing.assert_array_equal(result.fpn_levels.numpy()[match], ref[f"img{i}_fpn_levels"])
        np.testing.assert_allclose(captured["boxes"].numpy()[match], ref[f"img{i}_prepost_boxes"], rtol=0,
                                   atol=BOX_ATOL)
        np.testing.assert_array_equal(captured["locations"].numpy()[match], ref[f"img{i}_locations"])
    assert counts == [25, 50, 47]  # image 1 hits the test cap of 50


def test_roi_levels_mask_logits_attention_and_maskiou(ref, runs):
    for i, (_, captured, match) in enumerate(runs):
        np.testing.assert_array_equal(captured["roi_levels"].numpy()[match], ref[f"img{i}_roi_levels"])
        worst, ok = _logits_close(captured["mask_logits"].numpy()[match], ref[f"img{i}_mask_logits"][:, 0])
        assert ok, f"image {i}: mask logits differ by up to {worst}"
        np.testing.assert_allclose(captured["attention"].numpy()[match], ref[f"img{i}_sam_attention"], rtol=0,
                                   atol=ATTENTION_ATOL)
        np.testing.assert_allclose(captured["maskiou"].numpy()[match], ref[f"img{i}_maskiou"], rtol=0,
                                   atol=MASKIOU_ATOL)


def test_pasted_masks(ref, runs):
    for i, (result, _, match) in enumerate(runs):
        ours = result.pred_masks.numpy()[match]
        theirs = ref[f"img{i}_pred_masks"].astype(bool)
        assert ours.shape == theirs.shape
        inter = (ours & theirs).sum(axis=(1, 2))
        union = (ours | theirs).sum(axis=(1, 2))
        iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
        assert iou.min() >= MIN_MASK_IOU, f"image {i}: smallest mask IoU {iou.min()}"
        assert (ours != theirs).sum() <= MAX_FLIPPED_FRACTION * theirs.sum(), f"image {i}: flipped pixels"


def test_probe_boxes_cover_every_roi_level(model, ref, runs):
    """Real detections all pool from p3; the probes exercise p4/p5 and both level rules."""
    from blendmask.modeling.centermask import assign_roi_levels

    captured = runs[0][1]
    boxes = torch.from_numpy(ref["img0_probe_boxes"])
    classes = torch.from_numpy(ref["img0_probe_classes"])
    size = captured["image_size"]
    np.testing.assert_array_equal(assign_roi_levels(boxes, size, "ratio").numpy(), ref["img0_probe_roi_levels_ratio"])
    np.testing.assert_array_equal(assign_roi_levels(boxes, size, "area").numpy(), ref["img0_probe_roi_levels_area"])
    assert set(ref["img0_probe_roi_levels"].tolist()) == {0, 1, 2}
    with torch.no_grad():
        out = model.roi_heads.mask_outputs(captured["features"], [boxes], [classes],
                                           [torch.linspace(0.9, 0.3, len(boxes))], [size])
    np.testing.assert_array_equal(out["roi_levels"].numpy(), ref["img0_probe_roi_levels"])
    worst, ok = _logits_close(out["mask_logits"].numpy(), ref["img0_probe_mask_logits"][:, 0])
    assert ok, f"probe mask logits differ by up to {worst}"
    np.testing.assert_allclose(out["maskiou"].numpy(), ref["img0_probe_maskiou"], rtol=0, atol=MASKIOU_ATOL)


def test_debug_crop_layer_by_layer(model):
    crop = np.load(centermask_file("cm_tiny_debug_crop.npz"))
    x = model.normalize(torch.from_numpy(crop["crop_input_bgr_chw_u8"].astype(np.float32)))[None]
    recorded = {}
    bottom_up = model.backbone.bottom_up
    hooks = [getattr(bottom_up, name).register_forward_hook(
        lambda _m, _i, out, name=name: recorded.__setitem__(name, out)) for name in ("stem", *bottom_up.stage_names)]
    try:
        with torch.no_grad():
            features = model.backbone(x)
            head = model.proposal_generator.fcos_head([features[f] for f in model.proposal_generator.in_features])
    finally:
        for h in hooks:
            h.remove()
    pairs = {f"crop_{k}": v for k, v in recorded.items()}
    for level in range(3, 8):
        pairs[f"crop_p{level}"] = features[f"p{level}"]
        pairs[f"crop_cls_logits_p{level}"] = head["logits"][level - 3]
        pairs[f"crop_bbox_reg_p{level}"] = head["reg"][level - 3]
        pairs[f"crop_ctrness_p{level}"] = head["ctrness"][level - 3]
    assert len(pairs) == 25
    for key, ours in pairs.items():
        np.testing.assert_allclose(ours[0].numpy(), crop[key], rtol=0, atol=CROP_ATOL, err_msg=key)


def test_training_losses():
    model = load_tiny_model(eval_mode=False)
    inputs, record = training_inputs()
    torch.manual_seed(record["train_seed"])  # the ROI sampler permutes with torch.randperm
    with EventStorage():
        losses = model([inputs])
    assert list(losses) == list(record["losses"])[:-1]
    assert losses["loss_maskiou"].dtype == torch.float64  # as centermask2 (pycocotools areas are float64)
    for key, value in record["losses"].items():
        total = sum(v.detach().float() for v in losses.values())
        ours = float(total if key == "_total" else losses[key].detach())
        assert ours == pytest.approx(value, rel=LOSS_RTOL), key


def test_training_foreground_rois_and_maskiou_targets():
    from blendmask.modeling.centermask import maskiou_targets

    model = load_tiny_model(eval_mode=False)
    inputs, record = training_inputs()
    debug = np.load(centermask_file("cm_tiny_train_debug.npz"))
    torch.manual_seed(record["train_seed"])
    gt = [inputs["instances"]]
    with torch.no_grad(), EventStorage():
        images = model.preprocess_image([inputs])
        features = model.backbone(images.tensor)
        fcos = model.proposal_generator(images, features, gt)
        assert [len(d["boxes"]) for d in fcos.detections] == record["train_num_fcos_proposals"]
        fg = model.roi_heads.sample_proposals([d["boxes"] for d in fcos.detections], gt)[0]
        np.testing.assert_array_equal(fg.gt_classes.numpy(), debug["train_fg_gt_classes"])
        np.testing.assert_allclose(fg.proposal_boxes.tensor.numpy(), debug["train_fg_proposal_boxes"], atol=1e-4)
        pooled, levels = model.roi_heads.pool(features, [fg.proposal_boxes.tensor], images.image_sizes)
        np.testing.assert_array_equal(levels.numpy(), debug["train_fg_roi_levels"])
        logits = model.roi_heads.mask_head(pooled)[torch.arange(len(fg)), fg.gt_classes]
        targets = fg.gt_masks.crop_and_resize(fg.proposal_boxes.tensor, logits.shape[-1])
        iou = maskiou_targets([fg], logits, targets)
    assert iou.dtype == torch.float64
    np.testing.assert_allclose(iou.numpy(), debug["train_fg_maskiou_targets"], rtol=0, atol=1e-6)
