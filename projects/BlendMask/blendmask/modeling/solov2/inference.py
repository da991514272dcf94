"""SOLOv2 inference for one image, trace-safe: point NMS on the category grid, candidates above the
score threshold, their dynamic masks on the whole padded mask feature, the stride filter,
maskness, pre-NMS top-k, matrix NMS, the update threshold and the final top-k.

No Python number depends on the data, so eager PyTorch and the exports run this same code.
"""

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch.nn import functional as F

from ...engine.precision import autocast_disabled, float32
from ...inference import matrix_nms
from .losses import dynamic_masks


@dataclass(frozen=True)
class SOLOv2TestParams:
    score_thr: float = 0.1
    mask_thr: float = 0.5
    nms_pre: int = 500
    update_thr: float = 0.05
    max_per_img: int = 100
    nms_kernel: str = "gaussian"
    nms_sigma: float = 2.0


def point_nms(scores: torch.Tensor) -> torch.Tensor:
    """(N, C, S, S) probabilities; zero every cell below its up, left or up-left neighbour (per
    class; equal scores both stay)."""
    hmax = F.max_pool2d(scores, 2, stride=1, padding=1)
    keep = hmax[:, :, :-1, :-1] == scores
    return scores * keep.to(scores.dtype)


def _first(indices: torch.Tensor, k: int) -> torch.Tensor:
    return indices[:k]


def solov2_inference_single(
    cate_logits: List[torch.Tensor], kernels: List[torch.Tensor], mask_feat: torch.Tensor,
    strides: Sequence[int], params: SOLOv2TestParams, record: Optional[Dict[str, torch.Tensor]] = None,
    mask_logits: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
) -> Dict[str, torch.Tensor]:
    """One image. ``cate_logits`` per level (C, S, S), ``kernels`` per level (E, S, S),
    ``mask_feat`` (E, Hf, Wf). Returns, sorted by decreasing score: "scores", "classes", "levels",
    "cells" (index into the flat grid of all levels, level-major, row-major) and "mask_probs"
    (n, Hf, Wf) soft masks over the padded input at 1/4 resolution.

    ``record``: a dict that receives the intermediates (for comparisons with a reference): the
    candidates' "cand_cells", "cand_classes", "cand_scores", "cand_sum_masks", "cand_keep"; the
    NMS inputs' "nms_in_cells", "nms_in_classes", "nms_in_scores", "nms_in_sum_masks",
    "nms_in_masks", "nms_in_maskness" and "nms_out_scores"; "cate_scores" (G, C) and
    "kernel_grid" (G, E).

    ``mask_logits``: cells (P,) of the category grids -> their mask logits (P, Hf, Wf); default
    SOLOv2's, each cell's dynamic kernel on ``mask_feat`` (AggMask* passes its aggregation)."""
    # Reduced-precision inference (TEST.PRECISION): the category logits and the mask logits are
    # cast to float32 here, and matrix NMS runs outside autocast, whose bfloat16 matrix product
    # would round the overlap pixel counts (exact in float32 up to 2^24, in bfloat16 only up to
    # 256) and so the decayed scores. The dynamic convolution itself stays in reduced precision.
    cate_logits = float32(cate_logits)
    num_classes = cate_logits[0].shape[0]
    scores = torch.cat([
        point_nms(torch.sigmoid(x)[None])[0].permute(1, 2, 0).reshape(-1, num_classes) for x in cate_logits
    ])
    kernel_grid = torch.cat([k.permute(1, 2, 0).reshape(-1, k.shape[0]) for k in kernels])
    sizes = [x.shape[-1] * x.shape[-2] for x in cate_logits]
    level_of_cell = torch.cat([torch.full((n,), i, dtype=torch.int64, device=scores.device)
                               for i, n in enumerate(sizes)])
    stride_of_level = torch.tensor(list(strides), dtype=torch.float32, device=scores.device)

    candidates = torch.nonzero(scores > params.score_thr)
    cells, classes = candidates[:, 0], candidates[:, 1]
    cand_scores = scores[cells, classes]
    logits = dynamic_masks(mask_feat, kernel_grid[cells]) if mask_logits is None else mask_logits(cells)
    soft = torch.sigmoid(float32(logits))
    binary = soft > params.mask_thr
    sum_masks = binary.sum((1, 2)).to(torch.float32)
    keep = torch.nonzero(sum_masks > stride_of_level[level_of_cell[cells]]).squeeze(1)
    if record is not None:
        record.update(cate_scores=scores, kernel_grid=kernel_grid, cand_cells=cells, cand_classes=classes,
                      cand_scores=cand_scores, cand_sum_masks=sum_masks,
                      cand_keep=torch.zeros_like(binary[:, 0, 0]).index_fill(0, keep, True))
    if torch.jit.is_tracing() or keep.shape[0] < cells.shape[0]:  # eager: no copies when all stay
        cells, classes, cand_scores = cells[keep], classes[keep], cand_scores[keep]
        soft, binary, sum_masks = soft[keep], binary[keep], sum_masks[keep]
    # soft where binary, else 0: the same values as soft * binary, one temporary fewer
    maskness = torch.where(binary, soft, 0.0).sum((1, 2)) / sum_masks
    nms_scores = cand_scores * maskness

    order = _first(torch.argsort(nms_scores, descending=True), params.nms_pre)
    cells, classes, nms_scores, sum_masks = cells[order], classes[order], nms_scores[order], sum_masks[order]
    binary = binary[order]
    # the soft masks are gathered once, for the final detections (rows of ``soft`` are candidates)
    nms_rows = order
    with autocast_disabled(soft.device.type):
        decayed = matrix_nms(binary, classes, nms_scores, sum_masks, kernel=params.nms_kernel,
                             sigma=params.nms_sigma)
    if record is not None:
        record.update(nms_in_cells=cells, nms_in_classes=classes, nms_in_scores=nms_scores,
                      nms_in_sum_masks=sum_masks, nms_in_masks=binary, nms_in_maskness=maskness[order],
                      nms_out_scores=decayed)

    keep = torch.nonzero(decayed >= params.update_thr).squeeze(1)
    order = keep[_first(torch.argsort(decayed[keep], descending=True), params.max_per_img)]
    return {
        "scores": decayed[order],
        "classes": classes[order],
        "levels": level_of_cell[cells[order]],
        "cells": cells[order],
        "mask_probs": soft[nms_rows[order]],
    }
