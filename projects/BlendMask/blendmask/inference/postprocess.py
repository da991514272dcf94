"""detectron2's ``detector_postprocess`` on plain tensors, trace-safe, with masks pasted once.

Boxes are scaled from the network input size to the output size (the "height"/"width" the
caller asked for), clipped, and detections whose clipped box is empty are dropped together with
every per-detection tensor; ``mask_probs`` (N, R, R) are pasted into the clipped boxes as
``masks`` (N, H, W) bool.
"""

from typing import Dict, Optional

import torch

from ..engine.precision import autocast_disabled, float32
from .paste import paste_masks


def _as_float(value, device) -> torch.Tensor:
    return torch.as_tensor(value, device=device).to(torch.float32)


def rescale_and_clip_boxes(boxes: torch.Tensor, input_size, output_size):
    """(N, 4) boxes in ``input_size`` (h, w) pixels -> (boxes in ``output_size`` pixels clipped to
    it, indices of the non-empty ones). Sizes are ints or 0-dim tensors (dynamic when traced)."""
    in_h, in_w = (_as_float(v, boxes.device) for v in input_size)
    out_h, out_w = (_as_float(v, boxes.device) for v in output_size)
    sx, sy = out_w / in_w, out_h / in_h
    scaled = boxes * torch.stack([sx, sy, sx, sy])
    x0, y0, x1, y1 = scaled.clamp(min=0).unbind(1)
    clipped = torch.stack(
        (torch.minimum(x0, out_w), torch.minimum(y0, out_h), torch.minimum(x1, out_w), torch.minimum(y1, out_h)),
        dim=1,
    )
    nonempty = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    return clipped, torch.nonzero(nonempty).squeeze(1)


def postprocess_detections(
    detections: Dict[str, torch.Tensor], input_size, output_size, *, paste: Optional[str] = "lazy",
    mask_threshold: float = 0.5,
) -> Dict[str, torch.Tensor]:
    """One image's detections ("boxes" (N, 4) unclipped input pixels, "scores", "classes", any other
    per-detection tensors, optionally "mask_probs" (N, R, R)) at ``output_size``.

    Returns the same keys for the kept detections, "boxes" now clipped output pixels, plus
    "masks" (N, H, W) bool when there are "mask_probs" and ``paste`` names a backend of
    :func:`~blendmask.inference.paste.paste_masks` (``None``: no masks).
    """
    # float32 and outside autocast (TEST.PRECISION): box scaling, and the mask probabilities pasted
    # (bilinear) then thresholded at ``mask_threshold``, in the precision fp32 inference uses
    detections = float32(detections)
    with autocast_disabled(detections["boxes"].device.type):
        return _postprocess(detections, input_size, output_size, paste, mask_threshold)


def _postprocess(detections, input_size, output_size, paste, mask_threshold):
    boxes, keep = rescale_and_clip_boxes(detections["boxes"], input_size, output_size)
    out = {key: value[keep] for key, value in detections.items() if key != "boxes"}
    out["boxes"] = boxes[keep]
    if "mask_probs" in out and paste is not None:
        out["masks"] = paste_masks(out["mask_probs"], out["boxes"], output_size, mask_threshold, paste)
    return out
