"""Load AdelaiDet's tiny panoptic BlendMask fixture and compare our outputs with it.

Fixture: ../shared/reference/adelaidet/panoptic (its README describes the model, the quirks and the
recommended checks). Instances are compared with the BlendMask tolerances of adelaidet_fixtures;
the semantic map, the panoptic map and the segments as below. Shared by
tests/test_panoptic_equivalence.py and tools/compare_panoptic.py.
"""

import json

import numpy as np
import torch

from adelaidet_fixtures import (
    BASES_ATOL,
    BOX_ATOL,
    LOSS_RTOL,
    MASK_PROB_ATOL,
    MAX_FLIPPED_FRACTION,
    MIN_MASK_IOU,
    SCORE_ATOL,
    TOP_FEAT_ATOL,
    fixture_training_inputs,
    match_detections,
    prepost_instances,
)
from conftest import reference_file

CONFIG, WEIGHTS, OUTPUTS, LOSSES = (f"panoptic/pan_tiny{s}" for s in (".yaml", ".pth", "_outputs.npz", "_losses.json"))
SEM_SEG_TARGET = "panoptic/pan_tiny_train_sem_seg.npz"

# Detections whose blended masks hold exactly-0.5 probabilities (boxes reaching past the bases):
# pixels there flip with float rounding (README section 4), so their masks get MIN_MASK_IOU_AT_HALF.
EXACT_HALF_DETECTIONS = {0: {96}, 1: {14, 29, 32, 36, 60, 68, 78, 90, 91, 95}, 2: set()}
MIN_MASK_IOU_AT_HALF = 0.97
SEM_LOGITS_ATOL = 1e-3
MIN_EQUAL_FRACTION = 0.999  # semantic argmax and panoptic map (issue 16)
TIE_GAP = 1e-3  # a differing semantic pixel must be a near tie in our logits
THING_SCORE_ATOL = 1e-4
STUFF_AREA_ATOL = 64  # px


def fixture_cfg(opts=()):
    """The fixture's slim AdelaiDet config merged as a user would, weights through MODEL.WEIGHTS."""
    from detectron2.config import get_cfg

    from blendmask import add_blendmask_config

    cfg = add_blendmask_config(get_cfg())
    cfg.merge_from_file(str(reference_file(CONFIG)))
    cfg.MODEL.WEIGHTS = str(reference_file(WEIGHTS))
    cfg.merge_from_list(list(opts))
    return cfg


def load_fixture_model(opts=()):
    from blendmask import build_model_and_load

    return build_model_and_load(fixture_cfg(opts))


def reference_outputs():
    return np.load(reference_file(OUTPUTS))


def run_image(model, image_chw_u8, height, width):
    """One forward of one image: (outputs dict, intermediates) where intermediates holds "prepost"
    (detections before rescaling, as adelaidet_fixtures.run_with_intermediates) and "bases"."""
    captured = {}
    add_masks = model.add_masks

    def capturing_add_masks(features, fcos):
        detections = add_masks(features, fcos)
        captured["fcos"], captured["det"] = fcos, detections[0]
        return detections

    def capture_bases(module, inputs, outputs):
        captured["bases"] = outputs[0]["bases"][0]

    hook = model.basis_module.register_forward_hook(capture_bases)
    model.add_masks = capturing_add_masks
    try:
        with torch.no_grad():
            image = torch.from_numpy(image_chw_u8.astype(np.float32))
            out = model([{"image": image, "height": height, "width": width}])[0]
            prepost = prepost_instances(model, captured["fcos"], captured["det"], tuple(image.shape[1:]))
    finally:
        del model.add_masks
        hook.remove()
    return out, {"prepost": prepost, "bases": captured["bases"]}


def _mask_iou(ours, theirs):
    return (ours & theirs).sum((1, 2)) / np.maximum((ours | theirs).sum((1, 2)), 1)


def compare_image(ref, i, out, captured):
    """Measured differences of image ``i`` (a dict) and a list of failures beyond tolerance."""
    failures = []
    m = {}
    inst, pre = out["instances"], captured["prepost"]
    rb, rs, rc = ref[f"img{i}_pred_boxes"], ref[f"img{i}_scores"], ref[f"img{i}_pred_classes"]
    ob, os_, oc = inst.pred_boxes.tensor.numpy(), inst.scores.numpy(), inst.pred_classes.numpy()
    match = match_detections(rb, rs, rc, ob, os_, oc)
    ok = match >= 0
    k = match[ok]
    m["detections"] = f"{len(inst)} (AdelaiDet {len(rb)}), {ok.sum()} matched"
    if len(inst) != len(rb) or not ok.all():
        failures.append(f"detections {m['detections']}")

    def check(name, ours, theirs, atol):
        diff = float(np.abs(ours - theirs).max()) if ours.size else 0.0
        m[name] = diff
        if not diff <= atol:  # NaN fails too
            failures.append(f"{name} {diff:.2e} > {atol}")

    check("box", ob[k], rb[ok], BOX_ATOL)
    check("score", os_[k], rs[ok], SCORE_ATOL)
    check("prepost_box", pre.pred_boxes.tensor.numpy()[k], ref[f"img{i}_prepost_boxes"][ok], BOX_ATOL)
    check("top_feat", pre.top_feat.numpy()[k], ref[f"img{i}_top_feat"][ok], TOP_FEAT_ATOL)
    check("bases", captured["bases"].numpy(), ref[f"img{i}_bases"], BASES_ATOL)
    check("mask_prob", pre.pred_masks[:, 0].numpy()[k], ref[f"img{i}_mask_probs_56"][ok], MASK_PROB_ATOL)
    if not (np.array_equal(oc[k], rc[ok]) and np.array_equal(pre.fpn_levels.numpy()[k], ref[f"img{i}_fpn_levels"][ok])
            and np.array_equal(pre.locations.numpy()[k], ref[f"img{i}_locations"][ok])):
        failures.append("classes, FPN levels or locations differ")

    ours_masks, ref_masks = inst.pred_masks.numpy()[k], ref[f"img{i}_pred_masks"].astype(bool)[ok]
    iou = _mask_iou(ours_masks, ref_masks)
    half = np.isin(np.nonzero(ok)[0], sorted(EXACT_HALF_DETECTIONS[i]))
    m["min_mask_iou"] = float(iou[~half].min()) if (~half).any() else 1.0
    m["min_mask_iou_exact_half"] = float(iou[half].min()) if half.any() else 1.0
    flipped = int((ours_masks[~half] != ref_masks[~half]).sum())
    half_flipped = int((ours_masks[half] != ref_masks[half]).sum())
    m["mask_flips"] = (f"{flipped} of {int(ref_masks[~half].sum())} foreground px "
                       f"(+ {half_flipped} in exact-0.5 detections)")
    if not m["min_mask_iou"] >= MIN_MASK_IOU or not m["min_mask_iou_exact_half"] >= MIN_MASK_IOU_AT_HALF:
        failures.append(f"mask IoU {m['min_mask_iou']:.4f} / exact-0.5 {m['min_mask_iou_exact_half']:.4f}")
    if flipped > MAX_FLIPPED_FRACTION * ref_masks[~half].sum():
        failures.append(f"{flipped} mask pixels flipped")

    # semantic segmentation
    sem = out["sem_seg"]
    check("sem_logits_sub8", sem[:, ::8, ::8].numpy(), ref[f"img{i}_sem_seg_logits_sub8"], SEM_LOGITS_ATOL)
    argmax, ref_argmax = sem.argmax(0).numpy(), ref[f"img{i}_sem_seg_argmax"].astype(np.int64)
    differ = argmax != ref_argmax
    m["sem_argmax_differ_px"] = int(differ.sum())
    if differ.mean() > 1 - MIN_EQUAL_FRACTION:
        failures.append(f"semantic argmax differs on {differ.sum()} px")
    if differ.any():
        top2 = torch.topk(sem.permute(1, 2, 0)[torch.from_numpy(differ)], 2, dim=1).values
        gap = float((top2[:, 0] - top2[:, 1]).max())
        m["sem_differ_max_top2_gap"] = gap
        if not gap < TIE_GAP:
            failures.append(f"a differing semantic pixel is no near tie (top-2 gap {gap:.2e})")

    # panoptic segments: things matched by instance (through the detection matching), stuff by category
    pan, info = out["panoptic_seg"]
    pan = pan.numpy()
    ref_pan, ref_info = ref[f"img{i}_panoptic_seg"], json.loads(str(ref[f"img{i}_segments_info"]))
    m["segments"] = f"{len(info)} (AdelaiDet {len(ref_info)})"
    ours_by_key = {(s["isthing"], s["instance_id"] if s["isthing"] else s["category_id"]): s for s in info}
    id_map = {0: 0}
    score_diff, area_diff = 0.0, 0
    for s in ref_info:
        key = int(match[s["instance_id"]]) if s["isthing"] else s["category_id"]
        o = ours_by_key.get((s["isthing"], key))
        if o is None or o["category_id"] != s["category_id"]:
            failures.append(f"segment {s} has no counterpart")
            continue
        id_map[s["id"]] = o["id"]
        if s["isthing"]:
            score_diff = max(score_diff, abs(o["score"] - s["score"]))
        else:
            area_diff = max(area_diff, abs(o["area"] - s["area"]))
    m["thing_score"], m["stuff_area_px"] = score_diff, area_diff
    if len(info) != len(ref_info):
        failures.append(f"segments {m['segments']}")
    if not score_diff <= THING_SCORE_ATOL or area_diff > STUFF_AREA_ATOL:
        failures.append(f"thing score {score_diff:.2e} or stuff area {area_diff} px")
    lut = np.full(int(ref_pan.max()) + 1, -1, dtype=np.int64)
    for theirs, ours in id_map.items():
        lut[theirs] = ours
    mapped = lut[ref_pan]
    pan_differ = pan != mapped
    m["panoptic_differ_px"] = int(pan_differ.sum())
    if pan_differ.mean() > 1 - MIN_EQUAL_FRACTION:
        failures.append(f"panoptic map differs on {pan_differ.sum()} px")
    return m, failures


def training_inputs():
    """Image 0 with the recorded instances and the fixture's semantic target, and the losses."""
    inputs, losses = fixture_training_inputs(LOSSES)
    inputs["sem_seg"] = torch.from_numpy(np.load(reference_file(SEM_SEG_TARGET))["sem_seg"].astype(np.int64))
    return inputs, losses


def compare_losses(losses, expected):
    """Relative difference of each loss and of their total; failures beyond LOSS_RTOL."""
    losses = {k: float(v.detach()) for k, v in losses.items()}
    losses["_total"] = sum(losses.values())
    rel = {k: abs(losses[k] / v - 1) if k in losses else float("inf") for k, v in expected.items()}
    extra = sorted(set(losses) - set(expected))
    failures = [f"{k} relative {r:.1e}" for k, r in rel.items() if not r <= LOSS_RTOL]
    failures += [f"unexpected loss {k}" for k in extra]
    return rel, failures
