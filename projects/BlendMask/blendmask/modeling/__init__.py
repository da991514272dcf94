"""Model components; importing registers them in detectron2's registries."""

from .backbone import build_fcos_resnet_fpn_backbone
from .basis_module import BASIS_MODULE_REGISTRY, ProtoNet, build_basis_module
from .blender import Blender, blend
from .blendmask import BlendMask
from .fcos import FCOS, FCOSHead
from .one_stage_detector import OneStageDetector

__all__ = [
    "BASIS_MODULE_REGISTRY",
    "Blender",
    "BlendMask",
    "FCOS",
    "FCOSHead",
    "OneStageDetector",
    "ProtoNet",
    "blend",
    "build_basis_module",
    "build_fcos_resnet_fpn_backbone",
]
