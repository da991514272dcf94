"""BlendMask and its family (FCOS, panoptic BlendMask, CenterMask, SOLOv2, AggMask*) for detectron2.

Importing this package registers its components in detectron2's registries:

- META_ARCH_REGISTRY: ``OneStageDetector`` (FCOS alone), ``BlendMask`` (and panoptic BlendMask),
  ``CenterMask``, ``SOLOv2``, ``AggMask``;
- PROPOSAL_GENERATOR_REGISTRY: ``FCOS``;
- ROI_HEADS_REGISTRY: ``CenterROIHeads`` (centermask2's yaml files through detectron2's
  ``GeneralizedRCNN``);
- BACKBONE_REGISTRY: ``build_fcos_resnet_fpn_backbone``, ``build_vovnet_backbone``,
  ``build_fcos_vovnet_fpn_backbone``, ``build_vovnet_fpn_backbone``, ``build_mobilenetv2_backbone``,
  ``build_fcos_mobilenetv2_fpn_backbone``;
- BASIS_MODULE_REGISTRY (ours): ``ProtoNet``.

Configs: :func:`get_cfg` has every key; ``add_*_config`` add one model's keys to a detectron2 config.
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
    add_solov2_config,
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
    "add_solov2_config",
    "get_cfg",
    "load_config",
    "detectron2_has_compiled_ops",
    "__version__",
]
from .modeling import register_vovnet_spec  # noqa: E402

__all__ += ["build_model_and_load", "Predictor", "register_vovnet_spec"]
