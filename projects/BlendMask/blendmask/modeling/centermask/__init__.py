"""CenterMask: SAG-Mask and MaskIoU heads on FCOS's boxes (meta-architecture ``CenterMask``)."""

from .maskiou_head import MaskIoUHead
from .meta_arch import CenterMask
from .roi_heads import CenterROIHeads, maskiou_targets
from .roi_levels import LevelROIAlign, assign_roi_levels
from .sag_mask_head import SpatialAttention, SpatialAttentionMaskHead

__all__ = [
    "CenterMask",
    "CenterROIHeads",
    "LevelROIAlign",
    "MaskIoUHead",
    "SpatialAttention",
    "SpatialAttentionMaskHead",
    "assign_roi_levels",
    "maskiou_targets",
]
