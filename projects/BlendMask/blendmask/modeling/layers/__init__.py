"""Layers shared by the heads: norms, conv-norm-ReLU with BatchNorm folding, deformable conv."""

from .conv_norm import ConvNormReLU, conv_norm_relu
from .deform import ModulatedDeformConv3x3
from .norms import PerLevelNorm, Tower, make_norm, syncbn_to_bn_for_single_process

__all__ = [
    "ConvNormReLU",
    "ModulatedDeformConv3x3",
    "PerLevelNorm",
    "Tower",
    "conv_norm_relu",
    "make_norm",
    "syncbn_to_bn_for_single_process",
]
