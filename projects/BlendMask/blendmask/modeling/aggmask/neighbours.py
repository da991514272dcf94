"""Which mask-grid cells each category cell of AggMask* aggregates.

A category cell (i, j) of a level with category grid Sc and mask grid Sm sits at
p = (i, j) * (Sm - 1) / (Sc - 1) on the mask grid (computed here in exact rationals).

- "cross" (5 cells): the nearest mask cell c = round(p) (half to even) and its four neighbours, in
  the order up, left, centre, right, down; each coordinate clamped to [0, Sm - 1], so at a border
  the clamped entry repeats the border cell.
- "corner" (4 cells): the cells around p, in the order (floor y, ceil x), (ceil y, ceil x),
  (ceil y, floor x), (floor y, floor x); where p is integral the entries coincide. No weights:
  the per-cell network learns how to combine them.

"auto" picks the authors' rule: cross when any level has equal grids, else corner. The mode is
one for all levels.
"""

import math
from fractions import Fraction
from typing import List, Sequence

import torch

NEIGHBOUR_MODES = ("auto", "cross", "corner")
NUM_NEIGHBOURS = {"cross": 5, "corner": 4}


def resolve_mode(mode: str, cate_grids: Sequence[int], mask_grids: Sequence[int]) -> str:
    if mode not in NEIGHBOUR_MODES:
        raise ValueError(f"MODEL.AGGMASK.NEIGHBOURS must be one of {NEIGHBOUR_MODES}, got {mode!r}")
    if len(cate_grids) != len(mask_grids):
        raise ValueError(f"category grids {list(cate_grids)} and mask grids {list(mask_grids)} differ in length")
    for sc, sm in zip(cate_grids, mask_grids):
        if sc < 1 or sm < 1:
            raise ValueError(f"grid sizes must be positive, got category {sc} and mask {sm}")
    if mode != "auto":
        return mode
    return "cross" if any(sc == sm for sc, sm in zip(cate_grids, mask_grids)) else "corner"


def _positions(cate_grid: int, mask_grid: int) -> List[Fraction]:
    if cate_grid == 1:
        return [Fraction(0)]
    return [Fraction(i * (mask_grid - 1), cate_grid - 1) for i in range(cate_grid)]


def _round_half_even(p: Fraction) -> int:
    return round(p)  # Fraction.__round__ rounds half to even


def neighbour_table(cate_grid: int, mask_grid: int, mode: str) -> torch.Tensor:
    """(Sc*Sc, nb, 2) int64: the (y, x) mask-grid cells of each category cell (row-major)."""
    if mode not in NUM_NEIGHBOURS:
        raise ValueError(f"neighbour mode must be 'cross' or 'corner', got {mode!r}")
    pos = _positions(cate_grid, mask_grid)
    top = mask_grid - 1

    def clamp(v):
        return min(max(v, 0), top)

    rows = []
    for py in pos:
        for px in pos:
            if mode == "cross":
                cy, cx = _round_half_even(py), _round_half_even(px)
                cells = [(cy - 1, cx), (cy, cx - 1), (cy, cx), (cy, cx + 1), (cy + 1, cx)]
                rows.append([(clamp(y), clamp(x)) for y, x in cells])
            else:
                y0, y1, x0, x1 = math.floor(py), math.ceil(py), math.floor(px), math.ceil(px)
                rows.append([(y0, x1), (y1, x1), (y1, x0), (y0, x0)])
    return torch.tensor(rows, dtype=torch.int64).reshape(cate_grid * cate_grid, NUM_NEIGHBOURS[mode], 2)


def global_neighbour_index(cate_grids: Sequence[int], mask_grids: Sequence[int], mode: str) -> torch.Tensor:
    """(sum Sc^2, nb) int64: for every category cell of every level (level-major, row-major), its
    neighbours as rows of the mask-grid kernels of all levels stacked the same way."""
    out, offset = [], 0
    for sc, sm in zip(cate_grids, mask_grids):
        table = neighbour_table(sc, sm, mode)
        out.append(offset + table[..., 0] * sm + table[..., 1])
        offset += sm * sm
    return torch.cat(out)


__all__ = ["NEIGHBOUR_MODES", "NUM_NEIGHBOURS", "global_neighbour_index", "neighbour_table", "resolve_mode"]
