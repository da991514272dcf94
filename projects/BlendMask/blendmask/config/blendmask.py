"""``add_blendmask_config``: BlendMask's and the basis module's keys (AdelaiDet's names and defaults)."""

from detectron2.config import CfgNode as CN

from .fcos import add_fcos_config
from .keys import add_missing


def _blendmask_defaults() -> CN:
    bm = CN()
    bm.ATTN_SIZE = 14  # M: attention maps are K x M x M per detection
    bm.TOP_INTERP = "bilinear"
    bm.BOTTOM_RESOLUTION = 56  # R: blended masks are R x R
    bm.POOLER_TYPE = "ROIAlignV2"
    bm.POOLER_SAMPLING_RATIO = 1
    bm.POOLER_SCALES = (0.25,)
    bm.INSTANCE_LOSS_WEIGHT = 1.0
    # accepted for AdelaiDet's yaml files, no effect here (a non-default value warns; see ignored.py)
    bm.VISUALIZE = False
    # Evaluate the attention conv only where it is used (at the kept detections in inference, at the
    # positive locations in training) instead of densely over every FPN location. Same results.
    bm.SPARSE_ATTENTION = True
    return bm


def _basis_defaults() -> CN:
    basis = CN()
    basis.NAME = "ProtoNet"
    basis.NUM_BASES = 4  # K
    basis.LOSS_ON = False
    # accepted for AdelaiDet's yaml files, no effect here (a non-default value warns; see ignored.py)
    basis.ANN_SET = "coco"
    basis.CONVS_DIM = 128
    basis.IN_FEATURES = ["p3", "p4", "p5"]
    basis.NORM = "SyncBN"
    basis.NUM_CONVS = 3
    basis.COMMON_STRIDE = 8
    basis.NUM_CLASSES = 80
    basis.LOSS_WEIGHT = 0.3
    # In eval mode, fold each BatchNorm into the conv before it (one conv instead of conv + BN).
    # Training is unchanged; eval outputs equal up to float rounding.
    basis.FOLD_BN = True
    return basis


def add_blendmask_config(cfg):
    """Add ``MODEL.BLENDMASK.*``, ``MODEL.BASIS_MODULE.*`` and the FCOS keys to ``cfg`` (in place).

    Never touches detectron2's global defaults; only adds missing keys, so calling it twice is
    harmless (values already set are kept). Returns ``cfg`` for convenience.
    """
    add_fcos_config(cfg)
    root = CN()
    root.MODEL = CN()
    root.MODEL.BLENDMASK = _blendmask_defaults()
    root.MODEL.BASIS_MODULE = _basis_defaults()
    add_missing(cfg, root)
    return cfg
