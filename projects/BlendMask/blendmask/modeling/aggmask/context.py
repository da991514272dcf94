"""AggMask*'s context feature: every FPN level brought to the mask feature's size and fused into a
few channels that every cell's aggregation network reads beside its neighbours' mask logits.

    context = ReLU(out(ReLU(GN(reduce(concat_l resize(P_l))))))

``resize`` is bilinear with align_corners=True to P2's size, ``reduce`` a 1x1 conv (L*C -> C,
bias), GN 32 groups, ``out`` a 1x1 conv (C -> Cc, bias). ``reduce`` is linear and the resize
mixes pixels of one channel only (weights summing to 1), so ``reduce`` runs on each level at its
own size before the resize, then the levels are summed: the same values, 1/L of the full-size work.
"""

from typing import List

import torch
from torch import nn
from torch.nn import functional as F


class AggMaskContextHead(nn.Module):
    """``context_head``: (N, C, H_l, W_l) per level -> (N, Cc, H_0, W_0)."""

    def __init__(self, in_channels: int, num_levels: int = 5, out_channels: int = 16, norm: str = "GN"):
        super().__init__()
        if norm not in ("GN", "", "none"):
            raise ValueError(f"the context head's norm must be 'GN' or '' (none), got {norm!r}")
        self.in_channels, self.num_levels = in_channels, num_levels
        self.reduce = nn.Conv2d(in_channels * num_levels, in_channels, 1)
        self.norm = nn.GroupNorm(32, in_channels) if norm == "GN" else nn.Identity()
        self.out = nn.Conv2d(in_channels, out_channels, 1)
        # PyTorch's default initialisation, as the authors leave these layers

    def forward(self, features: List[torch.Tensor]) -> torch.Tensor:
        if len(features) != self.num_levels:
            raise ValueError(f"the context head reads {self.num_levels} levels, got {len(features)}")
        size = features[0].shape[-2:]
        weights = self.reduce.weight.split(self.in_channels, dim=1)
        fused = None
        for x, w in zip(features, weights):
            y = F.conv2d(x, w, self.reduce.bias if fused is None else None)  # the bias once
            if y.shape[-2:] != size:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=True)
            # in place: at the first level's size these are the largest maps of the head
            fused = y if fused is None else fused.add_(y)
        return F.relu(self.out(F.relu(self.norm(fused))))


__all__ = ["AggMaskContextHead"]
