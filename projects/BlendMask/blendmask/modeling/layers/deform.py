"""Modulated deformable 3x3 convolution (DCNv2) on torchvision, with AdelaiDet's parameter layout."""

import torch
from torch import nn
from torchvision.ops import deform_conv2d


class ModulatedDeformConv3x3(nn.Module):
    """Modulated deformable 3x3 conv (DCNv2) on ``torchvision.ops.deform_conv2d``.

    Parameters are laid out as AdelaiDet's ``DFConv2d``: ``offset`` (a conv predicting 18 offsets
    and 9 mask logits) and ``conv`` (holding ``weight`` and ``bias``), so checkpoints load as they
    are. Input (N, C, H, W) -> (N, out_channels, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True):
        super().__init__()
        self.offset = nn.Conv2d(in_channels, 27, kernel_size=3, padding=1)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)
        self.conv = _DeformConvParams(in_channels, out_channels, bias)

    def forward(self, x):
        offset_mask = self.offset(x)
        offset, mask = offset_mask[:, :18], offset_mask[:, 18:].sigmoid()
        return deform_conv2d(
            x, offset, self.conv.weight, self.conv.bias, padding=(1, 1), mask=mask
        )


class _DeformConvParams(nn.Module):
    def __init__(self, in_channels, out_channels, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 3, 3))
        nn.init.kaiming_uniform_(self.weight, nonlinearity="relu")
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
