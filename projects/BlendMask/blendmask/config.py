"""Config keys of BlendMask and FCOS, with AdelaiDet's names and defaults.

``add_blendmask_config(cfg)`` adds them to a config made by detectron2's ``get_cfg()``; it never
touches detectron2's global defaults, so AdelaiDet's yaml files merge unchanged.
"""

from detectron2.config import CfgNode as CN


def add_fcos_config(cfg):
    """Add ``MODEL.FCOS.*`` and the FCOS backbone keys to ``cfg`` (in place)."""
    cfg.MODEL.BACKBONE.ANTI_ALIAS = False
    cfg.MODEL.RESNETS.DEFORM_INTERVAL = 1

    cfg.MODEL.FCOS = CN()
    fcos = cfg.MODEL.FCOS
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
    fcos.YIELD_PROPOSAL = False
    fcos.YIELD_BOX_FEATURES = False


def add_blendmask_config(cfg):
    """Add ``MODEL.BLENDMASK.*``, ``MODEL.BASIS_MODULE.*`` and the FCOS keys to ``cfg`` (in place).

    Safe to call twice. Returns ``cfg`` for convenience.
    """
    if hasattr(cfg.MODEL, "BLENDMASK"):
        return cfg
    add_fcos_config(cfg)

    cfg.MODEL.BLENDMASK = CN()
    bm = cfg.MODEL.BLENDMASK
    bm.ATTN_SIZE = 14  # M: attention maps are K x M x M per detection
    bm.TOP_INTERP = "bilinear"
    bm.BOTTOM_RESOLUTION = 56  # R: blended masks are R x R
    bm.POOLER_TYPE = "ROIAlignV2"
    bm.POOLER_SAMPLING_RATIO = 1
    bm.POOLER_SCALES = (0.25,)
    bm.INSTANCE_LOSS_WEIGHT = 1.0
    bm.VISUALIZE = False

    cfg.MODEL.BASIS_MODULE = CN()
    basis = cfg.MODEL.BASIS_MODULE
    basis.NAME = "ProtoNet"
    basis.NUM_BASES = 4  # K
    basis.LOSS_ON = False
    basis.ANN_SET = "coco"
    basis.CONVS_DIM = 128
    basis.IN_FEATURES = ["p3", "p4", "p5"]
    basis.NORM = "SyncBN"
    basis.NUM_CONVS = 3
    basis.COMMON_STRIDE = 8
    basis.NUM_CLASSES = 80
    basis.LOSS_WEIGHT = 0.3
    return cfg


def _all_keys(node, prefix=""):
    keys = []
    for key, value in node.items():
        name = f"{prefix}{key}"
        keys.extend(_all_keys(value, name + ".") if isinstance(value, CN) else [name])
    return keys


def _with_suggestion(cfg, error: Exception) -> Exception:
    """Rewrite detectron2's "Non-existent config key: X" into a message naming the closest keys."""
    import difflib
    import re

    match = re.search(r"Non-existent (?:config )?key: ([\w.]+)", str(error))
    if not match:
        return error
    bad = match.group(1)
    close = difflib.get_close_matches(bad, _all_keys(cfg), n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    return KeyError(f"Unknown config key {bad}.{hint}")


def load_config(config_file=None, opts=(), cfg=None):
    """A fresh detectron2 config with our keys, merged with ``config_file`` then ``opts``.

    Unknown keys fail with a KeyError naming the key and the closest valid keys.
    """
    from detectron2.config import get_cfg

    cfg = add_blendmask_config(cfg if cfg is not None else get_cfg())
    try:
        if config_file:
            cfg.merge_from_file(str(config_file))
        if opts:
            cfg.merge_from_list(list(opts))
    except (KeyError, AssertionError) as e:
        raise _with_suggestion(cfg, e) from None
    return cfg
