"""3x3 conv -> norm -> ReLU, with BatchNorm folded into the convolution at inference."""

import torch
from torch import nn
from torch.nn import functional as F

from .norms import make_norm


class ConvNormReLU(nn.Sequential):
    """3x3 conv -> norm -> ReLU (children "0", "1", "2", or "0", "1" without a norm).

    With ``fold_bn`` (the default), in eval mode a BatchNorm is folded into the convolution
    (weights scaled by gamma / sqrt(var + eps), bias beta - mean * scale): one pass over the
    feature map instead of two, the same result up to float rounding.
    """

    def __init__(self, *layers: nn.Module, fold_bn: bool = True):
        super().__init__(*layers)
        self.fold_bn = fold_bn

    def _foldable_norm(self):
        norm = self[1] if len(self) == 3 else None
        if not isinstance(norm, (nn.BatchNorm2d, nn.SyncBatchNorm)) or norm.running_var is None:
            return None
        return norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = None if self.training or not self.fold_bn else self._foldable_norm()
        if norm is None:
            return super().forward(x)
        conv = self[0]
        scale = (norm.running_var + norm.eps).rsqrt()
        bias = -norm.running_mean * scale
        if norm.affine:
            scale, bias = scale * norm.weight, bias * norm.weight + norm.bias
        if conv.bias is not None:
            bias = bias + conv.bias * scale
        weight = conv.weight * scale.reshape(-1, 1, 1, 1)
        return F.relu(F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups), inplace=True)


def conv_norm_relu(in_channels: int, out_channels: int, norm: str, fold_bn: bool = True) -> ConvNormReLU:
    """3x3 conv -> norm -> ReLU; the conv has a bias only when there is no norm."""
    norm_layer = make_norm(norm, out_channels)
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=norm_layer is None)
    nn.init.kaiming_uniform_(conv.weight, a=1)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    layers = [conv] + ([norm_layer] if norm_layer is not None else []) + [nn.ReLU(inplace=True)]
    return ConvNormReLU(*layers, fold_bn=fold_bn)
