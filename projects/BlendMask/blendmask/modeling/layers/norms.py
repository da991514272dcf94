"""Norm layers of the heads: AdelaiDet's norm spellings, one norm per FPN level, the SyncBN fallback."""

import logging

import torch
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


def _replace_syncbn(module: nn.Module, new_class) -> nn.Module:
    """Every ``nn.SyncBatchNorm`` under ``module`` swapped for a ``new_class`` (a BatchNorm2d
    subclass) that holds the very same parameter and buffer objects, so an optimizer built before
    keeps updating them. Returns the (possibly new) module."""
    if isinstance(module, nn.SyncBatchNorm):
        bn = new_class(module.num_features, module.eps, module.momentum, module.affine,
                       module.track_running_stats)
        for name, param in module.named_parameters(recurse=False):
            setattr(bn, name, param)
        for name, buffer in module.named_buffers(recurse=False):
            setattr(bn, name, buffer)
        bn.train(module.training)
        return bn
    for name, child in module.named_children():
        setattr(module, name, _replace_syncbn(child, new_class))
    return module


def syncbn_to_naive_syncbn(model: nn.Module) -> nn.Module:
    """Replace every ``nn.SyncBatchNorm`` (GPU only in torch) by detectron2's ``NaiveSyncBatchNorm``,
    which all-reduces its batch statistics over any backend (gloo on CPUs). Parameters and buffers
    are the same objects. Returns the (possibly new) module."""
    from detectron2.layers import NaiveSyncBatchNorm

    count = sum(isinstance(m, nn.SyncBatchNorm) for m in model.modules())
    if count:
        logger.info(f"{count} SyncBatchNorm layers run as NaiveSyncBatchNorm (statistics all-reduced "
                    "across processes by torch.distributed, on CPUs too).")
    return _replace_syncbn(model, NaiveSyncBatchNorm)


def syncbn_to_bn_for_single_process(model: nn.Module) -> nn.Module:
    """Replace every ``nn.SyncBatchNorm`` by ``nn.BatchNorm2d`` when not running distributed, and
    by detectron2's ``NaiveSyncBatchNorm`` when running distributed without CUDA (torch's
    SyncBatchNorm only works on GPUs; a CPU model on a CUDA machine is converted by
    ``blendmask.engine.launch.create_ddp_model``).

    SyncBN configs then train and run on one CPU or GPU, and on several CPU processes. Parameters
    and buffers are kept, so checkpoints load unchanged. Logs what it did. Returns the (possibly
    new) module.
    """
    count = sum(isinstance(m, nn.SyncBatchNorm) for m in model.modules())
    if count and comm.get_world_size() == 1:
        logger.info(f"Not distributed: {count} SyncBatchNorm layers run as BatchNorm2d.")
        model = _replace_syncbn(model, nn.BatchNorm2d)
    elif count and not torch.cuda.is_available():
        model = syncbn_to_naive_syncbn(model)
    return model
