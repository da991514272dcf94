"""Predict on one image: a counterpart of detectron2's ``DefaultPredictor`` that loads weights safely."""

from typing import Dict, Optional

import numpy as np
import torch
from detectron2.data import transforms as T

from .build import build_model_and_load

_FORMATS = ("BGR", "RGB")


def test_resize(cfg) -> T.ResizeShortestEdge:
    """The test-time resize of ``cfg``: ``ResizeShortestEdge(MIN_SIZE_TEST, MAX_SIZE_TEST)``."""
    return T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)


def resized_chw(image: np.ndarray, resize: T.ResizeShortestEdge) -> torch.Tensor:
    """An (H, W, 3) uint8 image resized for the model: (3, h, w) float32, channels kept in order."""
    resized = resize.get_transform(image).apply_image(image)
    return torch.from_numpy(np.ascontiguousarray(resized.transpose(2, 0, 1), dtype=np.float32))


class Predictor:
    """The model ``cfg`` describes, with weights from ``weights`` (default ``cfg.MODEL.WEIGHTS``)
    loaded by :func:`build_model_and_load`: a checkpoint that needs pickled code is refused.

    Call it on an (H, W, 3) uint8 image in BGR channel order (as OpenCV reads it)::

        predictor = Predictor(cfg)
        instances = predictor(cv2.imread("photo.jpg"))["instances"]

    The image is converted to ``cfg.INPUT.FORMAT`` ("BGR" or "RGB"), resized with
    ``ResizeShortestEdge(MIN_SIZE_TEST, MAX_SIZE_TEST)`` and run without gradients; the instances
    come back on the model's device, in the coordinates of the image given. Pass
    ``input_format="RGB"`` when the images you call it with are RGB.

    Attributes: ``cfg`` (a frozen copy), ``model`` (in eval mode), ``input_format`` (the model's).
    """

    def __init__(self, cfg, weights: Optional[str] = None, input_format: str = "BGR"):
        self.cfg = cfg.clone()
        self.cfg.freeze()
        self.input_format = self.cfg.INPUT.FORMAT
        for name, value in (("cfg.INPUT.FORMAT", self.input_format), ("input_format", input_format)):
            if value not in _FORMATS:
                raise ValueError(f"{name} is {value!r}; Predictor handles {' and '.join(_FORMATS)} images")
        self.caller_format = input_format
        self.model = build_model_and_load(self.cfg, weights)
        self.resize = test_resize(self.cfg)

    def __call__(self, image: np.ndarray) -> Dict[str, object]:
        """``{"instances": Instances}`` predicted for an (H, W, 3) uint8 image (see the class doc)."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) image, got shape {tuple(image.shape)}")
        if self.caller_format != self.input_format:
            image = image[:, :, ::-1]
        height, width = image.shape[:2]
        tensor = resized_chw(image, self.resize)
        with torch.no_grad():
            return self.model([{"image": tensor, "height": height, "width": width}])[0]
