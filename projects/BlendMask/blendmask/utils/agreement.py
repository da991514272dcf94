"""How far two sets of predictions for one image are apart (e.g. a model in bfloat16 against the
same model in float32): detections matched one to one, then score, box and mask differences.

Matching: detections of the same class, greedily in decreasing score of the reference, each to the
unmatched candidate with the highest box IoU (at least ``min_iou``). Detections left unmatched on
either side are reported with their highest score: when precision moves a score across the test
threshold or a top-k cut, the unmatched detections are the low-scored ones.
"""

from dataclasses import asdict, dataclass, field
from typing import List, Tuple

import torch
from detectron2.structures import Instances, pairwise_iou


@dataclass
class Agreement:
    """One image: counts, the worst differences over matched detections, mask IoUs."""

    n_ref: int
    n_other: int
    matched: int
    max_unmatched_score: float  # highest score of an unmatched detection, either side (0: none)
    max_score_diff: float  # |score - score_ref| over matched detections
    max_box_diff: float  # px, largest coordinate difference over matched detections
    min_mask_iou: float  # 1.0 without masks
    mean_mask_iou: float
    pairs: List[Tuple[int, int]] = field(default_factory=list, repr=False)

    @property
    def unmatched(self) -> int:
        return self.n_ref + self.n_other - 2 * self.matched

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("pairs")
        d["unmatched"] = self.unmatched
        return d


def match_instances(ref: Instances, other: Instances, min_iou: float = 0.5) -> List[Tuple[int, int]]:
    """(index in ``ref``, index in ``other``) pairs: same class, box IoU >= ``min_iou``, greedy by
    decreasing ``ref`` score, each side used once."""
    if len(ref) == 0 or len(other) == 0:
        return []
    iou = pairwise_iou(ref.pred_boxes, other.pred_boxes)
    iou[ref.pred_classes[:, None] != other.pred_classes[None, :]] = -1
    if ref.has("pred_masks") and other.has("pred_masks") and not _boxes_informative(ref):
        iou = torch.where(iou >= 0, mask_iou_matrix(ref.pred_masks, other.pred_masks), iou)
    pairs, used = [], torch.zeros(len(other), dtype=torch.bool)
    for i in torch.argsort(ref.scores, descending=True).tolist():
        row = iou[i].masked_fill(used, -1)
        j = int(row.argmax())
        if row[j] >= min_iou:
            pairs.append((i, j))
            used[j] = True
    return pairs


def _boxes_informative(instances: Instances) -> bool:
    """False when the boxes say nothing (SOLOv2 with MODEL.SOLOV2.BOXES_FROM_MASKS False: all zero)."""
    return bool((instances.pred_boxes.area() > 0).any())


def mask_iou_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(n, m) IoU of (n, H, W) and (m, H, W) boolean masks (float64 counts: exact)."""
    fa, fb = a.flatten(1).double(), b.flatten(1).double()
    inter = fa @ fb.t()
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter)).float()


def compare_instances(ref: Instances, other: Instances, min_iou: float = 0.5) -> Agreement:
    """The :class:`Agreement` of ``other`` with ``ref`` (both on the CPU, one image)."""
    pairs = match_instances(ref, other, min_iou)
    i = torch.tensor([p[0] for p in pairs], dtype=torch.long)
    j = torch.tensor([p[1] for p in pairs], dtype=torch.long)
    unmatched = torch.cat([_left_out(ref.scores, i), _left_out(other.scores, j)])
    score_diff = (ref.scores[i].double() - other.scores[j].double()).abs()
    box_diff = (ref.pred_boxes.tensor[i].double() - other.pred_boxes.tensor[j].double()).abs()
    if ref.has("pred_masks") and other.has("pred_masks") and len(pairs):
        ma, mb = ref.pred_masks[i].flatten(1), other.pred_masks[j].flatten(1)
        inter = (ma & mb).sum(1).double()
        union = (ma | mb).sum(1).double()
        ious = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter))
    else:
        ious = torch.ones(len(pairs), dtype=torch.float64)
    return Agreement(
        n_ref=len(ref), n_other=len(other), matched=len(pairs),
        max_unmatched_score=float(unmatched.max()) if len(unmatched) else 0.0,
        max_score_diff=float(score_diff.max()) if len(pairs) else 0.0,
        max_box_diff=float(box_diff.max()) if len(pairs) else 0.0,
        min_mask_iou=float(ious.min()) if len(pairs) else 1.0,
        mean_mask_iou=float(ious.mean()) if len(pairs) else 1.0,
        pairs=pairs,
    )


def _left_out(scores: torch.Tensor, used: torch.Tensor) -> torch.Tensor:
    keep = torch.ones(len(scores), dtype=torch.bool)
    keep[used] = False
    return scores[keep].double()


def combine(agreements: List[Agreement]) -> dict:
    """Several images' agreements as one row: counts summed, worst differences, mean IoU over pairs."""
    pairs = sum(a.matched for a in agreements)
    return dict(
        n_ref=sum(a.n_ref for a in agreements),
        n_other=sum(a.n_other for a in agreements),
        matched=pairs,
        unmatched=sum(a.unmatched for a in agreements),
        max_unmatched_score=max((a.max_unmatched_score for a in agreements), default=0.0),
        max_score_diff=max((a.max_score_diff for a in agreements), default=0.0),
        max_box_diff=max((a.max_box_diff for a in agreements), default=0.0),
        min_mask_iou=min((a.min_mask_iou for a in agreements), default=1.0),
        mean_mask_iou=(sum(a.mean_mask_iou * a.matched for a in agreements) / pairs) if pairs else 1.0,
    )
