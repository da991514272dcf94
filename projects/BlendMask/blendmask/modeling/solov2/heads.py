"""SOLOv2's instance head: per level, a category grid (S x S x C) and dynamic kernels (S x S x E)."""

import math
from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from .coords import append_coords


def conv_norm_relu_tower(in_channels: int, channels: int, num_convs: int, norm: str) -> nn.Sequential:
    """num_convs x (3x3 conv, GN(32) when ``norm`` is "GN", ReLU), AdelaiDet's index layout
    (conv, norm, relu, conv, ...; without a norm: conv, relu, ...)."""
    layers = []
    for i in range(num_convs):
        use_gn = norm == "GN"
        conv = nn.Conv2d(in_channels if i == 0 else channels, channels, 3, padding=1, bias=not use_gn)
        layers.append(conv)
        if use_gn:
            layers.append(nn.GroupNorm(32, channels))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def check_norm(norm: str) -> str:
    if norm not in ("GN", "", "none"):
        raise ValueError(f"MODEL.SOLOV2.NORM must be 'GN' or '' (none), got {norm!r}")
    return norm


class SOLOv2InsHead(nn.Module):
    """``ins_head``: shared over the levels. Each level's feature gets coordinate channels, is
    resized bilinearly to its S x S grid, then runs the category tower (without the coordinates)
    and the kernel tower (with them, when ``use_coord_conv``).

    ``kernel_grids`` (default: ``num_grids``) gives the kernel branch its own grid per level (a
    coarser mask grid, as AggMask*'s); ``kernel_pred_size`` is the kernel predictor's conv size
    (AdelaiDet 3, the AggMask* authors 1)."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, num_kernels: int,
                 num_grids: Sequence[int], num_convs: int = 4, norm: str = "GN", prior_prob: float = 0.01,
                 use_coord_conv: bool = True, kernel_grids: Optional[Sequence[int]] = None,
                 kernel_pred_size: int = 3):
        super().__init__()
        norm = check_norm(norm)
        self.num_grids = list(num_grids)
        self.kernel_grids = list(kernel_grids) if kernel_grids else list(num_grids)
        if len(self.kernel_grids) != len(self.num_grids):
            raise ValueError(f"kernel grids {self.kernel_grids} and category grids {self.num_grids} differ in length")
        if kernel_pred_size not in (1, 3):
            raise ValueError(f"the kernel predictor's conv size must be 1 or 3, got {kernel_pred_size}")
        self.use_coord_conv = use_coord_conv
        self.cate_tower = conv_norm_relu_tower(in_channels, channels, num_convs, norm)
        kernel_in = in_channels + 2 if use_coord_conv else in_channels
        self.kernel_tower = conv_norm_relu_tower(kernel_in, channels, num_convs, norm)
        self.cate_pred = nn.Conv2d(channels, num_classes, 3, padding=1)
        self.kernel_pred = nn.Conv2d(channels, num_kernels, kernel_pred_size, padding=kernel_pred_size // 2)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                if module.bias is not None:
                    nn.init.constant_(module.bias, 0)
        nn.init.constant_(self.cate_pred.bias, -math.log((1 - prior_prob) / prior_prob))

    def grid_inputs(self, features: List[torch.Tensor]) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """Per level: (the feature with coordinates at the category grid (N, C+2, S, S), the same
        at the kernel grid (the same tensor when the grids are equal))."""
        out = []
        for x, grid, kernel_grid in zip(features, self.num_grids, self.kernel_grids):
            x = append_coords(x)
            at_grid = F.interpolate(x, size=(grid, grid), mode="bilinear", align_corners=False)
            at_kernel_grid = at_grid if kernel_grid == grid else F.interpolate(
                x, size=(kernel_grid, kernel_grid), mode="bilinear", align_corners=False)
            out.append((at_grid, at_kernel_grid))
        return out

    def predict(self, grid_inputs: List[Tuple[torch.Tensor, torch.Tensor]]):
        """Category logits (N, C, S, S) and kernels (N, E, Sk, Sk) per level from :meth:`grid_inputs`."""
        cate_logits, kernels = [], []
        for x, xk in grid_inputs:
            kernel_in = xk if self.use_coord_conv else xk[:, :-2]
            kernels.append(self.kernel_pred(self.kernel_tower(kernel_in)))
            cate_logits.append(self.cate_pred(self.cate_tower(x[:, :-2])))
        return cate_logits, kernels

    def forward(self, features: List[torch.Tensor], return_grid_inputs: bool = False):
        """Per level: category logits (N, C, S, S) and kernels (N, E, Sk, Sk); with
        ``return_grid_inputs`` also :meth:`grid_inputs` (for heads that read them too)."""
        inputs = self.grid_inputs(features)
        cate_logits, kernels = self.predict(inputs)
        return (cate_logits, kernels, inputs) if return_grid_inputs else (cate_logits, kernels)


def instance_features(features: List[torch.Tensor]) -> List[torch.Tensor]:
    """[p2, p3, p4, p5, p6] -> [p2 halved, p3, p4, p5, p6 resized to p5's size] (bilinear)."""
    first = F.interpolate(features[0], scale_factor=0.5, mode="bilinear", align_corners=False)
    last = F.interpolate(features[-1], size=features[-2].shape[-2:], mode="bilinear", align_corners=False)
    return [first, *features[1:-1], last]


__all__ = ["SOLOv2InsHead", "instance_features", "conv_norm_relu_tower"]
