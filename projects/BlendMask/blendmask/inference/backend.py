"""Which implementation the shared inference core uses where eager PyTorch and export differ."""

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class InferenceBackend:
    """``nms``: "torchvision" or "onnx" (:mod:`~blendmask.inference.nms`); ``paste``: "lazy",
    "detectron2", "grid", "separable" (:mod:`~blendmask.inference.paste`) or None (no image-size
    masks, only the R x R ``mask_probs``)."""

    nms: str = "torchvision"
    paste: Optional[str] = "lazy"


EAGER = InferenceBackend()
TORCHSCRIPT = InferenceBackend(nms="torchvision", paste="grid")
ONNX = InferenceBackend(nms="onnx", paste="separable")
