"""BlendMask's attention ("top layer"): a K x M x M attention for each FCOS location.

A 3x3 conv on FCOS's box tower with K*M*M outputs. It is only ever needed where FCOS keeps a
detection (inference) or at its positive locations (training), so by default it is evaluated
only there (``sparse``, MODEL.BLENDMASK.SPARSE_ATTENTION); the dense form convolves every cell of
every level and then reads the same locations. Both give the same values up to float rounding.
It is an ``nn.Conv2d`` so that AdelaiDet's ``top_layer.weight``/``top_layer.bias`` load as they are.
"""

from typing import List

import torch
from torch import nn

from ...inference import Locations, conv_at_locations, gather_patches


class AttentionConv(nn.Conv2d):
    def __init__(self, in_channels: int, num_bases: int, attn_size: int, sparse: bool = True):
        super().__init__(in_channels, num_bases * attn_size * attn_size, kernel_size=3, padding=1)
        nn.init.normal_(self.weight, std=0.01)
        nn.init.zeros_(self.bias)
        self.sparse = sparse

    def at_locations(self, box_towers: List[torch.Tensor], locations: Locations) -> torch.Tensor:
        """(P, K*M*M) attentions at ``locations`` of the per-level box towers (N, C, H_l, W_l)."""
        if self.sparse:
            return conv_at_locations(self, box_towers, locations)
        return gather_patches([self(tower) for tower in box_towers], locations)
