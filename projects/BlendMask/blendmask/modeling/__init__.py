"""Model components; importing registers them in detectron2's registries."""

from .aggmask import AggMask
from .backbone import build_fcos_resnet_fpn_backbone, register_vovnet_spec
from .blendmask import BASIS_MODULE_REGISTRY, AttentionConv, Blender, BlendMask, ProtoNet, blend, build_basis_module
from .centermask import CenterMask, CenterROIHeads
from .fcos import FCOS, FCOSHead, FCOSOutput, Positives
from .one_stage_detector import OneStageDetector
from .solov2 import SOLOv2

__all__ = [
    "AggMask",
    "AttentionConv",
    "BASIS_MODULE_REGISTRY",
    "Blender",
    "BlendMask",
    "CenterMask",
    "CenterROIHeads",
    "FCOS",
    "FCOSHead",
    "FCOSOutput",
    "OneStageDetector",
    "Positives",
    "ProtoNet",
    "SOLOv2",
    "blend",
    "build_basis_module",
    "build_fcos_resnet_fpn_backbone",
    "register_vovnet_spec",
]
