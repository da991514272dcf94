"""FCOS inference, trace-safe: threshold, per-level top-k, decode boxes, class-aware NMS, top-k.

The eager model and its ONNX/TorchScript exports run this same code; no Python number depends on
the image or the detections (fixed-size top-k with padding, sizes read from tensor shapes).
"""

from typing import Dict, List, Sequence

import torch

from ...engine.precision import autocast_disabled, float32
from ...inference import class_aware_nms, top_k_with_ties


def level_candidates(logits, reg, ctrness, stride: int, *, thresh: float, pre_nms_topk: int,
                     thresh_with_ctr: bool) -> Dict[str, torch.Tensor]:
    """The best ``pre_nms_topk`` (location, class) pairs of one image on one level.

    logits (C, H, W); reg (4, H, W) l, t, r, b in stride units; ctrness (1, H, W). A pair is a
    candidate when sigmoid(cls) (times sigmoid(ctr) with ``thresh_with_ctr``) exceeds ``thresh``;
    its score is sqrt(sigmoid(cls) * sigmoid(ctr)). Returns "boxes" (K, 4), "scores", "classes",
    "cells" (row-major index in the level) and "valid" (K,) with K = ``pre_nms_topk`` always;
    rows that are not candidates have ``valid`` False.
    """
    num_classes, width = logits.shape[0], logits.shape[2]
    cls_prob = logits.flatten(1).t().sigmoid()  # (HW, C)
    prob = cls_prob * ctrness.flatten(1).t().sigmoid()
    candidate = (prob if thresh_with_ctr else cls_prob) > thresh
    key = prob.masked_fill(~candidate, -1.0).flatten()
    k = int(pre_nms_topk)
    # padded so that topk is valid on small levels; padding never passes as a candidate
    top, flat = torch.cat([key, key.new_full((k,), -1.0)]).topk(k)
    valid = top > -0.5
    flat = torch.where(valid, flat, torch.zeros_like(flat))
    cells = torch.div(flat, num_classes, rounding_mode="floor")
    classes = flat - cells * num_classes
    x = ((cells % width) * stride + stride // 2).to(reg.dtype)
    y = (torch.div(cells, width, rounding_mode="floor") * stride + stride // 2).to(reg.dtype)
    ltrb = reg.flatten(1).t()[cells] * stride
    boxes = torch.stack((x - ltrb[:, 0], y - ltrb[:, 1], x + ltrb[:, 2], y + ltrb[:, 3]), dim=1)
    scores = torch.sqrt(prob.flatten()[flat])
    return {"boxes": boxes, "scores": scores, "classes": classes, "cells": cells, "valid": valid}


def detect_single_image(
    logits: List[torch.Tensor], reg: List[torch.Tensor], ctrness: List[torch.Tensor], *,
    strides: Sequence[int], thresh: float, pre_nms_topk: int, post_nms_topk: int, nms_thresh: float,
    thresh_with_ctr: bool, num_classes: int, nms_backend: str = "torchvision",
) -> Dict[str, torch.Tensor]:
    """Per-level head outputs of one image ((C, H_l, W_l) each) -> its detections.

    Returns "boxes" (n, 4) unclipped XYXY in input pixels, "scores", "classes", "levels", "cells",
    by decreasing score: candidates of every level, NMS within each class, then the best
    ``post_nms_topk`` (ties at the cut kept).

    Under reduced-precision inference (TEST.PRECISION) the head's outputs are cast to float32 and
    all of this runs outside autocast: in bfloat16 the scores (sqrt of a product of sigmoids) have
    8 significant bits, so about 1 in 50 detections ties with another at the top-k cut (51 or 57
    kept for a cap of 50) and NMS compares rounded scores.
    """
    with autocast_disabled(logits[0].device.type):
        return _detect_single_image(float32(logits), float32(reg), float32(ctrness), strides=strides, thresh=thresh,
                                    pre_nms_topk=pre_nms_topk, post_nms_topk=post_nms_topk, nms_thresh=nms_thresh,
                                    thresh_with_ctr=thresh_with_ctr, num_classes=num_classes, nms_backend=nms_backend)


def _detect_single_image(logits, reg, ctrness, *, strides, thresh, pre_nms_topk, post_nms_topk, nms_thresh,
                         thresh_with_ctr, num_classes, nms_backend):
    per_level = []
    for level, stride in enumerate(strides):
        cands = level_candidates(logits[level], reg[level], ctrness[level], stride, thresh=thresh,
                                 pre_nms_topk=pre_nms_topk, thresh_with_ctr=thresh_with_ctr)
        cands["levels"] = torch.full_like(cands["cells"], level)
        per_level.append(cands)
    keep = torch.nonzero(torch.cat([c.pop("valid") for c in per_level])).squeeze(1)
    merged = {key: torch.cat([c[key] for c in per_level])[keep] for key in per_level[0]}
    keep = class_aware_nms(merged["boxes"], merged["scores"], merged["classes"], nms_thresh, num_classes,
                           nms_backend)
    keep = keep[top_k_with_ties(merged["scores"][keep], post_nms_topk)]
    return {key: value[keep] for key, value in merged.items()}
