"""``add_aggmask_config``: AggMask*'s own keys (``MODEL.AGGMASK.*``).

AggMask* is SOLOv2 plus an aggregation of neighbouring mask predictions, so its SOLOv2 parts read
``MODEL.SOLOV2.*`` (configs/AggMask set the authors' values there); only what AggMask* adds is here.
"""

from detectron2.config import CfgNode as CN

from .keys import add_missing


def _aggmask_defaults() -> CN:
    a = CN()
    # mask grid per level (the kernel branch's grid); [] = the category grids MODEL.SOLOV2.NUM_GRIDS
    a.MASK_GRIDS = []
    # neighbours aggregated per category cell: "cross" (5 cells), "corner" (4 cells around its
    # position on a coarser mask grid) or "auto" (the authors' rule: cross if any level's grids
    # are equal, else corner)
    a.NEIGHBOURS = "auto"
    # context feature: these levels fused (1x1 conv, GN, ReLU, 1x1 conv, ReLU) at the first one's size
    a.CONTEXT_IN_FEATURES = ["p2", "p3", "p4", "p5", "p6"]
    a.CONTEXT_CHANNELS = 16
    # the per-cell network: NUM_LAYERS convs of FCN_KERNEL_SIZE, FCN_CHANNELS wide, ReLU between
    a.FCN_CHANNELS = 4
    a.FCN_NUM_LAYERS = 3
    a.FCN_KERNEL_SIZE = 3
    # the tower that predicts each cell's network parameters (MODEL.SOLOV2.INSTANCE_CHANNELS wide)
    a.NUM_WEIGHT_CONVS = 4
    a.WEIGHT_PRED_KERNEL_SIZE = 1
    a.WEIGHT_ACTIVATION = "none"  # AggMask* none; the SOLO-based AggMask "tanh"
    # how the predictor of the per-cell parameters starts (training only; a checkpoint replaces it):
    # "default" PyTorch's, as the authors'; "identity" every cell's network passes its own mask
    # logit through (centre neighbour, or the mean of the four corners) plus a small learned part,
    # so training starts from SOLOv2's masks instead of random ones (see docs/aggmask.md)
    a.WEIGHT_PRED_INIT = "default"
    return a


def add_aggmask_config(cfg):
    """Add ``MODEL.AGGMASK.*`` to ``cfg`` (in place; only missing keys). Returns ``cfg``."""
    root = CN()
    root.MODEL = CN()
    root.MODEL.AGGMASK = _aggmask_defaults()
    add_missing(cfg, root)
    return cfg
