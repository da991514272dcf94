"""Load the AggMask* reference fixture (the authors' head run on CPU, ../shared/reference/aggmask)
and measure how far our AggMask* head is from it. Used by tests/test_aggmask_equivalence.py
(which asserts the limits below) and tools/compare_aggmask.py (which prints the measurements).

The fixture is head-only: its FPN features P2..P6 go straight into our ``AggMask.heads``, its
weights through ``convert_authors_state_dict`` (the parameter-name mapping). Two heads: "main"
(mask grid = category grid, cross neighbours) and "halfgrid" (coarser mask grid, corners).

Tolerances: the fixture README measured the authors' head against itself (1 vs 2 threads,
float32 vs float64). The issue's targets: aggregated logits within 1e-3 (measured spread 1.9e-4),
final scores within 1e-4, masks IoU >= 0.98, the same detections, losses within 2e-5 relative.
The rest follow the README's suggested tolerances.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
AGGMASK_DIR = Path(
    os.environ.get("BLENDMASK_AGGMASK_REFERENCE_DIR", REPO_ROOT.parent / "shared" / "reference" / "aggmask")
)
VARIANTS = ("main", "halfgrid")
NPZ = {"main": "aggmask_head_tiny.npz", "halfgrid": "aggmask_head_tiny_halfgrid.npz"}
PTH = {"main": "aggmask_head_tiny.pth", "halfgrid": "aggmask_head_tiny_halfgrid.pth"}
DENSE_CATE_BIAS_OFFSET = 0.75  # the fixture's dense run: solo_cate.bias + 0.75

TOWER_ATOL = 5e-5  # category logits, kernels, cell-network parameters, mask feature, context
INS_PRED_ATOL = 2e-4  # SOLOv2 mask logits of every mask cell
HIDDEN_ATOL = 2e-4  # the cell network's hidden layers
LOGIT_ATOL = 1e-3  # aggregated logits A
PROB_ATOL = 5e-6  # point-NMS'd category scores of the candidates
SCORE_ATOL = 1e-4  # NMS input / output and final scores
SUM_MASKS_ATOL = 2  # pixels of a candidate's binary mask
MIN_MASK_IOU = 0.98
MAX_FLIPPED_PIXELS = 20  # final masks at the original size, all detections together (README: <= 20 px)
DICE_ATOL = 1e-5
LOSS_RTOL = 2e-5


def aggmask_file(name: str) -> Path:
    """Path of a file in ../shared/reference/aggmask; skips the test when it is absent."""
    path = AGGMASK_DIR / name
    if not path.exists():
        pytest.skip(f"AggMask* reference fixture {path} is absent (needs ../shared beside the repo)")
    return path


def fixture_json():
    return json.loads(aggmask_file("aggmask_head_tiny.json").read_text())


def reference(variant: str):
    return np.load(aggmask_file(NPZ[variant]))


def inputs():
    """The main npz (it alone holds the FPN inputs and the ground truth)."""
    return reference("main")


def fixture_opts(variant: str):
    """configs/AggMask/Base-AggMask.yaml narrowed as the fixture's head (64 channels, small grids);
    a small ResNet-18 backbone that the head-only comparisons never run."""
    head = fixture_json()["head_cfg"][variant]
    return [
        "MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu", "MODEL.RESNETS.DEPTH", 18, "MODEL.RESNETS.RES2_OUT_CHANNELS", 64,
        "MODEL.FPN.OUT_CHANNELS", head["in_channels"],
        "MODEL.SOLOV2.INSTANCE_IN_CHANNELS", head["in_channels"],
        "MODEL.SOLOV2.MASK_IN_CHANNELS", head["in_channels"],
        "MODEL.SOLOV2.INSTANCE_CHANNELS", head["seg_feat_channels"],
        "MODEL.SOLOV2.MASK_CHANNELS", head["seg_feat_channels"],
        "MODEL.SOLOV2.NUM_MASKS", head["seg_feat_channels"],
        "MODEL.SOLOV2.NUM_KERNELS", head["seg_feat_channels"],
        "MODEL.SOLOV2.NUM_CLASSES", head["num_classes"] - 1,
        "MODEL.SOLOV2.NUM_GRIDS", head["cls_grid_number"],
        "MODEL.AGGMASK.MASK_GRIDS", head["mask_grid_number"],
    ]


def fixture_cfg(variant: str = "main", opts=()):
    from blendmask import load_config

    return load_config(REPO_ROOT / "configs" / "AggMask" / "Base-AggMask.yaml", [*fixture_opts(variant), *opts])


def load_fixture_model(variant: str, dense: bool = False, opts=()):
    """Our AggMask* with the fixture head's weights (the authors' names converted to ours)."""
    from detectron2.modeling import build_model

    from blendmask.modeling.aggmask import convert_authors_state_dict

    torch.manual_seed(0)
    model = build_model(fixture_cfg(variant, opts)).eval()
    theirs = torch.load(aggmask_file(PTH[variant]), map_location="cpu", weights_only=True)
    ours = convert_authors_state_dict(theirs)
    if dense:
        ours["ins_head.cate_pred.bias"] = ours["ins_head.cate_pred.bias"] + DENSE_CATE_BIAS_OFFSET
    missing, unexpected = model.load_state_dict(ours, strict=False)
    assert not unexpected, unexpected
    head_missing = [k for k in missing if not k.startswith("backbone.")]
    assert not head_missing, f"parameters the fixture does not set: {head_missing}"
    return model


def features(images=(0,)):
    """{"p2": ..., "p6": ...} of the fixture images, batched."""
    ref = inputs()
    return {f"p{k}": torch.from_numpy(np.concatenate([ref[f"in_img{i}_p{k}"] for i in images])) for k in range(2, 7)}


def level_offsets(grids):
    out = [0]
    for g in grids[:-1]:
        out.append(out[-1] + g * g)
    return out


def _max_diff(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    return float(np.abs(a - b).max(initial=0))


def run_inference(model, dense: bool = False):
    """Image 0: (head outputs, the inference record, the detections, the final masks at ori_shape)."""
    from blendmask.inference import resize_mask_probs

    meta = fixture_json()["img_metas"][0]
    with torch.no_grad():
        outputs = model.heads(features((0,)))
        record = {}
        det = model.detect_single(outputs, 0, record=record)
        masks = resize_mask_probs(det["mask_probs"], tuple(meta["img_shape"][:2]), tuple(meta["ori_shape"][:2]),
                                  model.test_params.mask_thr, "interpolate")
    return outputs, record, det, masks


def compare_heads(model, ref, outputs):
    """Measured differences of the towers, mask feature, context, per-mask-cell logits, and the
    aggregated logits and hidden layers of the 55 fixed cells."""
    from blendmask.modeling.solov2.losses import dynamic_masks

    cate_logits, kernels, mask_feat, weights, context = outputs
    m = {}
    m["cate_logits"] = max(_max_diff(x, ref[f"cate_logits_l{i}"]) for i, x in enumerate(cate_logits))
    m["kernels"] = max(_max_diff(x, ref[f"kernel_pred_l{i}"]) for i, x in enumerate(kernels))
    m["cell_params"] = max(_max_diff(x, ref[f"lw_l{i}"]) for i, x in enumerate(weights))
    m["mask_feat"] = _max_diff(mask_feat, ref["mask_feat"])
    m["context"] = _max_diff(context, ref["context_feat"])
    with torch.no_grad():
        ins = [dynamic_masks(mask_feat[0], k[0].flatten(1).t())[None] for k in kernels]
        offsets = level_offsets(model.ins_head.num_grids)
        cells = torch.from_numpy(np.array([offsets[lv] + c for lv, c in zip(ref["fixed_level"], ref["fixed_cell"])]))
        hidden = []
        fixed = model.cell_logits(outputs, 0, cells, hidden=hidden)
    m["ins_pred"] = max(_max_diff(x, ref[f"ins_pred_l{i}"]) for i, x in enumerate(ins))
    m["fixed_logits"] = _max_diff(fixed, ref["fixed_logits"])
    rows = ref["fixed_hidden_idx"]
    m["fixed_hidden"] = max(_max_diff(hidden[0][rows], ref["fixed_hidden1"]),
                            _max_diff(hidden[1][rows], ref["fixed_hidden2"]))
    return m


def neighbour_problems(model, ref):
    from blendmask.modeling.aggmask import neighbour_table

    problems = []
    for level, (sc, sm) in enumerate(zip(model.ins_head.num_grids, model.ins_head.kernel_grids)):
        if not np.array_equal(neighbour_table(sc, sm, model.neighbour_mode).numpy(), ref[f"spatial_index_l{level}"]):
            problems.append(f"neighbour table of level {level} differs")
    return problems


def _cand_keys(model, cells, classes):
    """(level, cell within the level, class) of global cells."""
    offsets = level_offsets(model.ins_head.num_grids)
    out = []
    for cell, cls in zip(np.asarray(cells).tolist(), np.asarray(classes).tolist()):
        level = max(i for i, o in enumerate(offsets) if o <= cell)
        out.append((level, cell - offsets[level], cls))
    return out


def compare_inference(model, ref, record, det, masks, prefix: str = ""):
    """Measured differences of candidates, NMS and final detections (keyed by (level, cell, class));
    ``prefix`` "dense_" for the dense run. Returns (measurements, problems)."""
    p = prefix
    m, problems = {}, []
    ref_cand = list(zip(ref[p + "cand_level"].tolist(), ref[p + "cand_cell"].tolist(), ref[p + "cand_cls"].tolist()))
    ours_cand = _cand_keys(model, record["cand_cells"].numpy(), record["cand_classes"].numpy())
    m["candidates"], m["ref_candidates"] = len(ours_cand), len(ref_cand)
    if ours_cand != ref_cand:
        problems.append(f"candidates differ ({len(ours_cand)} vs {len(ref_cand)})")
        return m, problems
    m["cand_scores"] = _max_diff(record["cand_scores"], ref[p + "cand_score"])
    m["cand_sum_masks"] = _max_diff(record["cand_sum_masks"], ref[p + "cand_sum_masks"])
    if not np.array_equal(record["cand_keep"].numpy(), ref[p + "cand_keep"]):
        problems.append("the stride filter keeps other candidates")

    index = {k: j for j, k in enumerate(ref_cand)}
    ours_in = [index[k] for k in _cand_keys(model, record["nms_in_cells"].numpy(), record["nms_in_classes"].numpy())]
    ref_in = ref[p + "nms_in_cand"].tolist()
    m["nms_inputs"], m["ref_nms_inputs"] = len(ours_in), len(ref_in)
    if sorted(ours_in) != sorted(ref_in):
        problems.append(f"NMS inputs differ: {len(set(ours_in) ^ set(ref_in))} candidates")
        return m, problems
    m["nms_order_swaps"] = int(sum(a != b for a, b in zip(ours_in, ref_in)))
    row = {c: j for j, c in enumerate(ours_in)}
    match = [row[c] for c in ref_in]
    m["nms_in_scores"] = _max_diff(record["nms_in_scores"].numpy()[match], ref[p + "nms_in_scores"])
    m["nms_out_scores"] = _max_diff(record["nms_out_scores"].numpy()[match], ref[p + "nms_out_scores"])

    ours_det = [index[k] for k in _cand_keys(model, det["cells"].numpy(), det["classes"].numpy())]
    ref_det = ref[p + "det_cand"].tolist()
    m["detections"], m["ref_detections"] = len(ours_det), len(ref_det)
    if sorted(ours_det) != sorted(ref_det):
        problems.append(f"final detections differ: {len(set(ours_det) ^ set(ref_det))} candidates")
        return m, problems
    m["final_order_swaps"] = int(sum(a != b for a, b in zip(ours_det, ref_det)))
    drow = {c: j for j, c in enumerate(ours_det)}
    dmatch = [drow[c] for c in ref_det]
    m["scores"] = _max_diff(det["scores"].numpy()[dmatch], ref[p + "det_scores"])
    if not np.array_equal(det["classes"].numpy()[dmatch], ref[p + "det_classes"]):
        problems.append("classes differ")
    ours_masks = masks.numpy()[dmatch]
    if prefix:
        n, h, w = ours_masks.shape
        theirs = np.unpackbits(ref[p + "det_masks_packed"], axis=1)[:, :h * w].reshape(n, h, w).astype(bool)
    else:
        theirs = ref["det_masks"].astype(bool)
    inter, union = (ours_masks & theirs).sum((1, 2)), (ours_masks | theirs).sum((1, 2))
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    m["min_mask_iou"] = float(iou.min(initial=1.0))
    m["mask_pixels_flipped"] = int((ours_masks != theirs).sum())
    return m, problems


def cand_logit_diff(model, ref, outputs, record, prefix: str = "") -> float:
    """The candidates' aggregated logits against the fixture's (same candidate order, checked above)."""
    with torch.no_grad():
        logits = model.cell_logits(outputs, 0, record["cand_cells"])
    return _max_diff(logits, ref[prefix + "cand_logits"])


def check(m, problems, score_atol: float = SCORE_ATOL):
    """The tolerance checks on measurements of :func:`compare_heads` / :func:`compare_inference`."""
    out = list(problems)
    limits = {
        "cate_logits": TOWER_ATOL, "kernels": TOWER_ATOL, "cell_params": TOWER_ATOL, "mask_feat": TOWER_ATOL,
        "context": TOWER_ATOL, "ins_pred": INS_PRED_ATOL, "fixed_hidden": HIDDEN_ATOL, "fixed_logits": LOGIT_ATOL,
        "cand_logits": LOGIT_ATOL, "cand_scores": PROB_ATOL, "cand_sum_masks": SUM_MASKS_ATOL,
        "nms_in_scores": score_atol, "nms_out_scores": score_atol, "scores": score_atol,
        "mask_pixels_flipped": MAX_FLIPPED_PIXELS,
    }
    for key, limit in limits.items():
        if key in m and m[key] > limit:
            out.append(f"{key}: {m[key]:.3g} > {limit}")
    if "min_mask_iou" in m and m["min_mask_iou"] < MIN_MASK_IOU:
        out.append(f"min mask IoU {m['min_mask_iou']:.4f} < {MIN_MASK_IOU}")
    return out


def gt_instances(i: int):
    """Image ``i``'s ground truth as our targets read it: boxes as stored (x2 = x1 + w - 1, as the
    authors'), classes 0-based, masks at the padded size (zero in the padding)."""
    from detectron2.structures import BitMasks, Boxes, Instances

    ref = inputs()
    masks = torch.from_numpy(ref[f"gt_img{i}_masks"]).to(torch.bool)
    inst = Instances(tuple(masks.shape[-2:]))
    inst.gt_boxes = Boxes(torch.from_numpy(ref[f"gt_img{i}_bboxes"]))
    inst.gt_classes = torch.from_numpy(ref[f"gt_img{i}_labels"]) - 1
    inst.gt_masks = BitMasks(masks)
    return inst


def run_training(model, images):
    """(targets, losses, per-level (positive cells, logits, dice) per image) for the fixture images
    ``images`` as one batch, without gradients."""
    from blendmask.modeling.solov2.losses import dice_loss

    gts = [gt_instances(i) for i in images]
    with torch.no_grad():
        outputs = model.heads(features(images))
        targets = model.targets(gts, [g.image_size for g in gts], tuple(outputs[2].shape[-2:]))
        losses = model.head_losses(outputs, targets)
        offsets = level_offsets(model.ins_head.num_grids)
        per_level = []
        for level in range(len(offsets)):
            rows = []
            for b, image_targets in enumerate(targets):
                t = image_targets[level]
                logits = model.cell_logits(outputs, b, t.grid_order + offsets[level])
                dice = dice_loss(torch.sigmoid(logits), t.ins_label) if len(logits) else logits.new_zeros(0)
                rows.append((b, t.grid_order, logits, dice, t.ins_label))
            per_level.append(rows)
    return targets, losses, per_level


def compare_training(model, ref, run: str, images):
    """Targets (exact), the positives' logits and dice, num_pos and the losses against ``run``
    ("train1" or "train2") of the fixture. Returns (measurements, problems)."""
    targets, losses, per_level = run_training(model, images)
    p = run + "_"
    m, problems = {}, []
    num_classes = model.num_classes
    logit_diff, dice_diff = 0.0, 0.0
    for level, rows in enumerate(per_level):
        labels = np.stack([t[level].cate_label.numpy() for t in targets])
        labels = np.where(labels < num_classes, labels + 1, 0)  # ours: background = C; theirs: 0, classes 1-based
        if not np.array_equal(labels, ref[f"{p}l{level}_cate_label"]):
            problems.append(f"level {level}: category targets differ")
        ind = np.stack([t[level].ins_ind_label.numpy() for t in targets])
        if not np.array_equal(ind, ref[f"{p}l{level}_ins_ind"]):
            problems.append(f"level {level}: positive cells differ")
        pos_img = np.concatenate([np.full(len(r[1]), r[0]) for r in rows])
        pos_cell = np.concatenate([r[1].numpy() for r in rows])
        if not (np.array_equal(pos_img, ref[f"{p}l{level}_pos_img"])
                and np.array_equal(pos_cell, ref[f"{p}l{level}_pos_cell"])):
            problems.append(f"level {level}: positive samples differ")
            continue
        if not np.array_equal(np.concatenate([r[4].numpy() for r in rows]), ref[f"{p}l{level}_ins_label"]):
            problems.append(f"level {level}: mask targets differ")
        if len(pos_cell):
            logit_diff = max(logit_diff, _max_diff(torch.cat([r[2] for r in rows]), ref[f"{p}l{level}_pos_logits"]))
            dice_diff = max(dice_diff, _max_diff(torch.cat([r[3] for r in rows]), ref[f"{p}l{level}_dice"]))
    m["num_pos"] = sum(int(t[level].ins_ind_label.sum()) for t in targets for level in range(len(per_level)))
    if m["num_pos"] != int(ref[p + "num_pos"]):
        problems.append(f"{m['num_pos']} positives, the authors' {int(ref[p + 'num_pos'])}")
    m["pos_logits"], m["dice"] = logit_diff, dice_diff
    for key in ("loss_ins", "loss_cate"):
        m[key] = losses[key].item()
        m[f"ref_{key}"] = float(ref[p + key])
        m[f"{key}_rel"] = abs(m[key] / m[f"ref_{key}"] - 1)
        if not np.isfinite(m[key]) or m[f"{key}_rel"] > LOSS_RTOL:
            problems.append(f"{key} {m[key]:.7f} vs {m[f'ref_{key}']:.7f} "
                            f"(relative {m[f'{key}_rel']:.1e} > {LOSS_RTOL})")
    if logit_diff > LOGIT_ATOL:
        problems.append(f"positives' logits: {logit_diff:.3g} > {LOGIT_ATOL}")
    if dice_diff > DICE_ATOL:
        problems.append(f"dice: {dice_diff:.3g} > {DICE_ATOL}")
    return m, problems
