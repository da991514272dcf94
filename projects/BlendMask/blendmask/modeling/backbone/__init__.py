"""Backbones: detectron2 ResNet (with AdelaiDet's deformable-conv interval), VoVNetV2 and MobileNetV2,
each + FPN with FCOS's extra levels."""

from .fpn import LastLevelP6, build_fcos_resnet_fpn_backbone, build_top_block
from .mobilenet import MobileNetV2, build_fcos_mobilenetv2_fpn_backbone, build_mobilenetv2_backbone
from .resnet_interval import build_resnet_interval_backbone
from .vovnet import (
    VoVNet,
    build_fcos_vovnet_fpn_backbone,
    build_vovnet_backbone,
    build_vovnet_fpn_backbone,
    register_vovnet_spec,
    registered_vovnet_specs,
    vovnet_spec,
)

__all__ = [
    "LastLevelP6",
    "MobileNetV2",
    "VoVNet",
    "build_fcos_mobilenetv2_fpn_backbone",
    "build_fcos_resnet_fpn_backbone",
    "build_fcos_vovnet_fpn_backbone",
    "build_mobilenetv2_backbone",
    "build_resnet_interval_backbone",
    "build_top_block",
    "build_vovnet_backbone",
    "build_vovnet_fpn_backbone",
    "register_vovnet_spec",
    "registered_vovnet_specs",
    "vovnet_spec",
]
