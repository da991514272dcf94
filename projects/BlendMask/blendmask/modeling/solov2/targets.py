"""SOLOv2 training targets: which grid cells of which levels are positive for which instance.

An instance goes to every level whose scale range holds sqrt(box area) (both ends inclusive;
the ranges overlap). On a level with grid S, its centre cell is the cell of the mask's centre of
mass; the positive region is the centre region (the box scaled by ``sigma`` around that centre)
clipped to the 3 x 3 cells around the centre cell. Every positive cell gets the instance's class
(a later instance overwrites) and a sample: the cell index and the mask at 1/4 resolution. The
arithmetic is float32 with ``(c / size) // (1 / S)`` for cell indices, as AdelaiDet computes them.
"""

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import cv2
import numpy as np
import torch


@dataclass
class LevelTargets:
    """One image, one level: ``cate_label`` (S, S) int64 (``num_classes`` = background),
    ``ins_ind_label`` (S*S,) bool positive cells, ``grid_order`` (P,) int64 cell of each sample,
    ``ins_label`` (P, Hf, Wf) uint8 mask target of each sample."""

    cate_label: torch.Tensor
    ins_ind_label: torch.Tensor
    grid_order: torch.Tensor
    ins_label: torch.Tensor


def center_of_mass(masks: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(n, H, W) binary -> (x, y) float32 centres of mass, pixel indices from 0."""
    masks = masks.to(torch.float32)
    _, h, w = masks.shape
    ys = torch.arange(h, dtype=torch.float32, device=masks.device)
    xs = torch.arange(w, dtype=torch.float32, device=masks.device)
    m00 = masks.sum(dim=-1).sum(dim=-1).clamp(min=1e-6)
    m10 = (masks * xs).sum(dim=-1).sum(dim=-1)
    m01 = (masks * ys[:, None]).sum(dim=-1).sum(dim=-1)
    return m10 / m00, m01 / m00


def _cell(value: torch.Tensor, size: int, grid: int) -> int:
    return int((value / size) // (1.0 / grid))


def downscale_mask(mask: np.ndarray, scale: float = 0.25) -> np.ndarray:
    """uint8 (H, W) -> cv2 bilinear resize to (int(H*scale + 0.5), int(W*scale + 0.5))."""
    h, w = mask.shape
    return cv2.resize(mask, (int(w * scale + 0.5), int(h * scale + 0.5)), interpolation=cv2.INTER_LINEAR)


def solov2_targets_single(
    gt_boxes: torch.Tensor, gt_classes: torch.Tensor, gt_masks: torch.Tensor, mask_feat_size: Tuple[int, int],
    num_grids: Sequence[int], scale_ranges: Sequence[Sequence[float]], sigma: float, num_classes: int,
    one_sample_per_cell: bool = False, min_mask_pixels: int = 1,
) -> List[LevelTargets]:
    """Targets of one image. ``gt_boxes`` (n, 4) XYXY, ``gt_classes`` (n,), ``gt_masks`` (n, h, w)
    binary at the unpadded input size; ``mask_feat_size`` (Hf, Wf) = padded input size / 4.

    AdelaiDet's defaults: a cell shared by two instances holds a sample of each, and any mask with
    a pixel counts. ``one_sample_per_cell`` keeps only the last instance's sample in such a cell
    (SOLOv1 style, as the AggMask* authors'; samples then come in cell order) and masks with fewer
    than ``min_mask_pixels`` pixels are skipped (the AggMask* authors: 10)."""
    device = gt_boxes.device
    hf, wf = mask_feat_size
    padded_h, padded_w = hf * 4, wf * 4
    gt_boxes = gt_boxes.to(torch.float32)
    widths = gt_boxes[:, 2] - gt_boxes[:, 0]
    heights = gt_boxes[:, 3] - gt_boxes[:, 1]
    areas = torch.sqrt(widths * heights)
    half_ws, half_hs = 0.5 * widths * sigma, 0.5 * heights * sigma
    has_pixels = (gt_masks.flatten(1).sum(1) >= max(int(min_mask_pixels), 1) if len(gt_masks)
                  else torch.zeros(0, dtype=torch.bool))
    centers_x, centers_y = center_of_mass(gt_masks) if len(gt_masks) else (None, None)
    small_masks = {}  # instance -> its 1/4-resolution mask (the same on every level)

    levels = []
    for (lower, upper), grid in zip(scale_ranges, num_grids):
        cate_label = torch.full((grid, grid), num_classes, dtype=torch.int64, device=device)
        ins_ind_label = torch.zeros(grid * grid, dtype=torch.bool, device=device)
        grid_order, ins_label = [], []
        hits = torch.nonzero((areas >= lower) & (areas <= upper)).flatten().tolist()
        for k in hits:
            if not bool(has_pixels[k]):
                continue
            cx, cy, half_w, half_h = centers_x[k], centers_y[k], half_ws[k], half_hs[k]
            coord_w, coord_h = _cell(cx, padded_w, grid), _cell(cy, padded_h, grid)
            top_box = max(0, _cell(cy - half_h, padded_h, grid))
            down_box = min(grid - 1, _cell(cy + half_h, padded_h, grid))
            left_box = max(0, _cell(cx - half_w, padded_w, grid))
            right_box = min(grid - 1, _cell(cx + half_w, padded_w, grid))
            top, down = max(top_box, coord_h - 1), min(down_box, coord_h + 1)
            left, right = max(left_box, coord_w - 1), min(right_box, coord_w + 1)
            cate_label[top:down + 1, left:right + 1] = int(gt_classes[k])
            if k not in small_masks:
                small = downscale_mask(gt_masks[k].to(torch.uint8).cpu().numpy())
                target = torch.zeros((hf, wf), dtype=torch.uint8, device=device)
                target[:small.shape[0], :small.shape[1]] = torch.from_numpy(small).to(device)
                small_masks[k] = target
            for row in range(top, down + 1):
                for col in range(left, right + 1):
                    cell = row * grid + col
                    grid_order.append(cell)
                    ins_label.append(small_masks[k])
                    ins_ind_label[cell] = True
        if one_sample_per_cell and grid_order:
            last = {cell: j for j, cell in enumerate(grid_order)}  # a later instance overwrites
            grid_order = sorted(last)
            ins_label = [ins_label[last[cell]] for cell in grid_order]
        levels.append(LevelTargets(
            cate_label=cate_label,
            ins_ind_label=ins_ind_label,
            grid_order=torch.tensor(grid_order, dtype=torch.int64, device=device),
            ins_label=(torch.stack(ins_label) if ins_label
                       else torch.zeros((0, hf, wf), dtype=torch.uint8, device=device)),
        ))
    return levels
