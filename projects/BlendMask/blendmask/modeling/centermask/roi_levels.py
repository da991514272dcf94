"""Which FPN level each box is pooled from, and ROIAlign over those levels (trace-safe)."""

import sys
from typing import List, Sequence

import torch
from detectron2.layers import ROIAlign
from torch import nn

_EPS = sys.float_info.epsilon
CRITERIA = ("ratio", "area")


def assign_roi_levels(boxes: torch.Tensor, image_size, criterion: str, min_level: int = 3,
                      max_level: int = 5) -> torch.Tensor:
    """(n,) int64 level index (0 = ``min_level``) for (n, 4) XYXY ``boxes`` (not clipped).

    - "ratio" (CenterMask, Eq. 2): ``ceil(5 - log2(A_image / A_box))``, with A_image the (h, w) of
      the resized, unpadded input: p5 for boxes over half the image, p4 over a quarter, else p3.
    - "area" (detectron2's FPN rule): ``floor(4 + log2(sqrt(A_box) / 224))``.
    Both are clamped to [min_level, max_level]. ``image_size`` entries may be 0-dim tensors.
    """
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    if criterion == "ratio":
        h, w = (torch.as_tensor(v, device=boxes.device).to(boxes.dtype) for v in image_size)
        level = torch.ceil(5 - torch.log2(h * w / area + _EPS))
    elif criterion == "area":
        level = torch.floor(4 + torch.log2(torch.sqrt(area) / 224 + _EPS))
    else:
        raise ValueError(f"MODEL.ROI_MASK_HEAD.ASSIGN_CRITERION must be one of {CRITERIA}, got {criterion!r}")
    return (level.clamp(min=min_level, max=max_level) - min_level).to(torch.int64)


def boxes_with_batch_index(boxes: Sequence[torch.Tensor]) -> torch.Tensor:
    """[(n_i, 4)] -> (sum n_i, 5) rows (image index, x0, y0, x1, y1), trace-safe."""
    return torch.cat([torch.cat([torch.full_like(b[:, :1], i), b], dim=1) for i, b in enumerate(boxes)])


class LevelROIAlign(nn.Module):
    """ROIAlign (aligned, i.e. ROIAlignV2) of each box on the level chosen for it.

    ``forward(features, rois, levels)``: features [(N, C, H_l, W_l)] one per level, rois (n, 5) from
    :func:`boxes_with_batch_index`, levels (n,) -> (n, C, R, R). No parameters.
    """

    def __init__(self, resolution: int, scales: Sequence[float], sampling_ratio: int = 0, aligned: bool = True):
        super().__init__()
        self.resolution = int(resolution)
        self.level_poolers = nn.ModuleList(
            ROIAlign((resolution, resolution), spatial_scale=s, sampling_ratio=sampling_ratio, aligned=aligned)
            for s in scales
        )

    def forward(self, features: List[torch.Tensor], rois: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
        if len(features) != len(self.level_poolers):
            raise ValueError(f"{len(features)} feature levels for {len(self.level_poolers)} poolers")
        channels = features[0].shape[1]
        out = features[0].new_zeros((rois.shape[0], channels, self.resolution, self.resolution))
        for level, (feature, pooler) in enumerate(zip(features, self.level_poolers)):
            idx = torch.nonzero(levels == level).squeeze(1)
            out = out.index_put((idx,), pooler(feature, rois[idx]).to(out.dtype))
        return out
