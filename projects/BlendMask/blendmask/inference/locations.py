"""Features and convolutions at chosen feature-map cells (trace-safe).

A location is (level, image, cell): an FPN level, an image of the batch and the row-major index of
a cell in that level's map. Heads that need a feature only where FCOS keeps a detection (or, in
training, at its positive locations) read it here instead of computing it on every cell.
"""

from typing import List, NamedTuple

import torch
from torch import nn


class Locations(NamedTuple):
    """(P,) int64 tensors: FPN level, image in the batch, row-major cell index in the level."""

    levels: torch.Tensor
    images: torch.Tensor
    cells: torch.Tensor


def gather_patches(features: List[torch.Tensor], locations: Locations, kernel_size: int = 1) -> torch.Tensor:
    """The ``kernel_size`` x ``kernel_size`` neighbourhood of each location, zero outside the map.

    features: per-level maps (N, C, H_l, W_l). Returns (P, k*k*C), ordered (row tap, column tap,
    channel). Every level is gathered for every location (cells clamped where the location is on
    another level) and each location's own level is picked with ``where``: no loop over the levels
    present, so tracing records the same graph for any detections.
    """
    levels, images, cells = locations
    k = int(kernel_size)
    taps = torch.arange(k, device=cells.device) - k // 2
    out = None
    for level, feature in enumerate(features):
        n, c, h, w = feature.shape
        here = levels == level
        cell = torch.where(here, cells, torch.zeros_like(cells))
        image = torch.where(here, images, torch.zeros_like(images))
        ys = torch.div(cell, w, rounding_mode="floor")[:, None, None] + taps[None, :, None]  # (P, k, 1)
        xs = (cell % w)[:, None, None] + taps[None, None, :]  # (P, 1, k)
        index = image[:, None, None] * (h * w) + ys * w + xs  # (P, k, k)
        rows = feature.permute(0, 2, 3, 1).reshape(-1, c)  # (N*H*W, C): a view for channels-last maps
        if k > 1:
            inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
            index = torch.where(inside, index, torch.zeros_like(index))
        patches = rows.index_select(0, index.flatten()).reshape(-1, k * k, c)
        if k > 1:
            patches = patches.masked_fill(~inside.reshape(-1, k * k, 1), 0.0)
        patches = patches.flatten(1)
        out = patches if out is None else torch.where(here[:, None], patches, out)
    return out


def supports_conv_at_locations(module) -> bool:
    """True for a plain "same" conv (stride 1, no dilation/groups, zero padding k//2)."""
    return (
        isinstance(module, nn.Conv2d)
        and module.stride == (1, 1) and module.dilation == (1, 1) and module.groups == 1
        and module.kernel_size[0] == module.kernel_size[1] and module.kernel_size[0] % 2 == 1
        and module.padding == (module.kernel_size[0] // 2,) * 2 and module.padding_mode == "zeros"
    )


def conv_at_locations(conv: nn.Conv2d, features: List[torch.Tensor], locations: Locations) -> torch.Tensor:
    """``conv`` evaluated only at ``locations``: equal to its dense output indexed there.

    Returns (P, out_channels). The cost is one (P, C*k*k) x (C*k*k, out_channels) product, not the
    conv over every cell of every level.
    """
    if not supports_conv_at_locations(conv):
        raise ValueError(f"conv_at_locations needs a stride-1 'same' conv without groups, got {conv}")
    k = conv.kernel_size[0]
    patches = gather_patches(features, locations, k)
    weight = conv.weight.permute(0, 2, 3, 1).reshape(conv.out_channels, -1)  # (D, k*k*C) as the patches
    out = patches @ weight.t()
    return out + conv.bias if conv.bias is not None else out
