"""The tight box of each binary mask, trace-safe (for models whose masks come without boxes)."""

import torch


def _any(masks: torch.Tensor, dim: int) -> torch.Tensor:
    """``masks.any(dim)``. Eager, on the bool masks' bytes read as uint8: ``amax`` there is ~15x
    faster than ``any`` on CPU (0.3 s -> 0.02 s for 100 masks at 800x1333), the same result.
    Traced (the exports), ``any`` itself."""
    if masks.dtype == torch.bool and not torch.jit.is_tracing():
        return masks.view(torch.uint8).amax(dim) > 0
    return masks.any(dim)


def boxes_from_masks(masks: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool -> (N, 4) float32 XYXY: [x_min, y_min, x_max + 1, y_max + 1] of the mask's
    pixels (detectron2's ``BitMasks.get_bounding_boxes`` convention); all zeros for an empty mask."""
    def extent(any_along: torch.Tensor):
        index = torch.arange(any_along.shape[1], dtype=torch.float32, device=any_along.device)[None, :]
        big = torch.full_like(index, float("inf"))
        lo = torch.where(any_along, index, big).min(1, keepdim=True).values
        hi = torch.where(any_along, index + 1, torch.zeros_like(index)).max(1, keepdim=True).values
        return lo, hi

    if masks.shape[1] == 0 or masks.shape[2] == 0:  # no pixels (N = 0 needs no special case)
        return torch.zeros((masks.shape[0], 4), dtype=torch.float32, device=masks.device)
    x0, x1 = extent(_any(masks, 1))
    y0, y1 = extent(_any(masks, 2))
    boxes = torch.cat([x0, y0, x1, y1], dim=1)
    nonempty = x1 > 0
    return torch.where(nonempty, boxes, torch.zeros_like(boxes))
