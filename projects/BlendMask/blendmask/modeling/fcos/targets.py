"""FCOS training targets: locations, size-of-interest ranges, centre sampling, centerness."""

from typing import Dict, List, Sequence

import torch

INF = 100000000.0


def compute_locations(features: List[torch.Tensor], strides: Sequence[int]) -> List[torch.Tensor]:
    """Image-plane (x, y) of every feature-map cell: (j*s + s//2, i*s + s//2).

    Returns one (H_l*W_l, 2) float tensor per level, row-major over (i, j).
    """
    locations = []
    for feature, stride in zip(features, strides):
        h, w = feature.shape[-2:]
        xs = torch.arange(0, w * stride, step=stride, dtype=torch.float32, device=feature.device)
        ys = torch.arange(0, h * stride, step=stride, dtype=torch.float32, device=feature.device)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        locations.append(torch.stack((grid_x.reshape(-1), grid_y.reshape(-1)), dim=1) + stride // 2)
    return locations


def size_ranges_from_sizes_of_interest(sizes_of_interest: Sequence[float]) -> List[List[float]]:
    """[64, 128, 256, 512] -> [[-1, 64], [64, 128], [128, 256], [256, 512], [512, INF]]."""
    ranges, lower = [], -1
    for size in sizes_of_interest:
        ranges.append([lower, size])
        lower = size
    ranges.append([lower, INF])
    return ranges


def center_sampling_mask(boxes, centers, locations, level_strides, radius):
    """Which locations lie strictly inside each box's centre region.

    boxes (G, 4), centers (G, 2), locations (P, 2), level_strides (P,) -> bool (P, G). The
    region is the box centre +- radius * stride, clipped to the box.
    """
    reach = (level_strides * radius)[:, None]
    x0 = torch.maximum(centers[None, :, 0] - reach, boxes[None, :, 0])
    y0 = torch.maximum(centers[None, :, 1] - reach, boxes[None, :, 1])
    x1 = torch.minimum(centers[None, :, 0] + reach, boxes[None, :, 2])
    y1 = torch.minimum(centers[None, :, 1] + reach, boxes[None, :, 3])
    xs, ys = locations[:, 0:1], locations[:, 1:2]
    margins = torch.stack((xs - x0, ys - y0, x1 - xs, y1 - ys), dim=2)
    return margins.min(dim=2).values > 0


def assign_targets_single_image(
    locations: torch.Tensor,
    level_strides: torch.Tensor,
    size_ranges: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_classes: torch.Tensor,
    num_classes: int,
    center_sample: bool = True,
    radius: float = 1.5,
) -> Dict[str, torch.Tensor]:
    """Assign each location of one image to at most one ground-truth box.

    Args:
        locations: (P, 2) (x, y) of all levels concatenated.
        level_strides: (P,) stride of each location's level.
        size_ranges: (P, 2) inclusive [low, high] range of max(l, t, r, b) for each location.
        gt_boxes: (G, 4) XYXY; gt_classes: (G,).
    Returns:
        "labels" (P,) class or ``num_classes`` for background, "reg_targets" (P, 4) l,t,r,b in
        pixels and "gt_inds" (P,) index into this image's boxes (-1 when there are none).
    """
    num_locations = locations.shape[0]
    if gt_boxes.numel() == 0:
        return {
            "labels": gt_classes.new_full((num_locations,), num_classes),
            "reg_targets": locations.new_zeros((num_locations, 4)),
            "gt_inds": gt_classes.new_full((num_locations,), -1),
        }
    xs, ys = locations[:, 0:1], locations[:, 1:2]
    reg = torch.stack(
        (xs - gt_boxes[None, :, 0], ys - gt_boxes[None, :, 1],
         gt_boxes[None, :, 2] - xs, gt_boxes[None, :, 3] - ys),
        dim=2,
    )  # (P, G, 4)
    if center_sample:
        centers = (gt_boxes[:, :2] + gt_boxes[:, 2:]) * 0.5
        inside = center_sampling_mask(gt_boxes, centers, locations, level_strides, radius)
    else:
        inside = reg.min(dim=2).values > 0
    max_reg = reg.max(dim=2).values
    in_range = (max_reg >= size_ranges[:, :1]) & (max_reg <= size_ranges[:, 1:])

    areas = (gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1])
    location_to_area = areas[None].repeat(num_locations, 1)
    location_to_area[~inside] = INF
    location_to_area[~in_range] = INF
    min_area, gt_inds = location_to_area.min(dim=1)  # ambiguous: the smallest box wins

    labels = gt_classes[gt_inds].clone()
    labels[min_area == INF] = num_classes
    reg_targets = reg[torch.arange(num_locations, device=reg.device), gt_inds]
    return {"labels": labels, "reg_targets": reg_targets, "gt_inds": gt_inds}


def compute_ctrness_targets(reg_targets: torch.Tensor) -> torch.Tensor:
    """sqrt(min(l,r)/max(l,r) * min(t,b)/max(t,b)) for (P, 4) l,t,r,b -> (P,)."""
    if reg_targets.numel() == 0:
        return reg_targets.new_zeros(len(reg_targets))
    left_right = reg_targets[:, [0, 2]]
    top_bottom = reg_targets[:, [1, 3]]
    ctrness = (left_right.min(dim=-1).values / left_right.max(dim=-1).values) * (
        top_bottom.min(dim=-1).values / top_bottom.max(dim=-1).values
    )
    return torch.sqrt(ctrness)
