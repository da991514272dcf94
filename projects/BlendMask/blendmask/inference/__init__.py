"""Inference primitives written once and run both by the eager models and by their exports.

Everything here is tensor-only where export needs it (no Python number depends on the image or
on the detections); where eager PyTorch and an export must differ (NMS, mask pasting) a backend
argument chooses (:class:`InferenceBackend`).
"""

from .backend import EAGER, ONNX, TORCHSCRIPT, InferenceBackend
from .locations import Locations, conv_at_locations, gather_patches, supports_conv_at_locations
from .mask_boxes import boxes_from_masks
from .matrix_nms import matrix_nms
from .nms import class_aware_nms
from .paste import mask_crops, paste_masks, paste_probs_grid, paste_probs_separable, select_masks
from .postprocess import postprocess_detections, rescale_and_clip_boxes
from .resize import resize_mask_probs
from .topk import top_k_with_ties

__all__ = [
    "EAGER",
    "InferenceBackend",
    "Locations",
    "ONNX",
    "TORCHSCRIPT",
    "boxes_from_masks",
    "class_aware_nms",
    "conv_at_locations",
    "gather_patches",
    "mask_crops",
    "matrix_nms",
    "paste_masks",
    "paste_probs_grid",
    "paste_probs_separable",
    "postprocess_detections",
    "rescale_and_clip_boxes",
    "resize_mask_probs",
    "select_masks",
    "supports_conv_at_locations",
    "top_k_with_ties",
]
