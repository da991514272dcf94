"""The export module: one image in, detections out, post-processing included.

Glue only: it pads the normalised image, runs the model's own backbone and the model's own
``inference`` (the same code the eager model runs, see ``blendmask.inference``) with the export
backends (TorchScript: torchvision NMS scripted into the trace, grid-sample pasting; ONNX: one
``NonMaxSuppression`` operator, separable pasting), and returns plain tensors. No Python number
depends on the image or on the detections, so one traced graph serves every input size and
detection count.
"""

from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from ..inference import ONNX, TORCHSCRIPT, InferenceBackend
from ..modeling.contract import model_outputs
from ..utils.deprecation import deprecated_names

INPUT_NAMES = ("image", "output_size")
OUTPUT_NAMES = ("boxes", "scores", "classes", "mask_probs", "masks")
MASK_SCORES = "mask_scores"  # a sixth output of models that score their masks (CenterMask with MaskIoU)
SEM_SEG = "sem_seg"  # the last output of panoptic BlendMask: semantic logits (C, out_H, out_W)


def _no_masks(boxes: torch.Tensor) -> torch.Tensor:
    """An (N, 0, 0) placeholder with as many rows as ``boxes``, without a Python int."""
    return boxes[:, :0, None][:, :, :0]


def _traced_length(line: torch.Tensor) -> torch.Tensor:
    """len(line) as a 0-dim int64 tensor computed in the graph (dynamic when traced)."""
    return torch.ones_like(line, dtype=torch.int64).sum()


class ExportableModel(nn.Module):
    """Single-image inference of a BlendMask (or FCOS-only) model, as one traceable graph.

    Any model with ``normalize``, ``backbone`` (with ``size_divisibility``), ``backbone_input``,
    ``inference(features, image_sizes, output_sizes, backend)`` and ``mask_on`` exports through it
    (see ``OneStageDetector``).

    Inputs:
      - ``image`` (1, 3, H, W) float32: raw pixels (0..255) in the config's ``INPUT.FORMAT``,
        already resized to the test size (``ResizeShortestEdge(MIN_SIZE_TEST, MAX_SIZE_TEST)``, as
        ``DefaultPredictor`` does); any H, W. Normalisation and zero-padding to the backbone's size
        divisibility happen inside.
      - ``output_size`` (optional) int64 (2,) [height, width] the results are scaled to, usually
        the original image's size; default: H, W.

    Outputs (N detections by decreasing score, coordinates in ``output_size`` pixels): ``boxes``
    (N, 4) clipped; ``scores`` (N,); ``classes`` (N,) int64; ``mask_probs`` (N, R, R) in each
    unclipped, unscaled box ((N, 0, 0) for FCOS-only models; (N, Hp/4, Wp/4) over the padded input
    for SOLOv2, whose ``mask_resolution`` is 0); ``masks`` (N, out_H, out_W) bool
    ((N, 0, 0) without ``paste_masks`` or a mask head). They equal the eager model's instances.
    Models with ``maskiou_on`` (CenterMask) add ``mask_scores`` (N,): see :attr:`output_names`.
    Panoptic BlendMask adds ``sem_seg`` (C, out_H, out_W) float32, the semantic logits at the output
    size as the eager model's "sem_seg"; the panoptic map is a host-side step on these outputs
    (:func:`blendmask.export.panoptic_from_outputs`, detectron2's combine).
    """

    def __init__(self, model: nn.Module, paste_masks: bool = True):
        super().__init__()
        self.model = model
        outputs = model_outputs(model)  # what the model declares it returns (modeling/contract.py)
        self.has_masks = outputs.has_masks
        self.paste_masks = paste_masks and self.has_masks
        self.has_mask_scores = outputs.mask_scores
        self.has_sem_seg = outputs.has_sem_seg
        self.for_onnx = False  # set by export_onnx

    @property
    def num_classes(self) -> int:
        return int(self.model.num_classes)

    @property
    def output_names(self):
        extra = ((MASK_SCORES,) if self.has_mask_scores else ()) + ((SEM_SEG,) if self.has_sem_seg else ())
        return OUTPUT_NAMES + extra

    @property
    def backend(self) -> InferenceBackend:
        backend = ONNX if self.for_onnx else TORCHSCRIPT
        return backend if self.paste_masks else InferenceBackend(nms=backend.nms, paste=None)

    def forward(self, image: torch.Tensor, output_size: Optional[torch.Tensor] = None):
        x = self.model.normalize(image)
        d = int(self.model.backbone.size_divisibility)
        if d > 1:  # bottom/right zero padding as ImageList.from_tensors; sizes stay dynamic
            h, w = x.shape[-2:]
            x = F.pad(x, (0, (d - w % d) % d, 0, (d - h % d) % d))
        features = self.model.backbone(self.model.backbone_input(x))
        input_size = (_traced_length(image[0, 0, :, 0]), _traced_length(image[0, 0, 0]))
        out_size = input_size if output_size is None else (output_size[0], output_size[1])
        result = self.model.inference(features, [input_size], [out_size], self.backend)[0]
        boxes = result["boxes"]
        probs = result["mask_probs"] if "mask_probs" in result else _no_masks(boxes)
        masks = result["masks"] if "masks" in result else _no_masks(boxes) > 0
        outputs = (boxes, result["scores"], result["classes"], probs, masks)
        outputs += (result[MASK_SCORES],) if self.has_mask_scores else ()
        return outputs + ((result[SEM_SEG],) if self.has_sem_seg else ())


__getattr__ = deprecated_names(__name__, {"ExportableBlendMask": lambda: ExportableModel})
