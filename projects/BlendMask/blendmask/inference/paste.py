"""Paste R x R mask probabilities into image-size boolean masks, with one argument choosing how.

Every backend gives detectron2's ``paste_masks_in_image`` result: each mask is sampled bilinearly
(zero outside the mask, pixel centres at +0.5) over its box and thresholded with ``>=``.

- ``"lazy"`` (eager, CPU): the (N, H, W) output is allocated lazily zeroed and each mask is sampled
  only over its box's integer extent grown by one pixel, as detectron2 does on CPU; only the pages
  under the boxes are ever written, so the cost no longer grows with N x H x W. Bit-equal to
  detectron2. The result carries ``box_extents`` (N, 4) int64 x0, y0, x1, y1: each mask is zero
  outside its extent, so :func:`select_masks` and :func:`mask_crops` keep memory box-local (100
  masks on a 24 MP photo are 2.4 GB at full size, a few MB under their boxes).
- ``"detectron2"``: detectron2's own ``paste_masks_in_image`` (GPU, or the lazy paste switched off).
- ``"grid"`` (trace-safe): one ``grid_sample`` over the whole output per mask; pixels far from the
  box sample 0, so the thresholded masks are the same. Used by the TorchScript export.
- ``"separable"`` (trace-safe): the same bilinear sampling as two batched matrix products (it is
  separable): equal up to float rounding (~1e-6) and about twice as fast in onnxruntime as
  GridSample. Used by the ONNX export.
"""

import mmap
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from detectron2.layers import paste_masks_in_image
from torch.nn import functional as F

PASTE_BACKENDS = ("lazy", "detectron2", "grid", "separable")


def _lazy_zeros_bool(shape) -> torch.Tensor:
    """A zeroed bool tensor backed by a fresh anonymous memory map: the kernel hands out zero
    pages on first touch, so pages never written cost nothing. (numpy's calloc would do the same
    but asks for huge pages, whose faults can stall on memory compaction.) The map is private:
    a shared one (Python's default) gets a real page for every page read, so a consumer that
    merely reads the masks (an RLE encoder, ``.sum()``) would grow the process by N x H x W bytes;
    a private one maps reads to the kernel's one zero page."""
    size = int(np.prod(shape))
    if size == 0:
        return torch.zeros(shape, dtype=torch.bool)
    buffer = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    return torch.frombuffer(buffer, dtype=torch.bool).view(*shape)


def _paste_lazy(probs: torch.Tensor, boxes: torch.Tensor, height: int, width: int, threshold: float):
    out = _lazy_zeros_bool((len(probs), height, width))
    boxes = boxes.to(torch.float32)
    x0y0 = (boxes[:, :2].floor() - 1).clamp(min=0).to(torch.int64)
    x1 = (boxes[:, 2].ceil() + 1).clamp(max=width).to(torch.int64)
    y1 = (boxes[:, 3].ceil() + 1).clamp(max=height).to(torch.int64)
    out.box_extents = torch.stack([x0y0[:, 0], x0y0[:, 1], x1, y1], dim=1)
    if len(probs) == 0:
        return out
    lo, hi_x, hi_y = x0y0.tolist(), x1.tolist(), y1.tolist()

    def paste(indices):
        for i in indices:
            (x0, y0), x1, y1 = lo[i], hi_x[i], hi_y[i]
            if x1 <= x0 or y1 <= y0:
                continue
            bx0, by0, bx1, by1 = boxes[i]
            gx = (torch.arange(x0, x1, dtype=torch.float32) + 0.5 - bx0) / (bx1 - bx0) * 2 - 1
            gy = (torch.arange(y0, y1, dtype=torch.float32) + 0.5 - by0) / (by1 - by0) * 2 - 1
            grid = torch.stack(torch.broadcast_tensors(gx[None, :], gy[:, None]), dim=2)[None]
            sampled = F.grid_sample(probs[i][None, None], grid.to(probs.dtype), align_corners=False)
            out[i, y0:y1, x0:x1] = sampled[0, 0] >= threshold

    workers = min(torch.get_num_threads(), len(probs))
    if workers <= 1:
        paste(range(len(probs)))
    else:  # grid_sample of one mask barely uses a second core; masks are independent
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(paste, [range(w, len(probs), workers) for w in range(workers)]))
    return out


def select_masks(masks: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``masks[keep]`` (``keep``: indices or a boolean mask); for lazily pasted masks (with
    ``box_extents``) a lazily zeroed copy of the selected masks' box regions only."""
    extents = getattr(masks, "box_extents", None)
    if extents is None or masks.device.type != "cpu":
        return masks[keep]
    if keep.dtype == torch.bool:
        keep = torch.nonzero(keep).squeeze(1)
    out = _lazy_zeros_bool((len(keep), *masks.shape[1:]))
    out.box_extents = extents[keep]
    for j, (i, (x0, y0, x1, y1)) in enumerate(zip(keep.tolist(), out.box_extents.tolist())):
        out[j, y0:y1, x0:x1] = masks[i, y0:y1, x0:x1]
    return out


def mask_crops(masks: torch.Tensor):
    """Per mask of an (N, H, W) bool tensor: (x0, y0, crop) with ``crop`` a view of the region
    outside which the mask is zero: its box extent for lazily pasted masks, else the rows and
    columns that hold its pixels (found by reading the mask once)."""
    extents = getattr(masks, "box_extents", None)
    for i in range(len(masks)):
        if extents is not None:
            x0, y0, x1, y1 = extents[i].tolist()
        else:
            cols, rows = torch.nonzero(masks[i].any(0)), torch.nonzero(masks[i].any(1))
            if len(cols) == 0:
                x0 = y0 = x1 = y1 = 0
            else:
                x0, x1, y0, y1 = int(cols[0]), int(cols[-1]) + 1, int(rows[0]), int(rows[-1]) + 1
        yield x0, y0, masks[i, y0:y1, x0:x1]


def paste_probs_grid(probs: torch.Tensor, boxes: torch.Tensor, height, width) -> torch.Tensor:
    """(N, R, R) probabilities sampled at every pixel of an (N, height, width) image (float)."""
    row = torch.arange(height, dtype=torch.float32, device=probs.device)
    col = torch.arange(width, dtype=torch.float32, device=probs.device)
    x0, y0, x1, y1 = boxes.split(1, dim=1)
    gx = (col[None, :] + 0.5 - x0) / (x1 - x0) * 2 - 1  # (N, W)
    gy = (row[None, :] + 0.5 - y0) / (y1 - y0) * 2 - 1  # (N, H)
    n, h, w = gx.shape[0], gy.shape[1], gx.shape[1]  # traced sizes: dynamic in the graph
    grid = torch.stack([gx[:, None, :].expand(n, h, w), gy[:, :, None].expand(n, h, w)], dim=3)
    return F.grid_sample(probs[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0]


def _bilinear_weights(coord: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, cells: int) -> torch.Tensor:
    """(N, L, cells) weights with which pixel centres ``coord`` (L,) sample ``cells`` mask cells
    spanning [lo, hi] (N, 1): grid_sample's bilinear, align_corners=False, zero padding, 1-d."""
    g = (coord[None, :] + 0.5 - lo) / (hi - lo) * 2 - 1
    pos = ((g + 1) * cells - 1) / 2
    first = pos.floor()[..., None]
    pos = pos[..., None]
    index = torch.arange(cells, dtype=coord.dtype, device=coord.device)
    zero = torch.zeros_like(pos)
    # the weights written as grid_sample computes them: (first + 1 - pos) and (pos - first)
    return (torch.where(index == first, first + 1 - pos, zero)
            + torch.where(index == first + 1, pos - first, zero))


def paste_probs_separable(probs: torch.Tensor, boxes: torch.Tensor, height, width) -> torch.Tensor:
    """:func:`paste_probs_grid` as two batched matrix products (float, equal up to rounding)."""
    row = torch.arange(height, dtype=torch.float32, device=probs.device)
    col = torch.arange(width, dtype=torch.float32, device=probs.device)
    x0, y0, x1, y1 = boxes.split(1, dim=1)
    r = probs.shape[-1]
    ay = _bilinear_weights(row, y0, y1, r)  # (N, H, R)
    ax = _bilinear_weights(col, x0, x1, r)  # (N, W, R)
    return torch.matmul(torch.matmul(ay, probs), ax.transpose(1, 2))


def paste_masks(probs: torch.Tensor, boxes: torch.Tensor, image_size, threshold: float = 0.5,
                backend: str = "lazy") -> torch.Tensor:
    """(N, R, R) probabilities in (N, 4) XYXY boxes -> (N, H, W) bool masks, ``prob >= threshold``.

    ``image_size``: (height, width), Python ints, or 0-dim tensors for the trace-safe backends.
    ``"lazy"`` off the CPU falls back to ``"detectron2"``.
    """
    height, width = image_size
    if backend == "lazy" and probs.device.type != "cpu":
        backend = "detectron2"
    if backend == "lazy":
        return _paste_lazy(probs, boxes, int(height), int(width), threshold)
    if backend == "detectron2":
        return paste_masks_in_image(probs, boxes, (int(height), int(width)), threshold=threshold).bool()
    if backend == "grid":
        return paste_probs_grid(probs, boxes, height, width) >= threshold
    if backend == "separable":
        return paste_probs_separable(probs, boxes, height, width) >= threshold
    raise ValueError(f"paste backend must be one of {PASTE_BACKENDS}, got {backend!r}")
