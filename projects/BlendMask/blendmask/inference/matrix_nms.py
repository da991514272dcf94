"""Matrix NMS (SOLOv2, Wang et al. 2020): decay each mask's score by its overlap with higher-scored
masks of the same class, all pairs at once. Tensor-only, so eager runs and exports share it."""

import torch

MATRIX_NMS_KERNELS = ("gaussian", "linear")


def matrix_nms(masks: torch.Tensor, classes: torch.Tensor, scores: torch.Tensor, areas: torch.Tensor,
               kernel: str = "gaussian", sigma: float = 2.0) -> torch.Tensor:
    """Decayed scores of ``n`` masks sorted by decreasing score.

    ``masks`` (n, ...) binary (bool or 0/1), ``classes`` (n,), ``scores`` (n,), ``areas`` (n,) the
    number of pixels of each mask. With IoU_ij the IoU of masks i < j of one class (0 otherwise)
    and comp_i = max_k IoU_ki, the decay of mask j is min_i f(IoU_ij) / f(comp_i) with
    f(x) = exp(-sigma * x^2) ("gaussian"; sigma multiplies) or f(x) = 1 - x ("linear").
    Returns ``scores * decay``. Any n, including 0; no Python number depends on the data.
    """
    if kernel not in MATRIX_NMS_KERNELS:
        raise ValueError(f"matrix NMS kernel must be one of {MATRIX_NMS_KERNELS}, got {kernel!r}")
    flat = masks.flatten(1).to(torch.float32)
    inter = torch.mm(flat, flat.t())
    areas = areas.to(torch.float32)
    iou = inter / (areas[:, None] + areas[None, :] - inter)
    index = torch.cumsum(torch.ones_like(scores, dtype=torch.int64), 0)
    upper_same_class = (index[:, None] < index[None, :]) & (classes[:, None] == classes[None, :])
    iou = torch.where(upper_same_class, iou, torch.zeros_like(iou))
    # a leading zero row makes the max (and a leading row of ones the min) defined for n = 0
    # without changing them otherwise: IoUs are >= 0, and row 0 already caps each decay at <= 1
    compensate = torch.cat([iou.new_zeros((1, iou.shape[1])), iou]).max(0).values[:, None]
    if kernel == "gaussian":
        decay = torch.exp(-sigma * iou ** 2) / torch.exp(-sigma * compensate ** 2)
    else:
        decay = (1 - iou) / (1 - compensate)
    decay = torch.cat([decay.new_ones((1, decay.shape[1])), decay]).min(0).values
    return scores * decay
