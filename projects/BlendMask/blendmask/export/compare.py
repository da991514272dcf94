"""Compare an exported model's outputs with the eager model's instances."""

from typing import Dict, Optional, Sequence

import numpy as np
import torch

from ..modeling.contract import model_outputs


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def match_by_box(ref_boxes, ref_classes, boxes, classes) -> np.ndarray:
    """For each reference detection, the index of the unused same-class detection whose box is
    nearest (max abs coordinate difference), -1 when none is left. Rank-order independent, so
    near-equal scores that swap places do not matter."""
    match = np.full(len(ref_boxes), -1)
    used = np.zeros(len(boxes), dtype=bool)
    for i in range(len(ref_boxes)):
        candidates = np.nonzero((classes == ref_classes[i]) & ~used)[0]
        if len(candidates):
            dist = np.abs(boxes[candidates] - ref_boxes[i]).max(axis=1)
            j = candidates[int(np.argmin(dist))]
            match[i] = j
            used[j] = True
    return match


def compare_outputs(
    eager, outputs: Sequence, eager_mask_probs: Optional[torch.Tensor] = None, prob_tol: float = 3e-3
) -> Dict:
    """``eager``: the eager model's Instances; ``outputs``: (boxes, scores, classes, mask_probs,
    masks[, mask_scores]) of the exported model. ``eager_mask_probs`` (N, R, R), when given, are the eager R x R
    probabilities in the same order as ``eager``.

    Returns counts and the worst differences over matched detections: max_box_diff (px),
    max_score_diff, max_mask_prob_diff, min_mask_iou, mask_pixels_differing, unmatched and, with
    ``eager_mask_probs``, unexplained_mask_pixels: differing mask pixels whose eager pasted
    probability is farther than ``prob_tol`` from the 0.5 threshold (float noise flips only the
    pixels at the threshold; anything else is a real difference).
    """
    boxes, scores, classes, probs, masks = (_np(o) for o in outputs[:5])
    ref_boxes = _np(eager.pred_boxes.tensor)
    ref_scores, ref_classes = _np(eager.scores), _np(eager.pred_classes)
    match = match_by_box(ref_boxes, ref_classes, boxes, classes)
    ok = match >= 0
    m = match[ok]
    report = {
        "count_eager": len(ref_boxes), "count_export": len(boxes), "unmatched": int((~ok).sum()),
        "max_box_diff": 0.0, "max_score_diff": 0.0, "max_mask_prob_diff": 0.0,
        "min_mask_iou": 1.0, "mask_pixels_differing": 0,
    }
    if eager_mask_probs is not None and masks.size:
        report["unexplained_mask_pixels"] = 0
    if not ok.any():
        return report
    report["max_box_diff"] = float(np.abs(boxes[m] - ref_boxes[ok]).max())
    report["max_score_diff"] = float(np.abs(scores[m] - ref_scores[ok]).max())
    if len(outputs) > 5 and eager.has("mask_scores"):
        report["max_mask_score_diff"] = float(np.abs(_np(outputs[5])[m] - _np(eager.mask_scores)[ok]).max())
    if eager_mask_probs is not None and probs.size:
        report["max_mask_prob_diff"] = float(np.abs(probs[m] - _np(eager_mask_probs)[ok]).max())
    if eager.has("pred_masks") and masks.size:
        ours, theirs = masks[m].astype(bool), _np(eager.pred_masks)[ok].astype(bool)
        inter = (ours & theirs).sum(axis=(1, 2))
        union = (ours | theirs).sum(axis=(1, 2))
        iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
        report["min_mask_iou"] = float(iou.min())
        report["mask_pixels_differing"] = int((ours != theirs).sum())
        if eager_mask_probs is not None and report["mask_pixels_differing"]:
            report["unexplained_mask_pixels"] = _unexplained_flips(
                ours, theirs, _np(eager_mask_probs)[ok], ref_boxes[ok], prob_tol)
    return report


def _unexplained_flips(ours, theirs, probs, boxes, tol: float) -> int:
    from ..inference import paste_probs_grid

    count = 0
    h, w = theirs.shape[1:]
    for i in np.nonzero((ours != theirs).any(axis=(1, 2)))[0]:
        pasted = paste_probs_grid(torch.as_tensor(probs[i:i + 1]), torch.as_tensor(boxes[i:i + 1]), h, w)[0].numpy()
        count += int(((ours[i] != theirs[i]) & (np.abs(pasted - 0.5) > tol)).sum())
    return count


def eager_predict(model, image: torch.Tensor, output_size: torch.Tensor):
    """The eager model on the same inputs: (Instances, R x R mask probabilities or None), the
    probabilities in the order and number of the instances (from the model's ``inference``)."""
    h, w = (int(v) for v in output_size)
    with torch.no_grad():
        images = model.preprocess_image([{"image": image[0]}])
        features = model.backbone(model.backbone_input(images.tensor))
        backend = model.eager_backend(images.tensor.device)
        result = model.inference(features, images.image_sizes, [(h, w)], backend)[0]
    # R x R probabilities in boxes; None for whole-image probabilities (SOLOv2, mask_resolution 0)
    probs = result.get("mask_probs") if model_outputs(model).masks == "box" else None
    return model.to_instances(result, (h, w)), probs


# ---- reduced precision: no eager model computes what an int8 file computes, so it is held to the
# float32 model by detection agreement (blendmask.utils.agreement), not by equality

INT8_MIN_MATCHED = 0.95  # share of all float32 detections matched (same class, box IoU >= 0.5)
INT8_MIN_MASK_IOU = 0.95  # mean mask IoU of the matched detections
CONFIDENT_SCORE = 0.5  # every float32 detection scoring at least this must be matched


def outputs_to_instances(outputs: Sequence, output_size):
    """An exported model's (boxes, scores, classes, mask_probs, masks, ...) as detectron2 ``Instances``."""
    from detectron2.structures import Boxes, Instances

    boxes, scores, classes, _, masks = outputs[:5]
    instances = Instances(tuple(int(v) for v in output_size))
    instances.pred_boxes = Boxes(torch.as_tensor(boxes))
    instances.scores = torch.as_tensor(scores)
    instances.pred_classes = torch.as_tensor(classes)
    if masks.numel() or len(boxes) == 0:  # (N, 0, 0) without pasted masks: no masks to compare
        instances.pred_masks = torch.as_tensor(masks)
    return instances


def agreement_row(references, others, min_score: float = CONFIDENT_SCORE) -> Dict:
    """Agreement of ``others`` with ``references`` (Instances, one per image, float32 eager first):
    :func:`blendmask.utils.agreement.combine` over all detections, plus ``confident`` (reference
    detections scoring at least ``min_score``), ``confident_matched`` (those matched to any of the
    other detections) and the mean and min mask IoU of those pairs."""
    from ..utils.agreement import combine, compare_instances

    agreements = [compare_instances(ref, other) for ref, other in zip(references, others)]
    row = combine(agreements)
    confident, ious = 0, []
    for ref, other, a in zip(references, others, agreements):
        confident += int((ref.scores >= min_score).sum())
        ious += [_mask_iou(ref, other, i, j) for i, j in a.pairs if ref.scores[i] >= min_score]
    row.update(confident=confident, confident_matched=len(ious),
               confident_mean_mask_iou=float(np.mean(ious)) if ious else 1.0,
               confident_min_mask_iou=float(np.min(ious)) if ious else 1.0)
    return row


def _mask_iou(ref, other, i: int, j: int) -> float:
    if not (ref.has("pred_masks") and other.has("pred_masks")):
        return 1.0
    a, b = ref.pred_masks[i], other.pred_masks[j]
    union = int((a | b).sum())
    return int((a & b).sum()) / union if union else 1.0


def within_int8_bounds(row: Dict) -> bool:
    """Whether an :func:`agreement_row` of an int8 file against the float32 model is within the
    bounds ``--verify`` holds int8 files to: every confident detection matched, at least
    ``INT8_MIN_MATCHED`` of all detections matched, mean mask IoU at least ``INT8_MIN_MASK_IOU``.
    On the trained shapes BlendMask (docs/export.md) int8 measured 0.985-0.990 matched, all
    confident ones matched, mean mask IoU 0.981-0.985; eager bf16 0.997, all, 0.984."""
    matched = row["matched"] / row["n_ref"] if row["n_ref"] else 1.0
    return (row["confident_matched"] == row["confident"] and matched >= INT8_MIN_MATCHED
            and row["mean_mask_iou"] >= INT8_MIN_MASK_IOU)
