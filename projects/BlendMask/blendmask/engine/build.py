"""Build a model from a config and load its weights without unpickling code."""

from typing import Optional

from detectron2.modeling import build_model
from torch import nn

from ..checkpoint import BlendMaskCheckpointer


def build_model_and_load(cfg, weights: Optional[str] = None, eval_mode: bool = True) -> nn.Module:
    """The model ``cfg`` describes (any detectron2 meta-architecture), on ``cfg.MODEL.DEVICE``,
    with the weights of ``weights`` (default ``cfg.MODEL.WEIGHTS``; nothing is loaded when both
    are empty).

    Checkpoints are read by :class:`~blendmask.checkpoint.BlendMaskCheckpointer`: tensors, arrays
    and plain data only. A file that needs other pickled objects raises
    :class:`~blendmask.checkpoint.UnsafeCheckpointError` (set ``BLENDMASK_ALLOW_PICKLE=1`` for
    files you trust). AdelaiDet checkpoints load as they are.

    In eval mode (inference), a checkpoint with tensors of other shapes than the model's (say,
    another number of classes) raises :class:`~blendmask.checkpoint.CheckpointMismatchError`
    naming them and the config to use; in training mode they keep their initialisation (logged).
    ``model.thing_classes`` holds the class names the checkpoint carries (empty if none).

    Returns the model in eval mode, or in training mode when ``eval_mode`` is False.
    """
    from ..config.centermask import resolve_centermask_meta_architecture

    if cfg.MODEL.META_ARCHITECTURE == "GeneralizedRCNN" and not cfg.is_frozen():
        resolve_centermask_meta_architecture(cfg)  # centermask2's configs name CenterMask so
    model = build_model(cfg)
    path = weights or cfg.MODEL.WEIGHTS
    model.thing_classes = []  # names of the classes, when the checkpoint carries them (train_net.py's do)
    if path:
        # at inference a checkpoint that does not fit (another class count...) is an error, not a warning
        checkpoint = BlendMaskCheckpointer(model, strict_shapes=eval_mode).load(path)
        model.thing_classes = list(checkpoint.get("thing_classes") or [])
    return model.train(not eval_mode)
