"""SOLOv2 (Wang et al., NeurIPS 2020) with AdelaiDet's module names."""

from .heads import SOLOv2InsHead
from .inference import SOLOv2TestParams, point_nms, solov2_inference_single
from .mask_branch import SOLOv2MaskHead
from .meta_arch import SOLOv2
from .targets import LevelTargets, solov2_targets_single

__all__ = [
    "LevelTargets",
    "SOLOv2",
    "SOLOv2InsHead",
    "SOLOv2MaskHead",
    "SOLOv2TestParams",
    "point_nms",
    "solov2_inference_single",
    "solov2_targets_single",
]
