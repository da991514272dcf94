"""``add_solov2_config``: SOLOv2's keys (``MODEL.SOLOV2.*``) with AdelaiDet's names and defaults."""

from detectron2.config import CfgNode as CN

from .keys import add_missing


def _solov2_defaults() -> CN:
    s = CN()
    # instance branch (category grid + dynamic kernels), one shared head over five levels
    s.INSTANCE_IN_FEATURES = ["p2", "p3", "p4", "p5", "p6"]
    s.FPN_INSTANCE_STRIDES = [8, 8, 16, 32, 32]
    s.FPN_SCALE_RANGES = ((1, 96), (48, 192), (96, 384), (192, 768), (384, 2048))
    s.SIGMA = 0.2  # centre region: half-size = 0.5 * box size * SIGMA
    s.INSTANCE_IN_CHANNELS = 256
    s.INSTANCE_CHANNELS = 512
    s.NUM_CLASSES = 80
    s.NUM_KERNELS = 256  # E: channels of the mask feature each dynamic 1x1 kernel reads
    s.NUM_GRIDS = [40, 36, 24, 16, 12]  # S per level
    s.USE_DCN_IN_INSTANCE = False  # only False is supported
    s.TYPE_DCN = "DCN"
    s.NUM_INSTANCE_CONVS = 4
    s.USE_COORD_CONV = True
    # mask feature branch
    s.MASK_IN_FEATURES = ["p2", "p3", "p4", "p5"]
    s.MASK_IN_CHANNELS = 256
    s.MASK_CHANNELS = 128
    s.NUM_MASKS = 256
    # test
    s.NMS_PRE = 500
    s.SCORE_THR = 0.1
    s.UPDATE_THR = 0.05
    s.MASK_THR = 0.5
    s.MAX_PER_IMG = 100
    s.NMS_TYPE = "matrix"  # only matrix NMS is supported
    s.NMS_KERNEL = "gaussian"  # or "linear"
    s.NMS_SIGMA = 2
    # losses
    s.LOSS = CN()
    s.LOSS.FOCAL_USE_SIGMOID = True
    s.LOSS.FOCAL_ALPHA = 0.25
    s.LOSS.FOCAL_GAMMA = 2.0
    s.LOSS.FOCAL_WEIGHT = 1.0
    s.LOSS.DICE_WEIGHT = 3.0
    s.NORM = "GN"
    s.PRIOR_PROB = 0.01
    # Beyond AdelaiDet: where the AggMask* authors' SOLOv2 differs (configs/AggMask select theirs).
    # The defaults keep AdelaiDet's behaviour.
    s.MASK_TOWER_NORM = None  # the mask branch's 3x3 convs: None = as NORM; "none" = no norm (the authors')
    s.MASK_TOWER_BIAS = True  # those convs get a bias when they have no norm (the authors': False)
    s.KERNEL_PRED_KERNEL_SIZE = 3  # conv size of the kernel predictor (the authors': 1)
    s.ONE_SAMPLE_PER_CELL = False  # a cell shared by two instances: a sample each (the authors': the last only)
    s.MIN_MASK_PIXELS = 1  # ground-truth masks with fewer pixels are no targets (the authors': 10)
    # Beyond AdelaiDet (whose SOLOv2 returns all-zero boxes): give each detection the tight box of
    # its predicted mask. Scores, classes and masks are unchanged.
    s.BOXES_FROM_MASKS = True
    return s


def add_solov2_config(cfg):
    """Add ``MODEL.SOLOV2.*`` to ``cfg`` (in place; only missing keys, so calling it twice is
    harmless; detectron2's global defaults are never touched). Returns ``cfg``."""
    root = CN()
    root.MODEL = CN()
    root.MODEL.SOLOV2 = _solov2_defaults()
    add_missing(cfg, root)
    return cfg
