"""FCOS inference: threshold, per-level top-k, decode boxes, class-aware NMS, top-k over levels."""

from typing import Callable, List, Optional, Sequence, Tuple

import torch
from detectron2.layers import batched_nms
from detectron2.structures import Boxes, Instances


def _candidates_single_level(
    locations, logits, reg, ctrness, top_feat, *, stride, thresh, pre_nms_topk, thresh_with_ctr
):
    """Candidates of one image on one level.

    locations (HW, 2); logits (C, H, W); reg (4, H, W) in stride units; ctrness (1, H, W);
    top_feat (D, H, W) or None. Returns a dict of per-candidate tensors.
    """
    num_classes = logits.shape[0]
    cls_prob = logits.reshape(num_classes, -1).t().sigmoid()  # (HW, C)
    ctr_prob = ctrness.reshape(-1).sigmoid()
    if thresh_with_ctr:
        cls_prob = cls_prob * ctr_prob[:, None]
    candidate_mask = cls_prob > thresh
    if not thresh_with_ctr:
        cls_prob = cls_prob * ctr_prob[:, None]
    scores = cls_prob[candidate_mask]
    loc_idx, classes = candidate_mask.nonzero(as_tuple=True)
    if scores.numel() > pre_nms_topk:
        scores, keep = scores.topk(pre_nms_topk, sorted=False)
        loc_idx, classes = loc_idx[keep], classes[keep]
    per_loc_reg = reg.reshape(4, -1).t()[loc_idx] * stride
    locs = locations[loc_idx]
    boxes = torch.stack(
        (locs[:, 0] - per_loc_reg[:, 0], locs[:, 1] - per_loc_reg[:, 1],
         locs[:, 0] + per_loc_reg[:, 2], locs[:, 1] + per_loc_reg[:, 3]),
        dim=1,
    )
    out = {"boxes": boxes, "scores": torch.sqrt(scores), "classes": classes, "locations": locs, "loc_idx": loc_idx}
    if top_feat is not None:
        out["top_feat"] = top_feat.reshape(top_feat.shape[0], -1).t()[loc_idx]
    return out


def keep_top_k_with_ties(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of scores >= the k-th largest score (ties at the cut may keep more than k)."""
    if k <= 0 or len(scores) <= k:
        return torch.arange(len(scores), device=scores.device)
    threshold = torch.kthvalue(scores.cpu(), len(scores) - k + 1).values.item()
    return torch.nonzero(scores >= threshold).squeeze(1)


def predict_instances(
    locations: List[torch.Tensor],
    logits: List[torch.Tensor],
    reg: List[torch.Tensor],
    ctrness: List[torch.Tensor],
    top_feats: Optional[List[torch.Tensor]],
    image_sizes: List[Tuple[int, int]],
    *,
    strides: Sequence[int],
    thresh: float,
    pre_nms_topk: int,
    post_nms_topk: int,
    nms_thresh: float,
    thresh_with_ctr: bool,
    top_feat_fn: Optional[Callable] = None,
) -> List[Instances]:
    """Per-level outputs (N, ., H_l, W_l) -> one ``Instances`` per image.

    Fields: pred_boxes (unclipped, input-image pixels), scores = sqrt(cls * ctr), pred_classes,
    locations, fpn_levels and top_feat (n, D): read from ``top_feats`` (dense per-level maps) or,
    for the kept detections only, computed by ``top_feat_fn(levels, images, cell_indices)``.
    """
    results = []
    for i, image_size in enumerate(image_sizes):
        per_level = []
        for level, stride in enumerate(strides):
            cands = _candidates_single_level(
                locations[level], logits[level][i], reg[level][i], ctrness[level][i],
                top_feats[level][i] if top_feats else None,
                stride=stride, thresh=thresh, pre_nms_topk=pre_nms_topk,
                thresh_with_ctr=thresh_with_ctr,
            )
            cands["fpn_levels"] = torch.full_like(cands["classes"], level)
            per_level.append(cands)
        merged = {k: torch.cat([c[k] for c in per_level]) for k in per_level[0]}
        keep = batched_nms(merged["boxes"], merged["scores"], merged["classes"], nms_thresh)
        merged = {k: v[keep] for k, v in merged.items()}
        keep = keep_top_k_with_ties(merged["scores"], post_nms_topk)
        merged = {k: v[keep] for k, v in merged.items()}
        loc_idx = merged.pop("loc_idx")
        if top_feat_fn is not None:
            merged["top_feat"] = top_feat_fn(merged["fpn_levels"], torch.full_like(loc_idx, i), loc_idx)

        instances = Instances(image_size)
        instances.pred_boxes = Boxes(merged.pop("boxes"))
        instances.scores = merged.pop("scores")
        instances.pred_classes = merged.pop("classes")
        for name, value in merged.items():
            instances.set(name, value)
        results.append(instances)
    return results
