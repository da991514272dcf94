"""Backbones: detectron2 ResNet (with AdelaiDet's deformable-conv interval) + FPN with FCOS's extra levels."""

from .fpn import LastLevelP6, build_fcos_resnet_fpn_backbone, build_top_block
from .resnet_interval import build_resnet_interval_backbone

__all__ = ["LastLevelP6", "build_fcos_resnet_fpn_backbone", "build_resnet_interval_backbone", "build_top_block"]
