"""Small layers shared by the heads: per-level norms, deformable conv, SyncBN fallback."""

import logging
from typing import List

import torch
from detectron2.layers import get_norm
from detectron2.utils import comm
from torch import nn
from torch.nn import functional as F
from torchvision.ops import deform_conv2d

logger = logging.getLogger(__name__)


def make_norm(norm: str, channels: int):
    """``get_norm`` with AdelaiDet's spellings: "" or "none" mean no norm (returns None)."""
    if norm in ("", "none", None):
        return None
    return get_norm(norm, channels)


class PerLevelNorm(nn.ModuleList):
    """One norm per FPN level (AdelaiDet's BN/SyncBN head); ``forward(x, level)`` picks it.

    State-dict keys are ``<index>.weight`` etc., as AdelaiDet stores them.
    """

    def forward(self, x, level: int):
        return self[level](x)


class Tower(nn.Sequential):
    """A stack of conv / norm / ReLU layers shared by all FPN levels.

    ``forward(x, level)`` passes ``level`` to the :class:`PerLevelNorm` layers.
    """

    def forward(self, x, level: int = 0):
        for layer in self:
            x = layer(x, level) if isinstance(layer, PerLevelNorm) else layer(x)
        return x


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


def _syncbn_to_bn(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.SyncBatchNorm):
        bn = nn.BatchNorm2d(
            module.num_features, module.eps, module.momentum, module.affine,
            module.track_running_stats,
        )
        bn.load_state_dict(module.state_dict())
        bn.train(module.training)
        return bn
    for name, child in module.named_children():
        setattr(module, name, _syncbn_to_bn(child))
    return module


def syncbn_to_bn_for_single_process(model: nn.Module) -> nn.Module:
    """Replace every ``nn.SyncBatchNorm`` by ``nn.BatchNorm2d`` when not running distributed.

    SyncBN configs then train and run on one CPU or GPU. Parameters and buffers are kept, so
    checkpoints load unchanged. Logs what it did. Returns the (possibly new) module.
    """
    count = sum(isinstance(m, nn.SyncBatchNorm) for m in model.modules())
    if count and comm.get_world_size() == 1:
        logger.info(f"Not distributed: {count} SyncBatchNorm layers run as BatchNorm2d.")
        model = _syncbn_to_bn(model)
    return model


def supports_conv_at_locations(module) -> bool:
    """True for a plain "same" conv (stride 1, no dilation/groups, zero padding k//2)."""
    return (
        isinstance(module, nn.Conv2d)
        and module.stride == (1, 1) and module.dilation == (1, 1) and module.groups == 1
        and module.kernel_size[0] == module.kernel_size[1] and module.kernel_size[0] % 2 == 1
        and module.padding == (module.kernel_size[0] // 2,) * 2 and module.padding_mode == "zeros"
    )


def conv_at_locations(conv: nn.Conv2d, features: List[torch.Tensor], levels, images, indices) -> torch.Tensor:
    """``conv`` evaluated only at chosen cells, equal to indexing its dense output there.

    features: per-level maps (N, C, H_l, W_l); levels, images, indices: (P,) level, image and
    row-major cell index of each wanted output. Returns (P, out_channels). Cost is P patches, not
    every cell of every level: what BlendMask's attention conv needs at the few kept locations.
    """
    k, pad = conv.kernel_size[0], conv.padding[0]
    weight = conv.weight.reshape(conv.out_channels, -1)
    out = weight.new_zeros((len(indices), conv.out_channels))
    taps = torch.arange(k, device=weight.device)
    for level in levels.unique().tolist():
        sel = torch.nonzero(levels == level).squeeze(1)
        feature = F.pad(features[level], (pad, pad, pad, pad))
        width = features[level].shape[-1]
        ys, xs = indices[sel] // width, indices[sel] % width
        rows = (ys[:, None] + taps)[:, :, None]  # (P, k, 1)
        cols = (xs[:, None] + taps)[:, None, :]  # (P, 1, k)
        patches = feature[images[sel][:, None, None], :, rows, cols]  # (P, k, k, C)
        patches = patches.permute(0, 3, 1, 2).reshape(len(sel), -1)
        out = out.index_copy(0, sel, patches @ weight.t())
    if conv.bias is not None:
        out = out + conv.bias
    return out
