"""BlendMask for detectron2.

Importing this package registers its components in detectron2's registries:
``BlendMask`` and ``OneStageDetector`` (META_ARCH_REGISTRY), ``FCOS`` (PROPOSAL_GENERATOR_REGISTRY),
``build_fcos_resnet_fpn_backbone`` (BACKBONE_REGISTRY) and ``ProtoNet`` (BASIS_MODULE_REGISTRY).
"""

import warnings

with warnings.catch_warnings():
    # fvcore and detectron2 script a few functions when imported; torch 2.x calls torch.jit.script
    # deprecated, a warning nobody using this package can act on
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
    from . import modeling  # noqa: F401  (registers the components)
from .compat import use_official_coco_eval_without_compiled_ops
from .config import (
    add_aggmask_config,
    add_blendmask_config,
    add_centermask_config,
    add_fcos_config,
    get_cfg,
    load_config,
)
from .engine import Predictor, build_model_and_load  # weights-only checkpoint loading
from .utils.env import detectron2_has_compiled_ops

use_official_coco_eval_without_compiled_ops()  # detectron2's tutorial COCOEvaluator on a python-only build

__version__ = "0.1.0"

__all__ = [
    "add_aggmask_config",
    "add_blendmask_config",
    "add_centermask_config",
    "add_fcos_config",
    "get_cfg",
    "load_config",
    "detectron2_has_compiled_ops",
    "__version__",
]
from .modeling import register_vovnet_spec  # noqa: E402

__all__ += ["build_model_and_load", "Predictor", "register_vovnet_spec"]
