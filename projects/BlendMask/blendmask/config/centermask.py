"""``add_centermask_config``: CenterMask's keys with centermask2's names and defaults.

centermask2 adds these keys to detectron2's global defaults on import; here they are added to the
config passed in only (missing keys only, so calling this twice is harmless). centermask2's yaml
files say ``META_ARCHITECTURE: GeneralizedRCNN`` with ``ROI_HEADS.NAME: CenterROIHeads``; that pair
means our ``CenterMask`` meta-architecture (see :func:`resolve_centermask_meta_architecture`).
"""

import logging

from detectron2.config import CfgNode as CN

from .fcos import add_fcos_config
from .keys import add_missing

logger = logging.getLogger(__name__)

CENTERMASK_ROI_HEADS = "CenterROIHeads"


def _defaults() -> CN:
    root = CN()
    root.MODEL = CN()
    root.MODEL.MOBILENET = False  # centermask2's flag (its MobileNetV2 backbone is chosen by BACKBONE.NAME)
    root.MODEL.MASKIOU_ON = False
    root.MODEL.MASKIOU_LOSS_WEIGHT = 1.0

    vov = CN()
    vov.CONV_BODY = "V-39-eSE"  # a name registered with blendmask.register_vovnet_spec
    vov.OUT_FEATURES = ["stage2", "stage3", "stage4", "stage5"]
    vov.NORM = "FrozenBN"
    # accepted for centermask2's yaml files; centermask2 does not read them either
    vov.OUT_CHANNELS = 256
    vov.BACKBONE_OUT_CHANNELS = 256
    # deformable conv in the 3x3 convs of the OSA modules of stages 2..5
    vov.STAGE_WITH_DCN = (False, False, False, False)
    vov.WITH_MODULATED_DCN = False
    vov.DEFORMABLE_GROUPS = 1
    root.MODEL.VOVNET = vov

    root.MODEL.ROI_MASK_HEAD = CN()
    # FPN level of each box for ROIAlign: "ratio" (CenterMask paper, Eq. 2) or "area" (detectron2's rule)
    root.MODEL.ROI_MASK_HEAD.ASSIGN_CRITERION = "area"

    iou = CN()
    iou.NAME = "MaskIoUHead"
    iou.CONV_DIM = 256
    iou.NUM_CONV = 4
    root.MODEL.ROI_MASKIOU_HEAD = iou
    return root


def add_centermask_config(cfg):
    """Add CenterMask's keys (``MODEL.VOVNET.*``, ``MODEL.MASKIOU_ON``, ``MODEL.MASKIOU_LOSS_WEIGHT``,
    ``MODEL.ROI_MASKIOU_HEAD.*``, ``MODEL.ROI_MASK_HEAD.ASSIGN_CRITERION``, ``MODEL.MOBILENET``) and
    the FCOS keys to ``cfg`` in place; never touches detectron2's global defaults. Returns ``cfg``."""
    add_fcos_config(cfg)
    add_missing(cfg, _defaults())
    return cfg


def resolve_centermask_meta_architecture(cfg):
    """centermask2's configs build CenterMask as ``GeneralizedRCNN`` + ``CenterROIHeads``: switch such a
    config to our ``CenterMask`` meta-architecture (in place, when not frozen). Returns ``cfg``."""
    model = cfg.MODEL
    if model.META_ARCHITECTURE == "GeneralizedRCNN" and model.ROI_HEADS.NAME == CENTERMASK_ROI_HEADS:
        if cfg.is_frozen():
            raise ValueError(
                "a centermask2 config (GeneralizedRCNN + CenterROIHeads) must not be frozen before "
                "blendmask turns it into MODEL.META_ARCHITECTURE CenterMask"
            )
        logger.info("centermask2 config: MODEL.META_ARCHITECTURE GeneralizedRCNN + CenterROIHeads -> CenterMask")
        model.META_ARCHITECTURE = "CenterMask"
    return cfg
