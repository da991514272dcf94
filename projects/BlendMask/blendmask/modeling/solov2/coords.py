"""CoordConv inputs: two channels of normalised x and y coordinates appended to a feature map."""

import torch


def append_coords(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C + 2, H, W): channels C and C+1 are x and y, each ``linspace(-1, 1)``
    over the whole map (padding included)."""
    n, _, h, w = x.shape
    xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype)
    ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    coords = torch.stack([xx, yy])[None].expand(n, 2, h, w)
    return torch.cat([x, coords], dim=1)
