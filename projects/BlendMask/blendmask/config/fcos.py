"""``add_fcos_config``: FCOS's keys with AdelaiDet's names and defaults, and FCOS-level test switches."""

from detectron2.config import CfgNode as CN

from .keys import add_missing


def _fcos_defaults() -> CN:
    fcos = CN()
    fcos.NUM_CLASSES = 80
    fcos.IN_FEATURES = ["p3", "p4", "p5", "p6", "p7"]
    fcos.FPN_STRIDES = [8, 16, 32, 64, 128]
    fcos.PRIOR_PROB = 0.01
    fcos.INFERENCE_TH_TRAIN = 0.05
    fcos.INFERENCE_TH_TEST = 0.05
    fcos.NMS_TH = 0.6
    fcos.PRE_NMS_TOPK_TRAIN = 1000
    fcos.PRE_NMS_TOPK_TEST = 1000
    fcos.POST_NMS_TOPK_TRAIN = 100
    fcos.POST_NMS_TOPK_TEST = 100
    # number of extra FPN levels made from P5: 2 -> P6, P7; 1 -> P6; 0 -> none
    fcos.TOP_LEVELS = 2
    fcos.NORM = "GN"  # GN, BN, SyncBN (one norm per FPN level for BN-type norms) or ""
    fcos.USE_SCALE = True
    fcos.BOX_QUALITY = "ctrness"
    # multiply the classification probability by centerness before thresholding
    fcos.THRESH_WITH_CTR = False
    fcos.LOSS_ALPHA = 0.25
    fcos.LOSS_GAMMA = 2.0
    fcos.LOSS_NORMALIZER_CLS = "fg"
    fcos.LOSS_WEIGHT_CLS = 1.0
    # boundaries between the size-of-interest ranges of consecutive levels
    fcos.SIZES_OF_INTEREST = [64, 128, 256, 512]
    fcos.USE_RELU = True
    fcos.USE_DEFORMABLE = False
    fcos.NUM_CLS_CONVS = 4
    fcos.NUM_BOX_CONVS = 4
    fcos.NUM_SHARE_CONVS = 0
    fcos.CENTER_SAMPLE = True
    fcos.POS_RADIUS = 1.5
    fcos.LOC_LOSS_TYPE = "giou"
    # in training, also return FCOS's detections (training thresholds) as proposals for a second stage
    fcos.YIELD_PROPOSAL = False
    # accepted for AdelaiDet's yaml files, no effect here (a non-default value warns; see ignored.py)
    fcos.YIELD_BOX_FEATURES = False
    return fcos


def _defaults() -> CN:
    root = CN()
    root.MODEL = CN()
    root.MODEL.BACKBONE = CN()
    root.MODEL.BACKBONE.ANTI_ALIAS = False
    root.MODEL.RESNETS = CN()
    root.MODEL.RESNETS.DEFORM_INTERVAL = 1
    root.MODEL.FCOS = _fcos_defaults()

    root.TEST = CN()
    # CPU inference converts the batched images to channels-last before the backbone
    # (faster convolutions on CPU; outputs equal up to float rounding). No effect on GPU.
    root.TEST.CHANNELS_LAST_ON_CPU = True
    # On CPU, paste masks into a lazily zeroed output and only touch the pixels around each box,
    # instead of detectron2's dense paste. No effect on GPU.
    root.TEST.LAZY_PASTE = True
    # Precision of inference: "fp32", "bf16", "fp16" or "auto" (bf16 on CPUs with native bf16,
    # fp16 on CUDA). Convolutions and matrix products run in it; scores, NMS and mask thresholds
    # stay float32 (blendmask/engine/precision.py). A CPU without native bf16 warns and runs fp32.
    root.TEST.PRECISION = "fp32"
    # Training with SOLVER.AMP.ENABLED (detectron2's key): autocast dtype "auto" (bf16 on CPUs,
    # fp16 with a gradient scaler on CUDA), "bf16" or "fp16" (blendmask/engine/amp.py)
    root.SOLVER = CN()
    root.SOLVER.AMP = CN()
    root.SOLVER.AMP.PRECISION = "auto"
    return root


def add_fcos_config(cfg):
    """Add ``MODEL.FCOS.*``, the FCOS backbone keys and the FCOS-level ``TEST.*`` keys to ``cfg``.

    Works in place on ``cfg`` (never on detectron2's global defaults) and only adds keys that are
    missing, so calling it twice is harmless. Returns ``cfg``.
    """
    add_missing(cfg, _defaults())
    return cfg
