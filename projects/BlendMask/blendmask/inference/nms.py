"""Class-aware non-maximum suppression with one argument choosing the backend.

``"torchvision"`` (eager and TorchScript) runs torchvision's ``batched_nms`` exactly as detectron2's
``batched_nms`` does; when traced it is scripted, so the TorchScript graph keeps torchvision's
data-dependent choice between per-class NMS and the coordinate-offset trick. ``"onnx"`` records one
ONNX ``NonMaxSuppression`` operator with a score row per class: per-class NMS on the boxes
themselves (torchvision's own ONNX export would offset the boxes by class instead).
"""

import torch
from torchvision.ops import batched_nms
from torchvision.ops import nms as torchvision_nms

NMS_BACKENDS = ("torchvision", "onnx")


@torch.jit.script_if_tracing
def _torchvision_class_aware_nms(boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor,
                                 iou_threshold: float):
    return batched_nms(boxes, scores, classes, iou_threshold)


class _OnnxNonMaxSuppression(torch.autograd.Function):
    """ONNX ``NonMaxSuppression`` on (1, N, 4) boxes and (1, C, N) class scores (-1 where a box is
    not of that class). Returns the selected (K, 3) int64 rows [0, class, box index]. ``forward``
    computes the same in PyTorch (used while tracing); the exported graph holds the one operator.
    """

    @staticmethod
    def forward(ctx, boxes, class_scores, iou_threshold: float, score_threshold: float):
        rows = []
        for c in range(class_scores.shape[1]):
            idx = torch.nonzero(class_scores[0, c] > score_threshold).squeeze(1)
            keep = idx[torchvision_nms(boxes[0, idx], class_scores[0, c, idx], iou_threshold)]
            rows.append(torch.stack([torch.zeros_like(keep), torch.full_like(keep, c), keep], dim=1))
        return torch.cat(rows) if rows else boxes.new_zeros((0, 3), dtype=torch.int64)

    @staticmethod
    def symbolic(g, boxes, class_scores, iou_threshold: float, score_threshold: float):
        def const(value, dtype):
            return g.op("Constant", value_t=torch.tensor([value], dtype=dtype))

        return g.op(
            "NonMaxSuppression", boxes, class_scores, const(2**31 - 1, torch.int64),
            const(iou_threshold, torch.float32), const(score_threshold, torch.float32),
        )


def class_aware_nms(
    boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor, iou_threshold: float, num_classes: int,
    backend: str = "torchvision",
) -> torch.Tensor:
    """Indices kept by NMS within each class, by decreasing score (see the module doc for ``backend``)."""
    if backend == "torchvision":
        return _torchvision_class_aware_nms(boxes, scores, classes, iou_threshold)
    if backend != "onnx":
        raise ValueError(f"NMS backend must be one of {NMS_BACKENDS}, got {backend!r}")
    class_ids = torch.arange(num_classes, device=classes.device)[:, None]
    class_scores = torch.where(classes[None, :] == class_ids, scores[None, :], torch.full_like(scores, -1.0))
    selected = _OnnxNonMaxSuppression.apply(boxes[None], class_scores[None], iou_threshold, -0.5)
    keep = selected[:, 2]
    return keep[scores[keep].sort(descending=True)[1]]
