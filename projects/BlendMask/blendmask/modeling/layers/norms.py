"""Norm layers of the heads: AdelaiDet's norm spellings, one norm per FPN level, the SyncBN fallback."""

import logging

from detectron2.layers import get_norm
from detectron2.utils import comm
from torch import nn

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
