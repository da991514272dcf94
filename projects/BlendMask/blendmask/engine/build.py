"""Build a model from a config and load its weights without unpickling code."""

import logging
from typing import Optional

from detectron2.modeling import build_model
from torch import nn

from ..checkpoint import SafeCheckpointer
from .precision import set_inference_precision

logger = logging.getLogger(__name__)

# inference settings whose value at training time the checkpoint's saved config tells
TRAINED_WITH_KEYS = ("INPUT.MIN_SIZE_TEST", "INPUT.MAX_SIZE_TEST", "INPUT.FORMAT", "MODEL.PIXEL_MEAN",
                     "MODEL.PIXEL_STD", "MODEL.META_ARCHITECTURE")


def warn_if_trained_differently(cfg, checkpoint: dict, path: str) -> list:
    """Warn about inference settings of ``cfg`` that differ from the config saved in ``checkpoint``
    (train_net.py's checkpoints carry it): e.g. evaluating at 128 px weights trained for 576.
    Returns the differing keys."""
    import yaml

    text = checkpoint.get("config") if isinstance(checkpoint, dict) else None
    if not isinstance(text, str):
        return []
    try:
        trained = yaml.safe_load(text)
    except yaml.YAMLError:
        return []
    differing = []
    for key in TRAINED_WITH_KEYS:
        ours, theirs = cfg, trained
        for part in key.split("."):
            ours = ours.get(part) if hasattr(ours, "get") else None
            theirs = theirs.get(part) if isinstance(theirs, dict) else None
        if theirs is not None and ours is not None and _plain(ours) != _plain(theirs):
            differing.append(f"{key} {_plain(ours)} (trained with {_plain(theirs)})")
    if differing:
        logger.warning(f"{path} was trained with another config than this one: " + "; ".join(differing)
                       + ". Use the config saved next to the weights (OUTPUT_DIR/config.yaml) to run it as trained.",
                       extra={"differing": differing})
    return differing


def _plain(value):
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def build_model_and_load(cfg, weights: Optional[str] = None, eval_mode: bool = True) -> nn.Module:
    """The model ``cfg`` describes (any detectron2 meta-architecture), on ``cfg.MODEL.DEVICE``,
    with the weights of ``weights`` (default ``cfg.MODEL.WEIGHTS``; nothing is loaded when both
    are empty).

    Checkpoints are read by :class:`~blendmask.checkpoint.SafeCheckpointer`: tensors, arrays
    and plain data only. A file that needs other pickled objects raises
    :class:`~blendmask.checkpoint.UnsafeCheckpointError` (set ``BLENDMASK_ALLOW_PICKLE=1`` for
    files you trust). AdelaiDet checkpoints load as they are.

    In eval mode (inference), a checkpoint with tensors of other shapes than the model's (say,
    another number of classes) raises :class:`~blendmask.checkpoint.CheckpointMismatchError`
    naming them and the config to use; in training mode they keep their initialisation (logged).
    ``model.thing_classes`` holds the class names the checkpoint carries (empty if none).

    Eval-mode forwards run in ``cfg.TEST.PRECISION`` (:mod:`blendmask.engine.precision`), for
    detectron2's own meta-architectures too.

    Returns the model in eval mode, or in training mode when ``eval_mode`` is False.
    """
    from ..config.centermask import resolve_centermask_meta_architecture

    if not cfg.is_frozen():  # centermask2's configs (GeneralizedRCNN + CenterROIHeads) as our faster CenterMask;
        resolve_centermask_meta_architecture(cfg)  # frozen, they build with detectron2's GeneralizedRCNN
    model = build_model(cfg)
    set_inference_precision(model, cfg.TEST.get("PRECISION", "fp32"))
    path = weights or cfg.MODEL.WEIGHTS
    model.thing_classes = []  # names of the classes, when the checkpoint carries them (train_net.py's do)
    if path:
        # at inference a checkpoint that does not fit (another class count...) is an error, not a warning
        checkpoint = SafeCheckpointer(model, strict_shapes=eval_mode).load(path)
        model.thing_classes = list(checkpoint.get("thing_classes") or [])
        if eval_mode:
            warn_if_trained_differently(cfg, checkpoint, path)
    return model.train(not eval_mode)
