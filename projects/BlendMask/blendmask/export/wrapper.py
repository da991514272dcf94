"""An export-friendly inference module around a built BlendMask (or FCOS-only) model.

``ExportableBlendMask(model)`` reuses the model's own submodules (backbone, FCOS head, top layer,
basis module, the blender's RoIAlign and ``blend``) and re-expresses only the data-dependent
post-processing of FCOS inference and ``detector_postprocess`` with tensor operations that
``torch.jit.trace`` and the ONNX exporter record as graph operations (TopK, NonZero, Gather,
NonMaxSuppression, RoiAlign, GridSample or MatMul): no Python branch or Python number depends on
the image or on the detections, so one traced graph serves every input size and detection count.
"""

from typing import Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.ops import batched_nms
from torchvision.ops import nms as torchvision_nms

from ..modeling.blender import blend
from ..modeling.layers import supports_conv_at_locations

INPUT_NAMES = ("image", "output_size")
OUTPUT_NAMES = ("boxes", "scores", "classes", "mask_probs", "masks")


def _arange_like(x: torch.Tensor) -> torch.Tensor:
    """0, 1, ..., len(x) - 1 (float32, exact) for a 1-d tensor, computed in the graph."""
    return torch.ones_like(x, dtype=torch.float32).cumsum(0) - 1


def _no_masks(boxes: torch.Tensor) -> torch.Tensor:
    """An (N, 0, 0) placeholder with as many rows as ``boxes``, without a Python int."""
    return boxes[:, :0, None][:, :, :0]


def _index_grid(plane: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Column and row index (float32, exact) of every cell of a (H, W) tensor, in the graph."""
    ones = torch.ones_like(plane, dtype=torch.float32)
    return ones.cumsum(1) - 1, ones.cumsum(0) - 1


@torch.jit.script_if_tracing
def _class_aware_nms(boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor, iou_threshold: float):
    """torchvision's ``batched_nms`` exactly as the eager model runs it (detectron2's
    ``batched_nms`` hands it to torchvision). Scripted when traced, so the TorchScript graph keeps
    its data-dependent choice between per-class NMS and the coordinate-offset trick."""
    return batched_nms(boxes, scores, classes, iou_threshold)


class _OnnxNonMaxSuppression(torch.autograd.Function):
    """ONNX ``NonMaxSuppression`` with one score row per class: exact class-aware NMS in ONNX.

    boxes (1, N, 4); class_scores (1, C, N) with -1 where a box is not of that class. Returns the
    selected (K, 3) int64 rows [0, class, box index]. ``forward`` computes the same in PyTorch
    (used while tracing); the exported graph holds the single ONNX operator.
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
    for_onnx: bool = False,
) -> torch.Tensor:
    """Indices kept by NMS within each class, by decreasing score.

    Default: torchvision's ``batched_nms`` as the eager model runs it (scripted into a TorchScript
    trace). ``for_onnx``: ONNX ``NonMaxSuppression`` on one score row per class, i.e. per-class NMS
    on the boxes themselves (torchvision's own ONNX export would offset boxes by class instead).
    """
    if not for_onnx:
        return _class_aware_nms(boxes, scores, classes, iou_threshold)
    class_ids = torch.arange(num_classes, device=classes.device)[:, None]
    class_scores = torch.where(classes[None, :] == class_ids, scores[None, :], torch.full_like(scores, -1.0))
    selected = _OnnxNonMaxSuppression.apply(boxes[None], class_scores[None], iou_threshold, -0.5)
    keep = selected[:, 2]
    return keep[scores[keep].sort(descending=True)[1]]


def paste_mask_probs(probs: torch.Tensor, boxes: torch.Tensor, row: torch.Tensor, col: torch.Tensor):
    """(N, R, R) probabilities pasted into (N, H, W) images as detectron2's paste_masks_in_image.

    ``boxes`` (N, 4) in image pixels; ``row`` (H,) and ``col`` (W,) are the pixel indices as
    float. Bilinear sampling with zero padding over the whole image: detectron2 on CPU samples only
    a window around the boxes, and every pixel outside that window samples < 0.5 here, so the
    thresholded masks are the same.
    """
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


def paste_mask_probs_separable(probs: torch.Tensor, boxes: torch.Tensor, row: torch.Tensor, col: torch.Tensor):
    """:func:`paste_mask_probs` as two batched matrix products (bilinear sampling is separable):
    the same values up to float rounding (~1e-6), and about twice as fast in onnxruntime as
    GridSample with its (N, H, W, 2) grid."""
    x0, y0, x1, y1 = boxes.split(1, dim=1)
    r = probs.shape[-1]
    ay = _bilinear_weights(row, y0, y1, r)  # (N, H, R)
    ax = _bilinear_weights(col, x0, x1, r)  # (N, W, R)
    return torch.matmul(torch.matmul(ay, probs), ax.transpose(1, 2))


class ExportableBlendMask(nn.Module):
    """Single-image inference, post-processing included, as one traceable graph.

    Inputs:
      - ``image`` (1, 3, H, W) float32: raw pixels (0..255) in the config's ``INPUT.FORMAT`` (BGR for
        AdelaiDet configs), already resized to the test size (detectron2's
        ``ResizeShortestEdge(MIN_SIZE_TEST, MAX_SIZE_TEST)``, as ``DefaultPredictor`` does); any H, W.
        Normalisation by PIXEL_MEAN/STD and zero-padding to the backbone's size divisibility (32)
        happen inside.
      - ``output_size`` (optional) int64 (2,) = [height, width] the results are scaled to, usually the
        original image's size (detectron2's "height"/"width"); default: H, W.

    Outputs (N detections, sorted by decreasing score, coordinates in ``output_size`` pixels):
      - ``boxes`` (N, 4) float32 x0, y0, x1, y1, clipped to the output size (empty boxes dropped);
      - ``scores`` (N,) float32, sqrt(sigmoid(cls) * sigmoid(ctrness));
      - ``classes`` (N,) int64, contiguous class ids 0..NUM_CLASSES-1;
      - ``mask_probs`` (N, R, R) float32 mask probabilities in each unclipped, unscaled box (R =
        MODEL.BLENDMASK.BOTTOM_RESOLUTION); (N, 0, 0) for FCOS-only models;
      - ``masks`` (N, out_H, out_W) bool: ``mask_probs`` pasted into the boxes and thresholded at
        0.5, as ``detector_postprocess`` does; (N, 0, 0) without ``paste_masks`` or mask head.

    These equal the eager model's ``model([{"image": image[0], "height": h, "width": w}])``
    instances (same thresholds, top-k, class-aware NMS, blending and pasting).
    """

    def __init__(self, model: nn.Module, paste_masks: bool = True, mask_threshold: float = 0.5):
        super().__init__()
        fcos = model.proposal_generator
        self.backbone = model.backbone
        self.fcos_head = fcos.fcos_head
        self.has_masks = hasattr(model, "blender")
        if self.has_masks:
            self.top_layer = model.top_layer
            self.basis_module = model.basis_module
            pooler = model.blender.pooler
            if len(pooler.level_poolers) != 1:
                raise ValueError("export supports a blender pooling bases from a single level")
            self.roi_align = pooler.level_poolers[0]
            self.attn_size = model.blender.attn_size
            self.top_interp = model.blender.top_interp
            # as the eager FCOS: the attention conv only at the kept detections when it can be
            self.sparse_attention = bool(getattr(fcos, "sparse_top_module", False)) and supports_conv_at_locations(
                self.top_layer)
        self.register_buffer("pixel_mean", model.pixel_mean.detach().clone(), False)
        self.register_buffer("pixel_std", model.pixel_std.detach().clone(), False)
        self.size_divisibility = int(self.backbone.size_divisibility)
        self.in_features = list(fcos.in_features)
        self.strides = list(fcos.strides)
        self.num_classes = int(fcos.num_classes)
        self.thresh = float(fcos.inference_thresh[False])
        self.pre_nms_topk = int(fcos.pre_nms_topk[False])
        self.post_nms_topk = int(fcos.post_nms_topk[False])
        self.nms_thresh = float(fcos.nms_thresh)
        self.thresh_with_ctr = bool(fcos.thresh_with_ctr)
        self.paste_masks = paste_masks and self.has_masks
        self.mask_threshold = float(mask_threshold)
        # set by export_onnx: per-class ONNX NonMaxSuppression, separable mask pasting
        self.for_onnx = False
        # as the eager model: a channels-last batch into the backbone on CPU (ONNX ignores layout)
        self.cpu_channels_last = bool(getattr(model, "cpu_channels_last", False))

    # -- pre-processing ------------------------------------------------------------------------
    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """Normalise, then zero-pad bottom/right to a multiple of the size divisibility."""
        x = (image - self.pixel_mean) / self.pixel_std
        d = self.size_divisibility
        if d > 1:
            # the padded size comes from the traced shape, so it stays dynamic in the graph
            h, w = x.shape[-2:]
            x = F.pad(x, (0, (d - w % d) % d, 0, (d - h % d) % d))
        return x

    # -- FCOS inference ------------------------------------------------------------------------
    def _level_candidates(self, logits, reg, ctrness, top_feat, stride: int):
        """Top PRE_NMS_TOPK (location, class) pairs of one level passing the score threshold.

        Returns boxes (K, 4), scores (K,), classes (K,), attentions (K, D) or None, valid (K,),
        cells (K,) (row-major cell index in the level): K = PRE_NMS_TOPK rows always; rows that
        are not candidates have ``valid`` False.
        """
        c = self.num_classes
        cls_prob = logits[0].flatten(1).t().sigmoid()  # (HW, C)
        ctr_prob = ctrness[0].flatten(1).t().sigmoid()  # (HW, 1)
        prob = cls_prob * ctr_prob
        candidate = (prob if self.thresh_with_ctr else cls_prob) > self.thresh
        key = prob.masked_fill(~candidate, -1.0).flatten()
        # pad to at least K entries so TopK is valid on tiny levels; padding never passes
        k = self.pre_nms_topk
        key = torch.cat([key, key.new_full((k,), -1.0)])
        top, flat_idx = key.topk(k)
        valid = top > -0.5
        flat_idx = torch.where(valid, flat_idx, torch.zeros_like(flat_idx))
        loc_idx = torch.div(flat_idx, c, rounding_mode="floor")
        classes = flat_idx - loc_idx * c

        xs, ys = _index_grid(logits[0, 0])
        loc_x = (xs.flatten() * stride + stride // 2)[loc_idx]
        loc_y = (ys.flatten() * stride + stride // 2)[loc_idx]
        ltrb = reg[0].flatten(1).t()[loc_idx] * stride
        boxes = torch.stack(
            (loc_x - ltrb[:, 0], loc_y - ltrb[:, 1], loc_x + ltrb[:, 2], loc_y + ltrb[:, 3]), dim=1
        )
        scores = torch.sqrt(prob.flatten()[flat_idx])
        attns = top_feat[0].flatten(1).t()[loc_idx] if top_feat is not None else None
        return boxes, scores, classes, attns, valid, loc_idx

    def detect(self, features):
        """FCOS on the FPN features -> boxes (unclipped), scores, classes, attentions or None."""
        feats = [features[f] for f in self.in_features]
        dense = self.has_masks and not self.sparse_attention
        outputs = self.fcos_head(feats, self.top_layer if dense else None)
        per_level = [
            self._level_candidates(
                outputs["logits"][lvl], outputs["reg"][lvl], outputs["ctrness"][lvl],
                outputs["top_feats"][lvl] if dense else None, stride,
            )
            for lvl, stride in enumerate(self.strides)
        ]
        keep = torch.nonzero(torch.cat([p[4] for p in per_level])).squeeze(1)
        boxes = torch.cat([p[0] for p in per_level])[keep]
        scores = torch.cat([p[1] for p in per_level])[keep]
        classes = torch.cat([p[2] for p in per_level])[keep]
        cells = torch.cat([p[5] for p in per_level])[keep]
        levels = torch.cat([torch.full_like(p[5], lvl) for lvl, p in enumerate(per_level)])[keep]
        attns = torch.cat([p[3] for p in per_level])[keep] if dense else None

        keep = class_aware_nms(boxes, scores, classes, self.nms_thresh, self.num_classes, self.for_onnx)
        keep = keep[self._top_k_with_ties(scores[keep], self.post_nms_topk)]
        if attns is not None:
            attns = attns[keep]
        elif self.has_masks:
            attns = self.attention_at(outputs["box_towers"], levels[keep], cells[keep])
        return boxes[keep], scores[keep], classes[keep], attns

    def attention_at(self, towers, levels: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        """The attention conv (``top_layer``) evaluated only at the given (level, cell) pairs.

        The graph form of ``conv_at_locations``: no loop over the levels present. Each level's
        k x k patches are gathered for every detection (cells clamped to 0 where the detection is
        on another level), multiplied with the conv weight, and the detection's own level picked.
        """
        conv = self.top_layer
        k, pad = conv.kernel_size[0], conv.padding[0]
        weight = conv.weight.reshape(conv.out_channels, -1).t()  # (C*k*k, D)
        taps = torch.arange(k, device=cells.device)
        out = None
        for level, tower in enumerate(towers):
            here = levels == level
            cell = torch.where(here, cells, torch.zeros_like(cells))
            width = tower.shape[-1]  # traced size: dynamic in the graph
            padded = F.pad(tower[0], (pad, pad, pad, pad))  # (C, H + 2p, W + 2p)
            rows = torch.div(cell, width, rounding_mode="floor")[:, None] + taps  # (P, k)
            cols = (cell % width)[:, None] + taps  # (P, k)
            flat = (rows[:, :, None] * (width + 2 * pad) + cols[:, None, :]).flatten()  # (P*k*k,)
            patches = padded.flatten(1).index_select(1, flat)  # (C, P*k*k) -> (P, C*k*k)
            patches = patches.reshape(patches.shape[0], cell.shape[0], k * k).permute(1, 0, 2).flatten(1)
            result = patches @ weight
            out = result if out is None else torch.where(here[:, None], result, out)
        return out + conv.bias if conv.bias is not None else out

    @staticmethod
    def _top_k_with_ties(scores: torch.Tensor, k: int) -> torch.Tensor:
        """Indices of scores >= the k-th largest (all of them when there are at most k)."""
        if k <= 0:
            return torch.nonzero(torch.ones_like(scores, dtype=torch.bool)).squeeze(1)
        padded = torch.cat([scores, scores.new_full((k,), -1.0)])
        kth = padded.topk(k).values[-1]
        return torch.nonzero(scores >= kth).squeeze(1)

    # -- masks and post-processing -------------------------------------------------------------
    def mask_probs(self, bases: torch.Tensor, boxes: torch.Tensor, attns: torch.Tensor) -> torch.Tensor:
        """(N, R, R) probabilities: RoIAlign of the bases on the unclipped boxes, blended."""
        rois = torch.cat([torch.zeros_like(boxes[:, :1]), boxes], dim=1)
        pooled = self.roi_align(bases, rois)
        return blend(pooled, attns, self.attn_size, self.top_interp).sigmoid()

    @staticmethod
    def clip_boxes(boxes: torch.Tensor, height: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
        x0, y0, x1, y1 = boxes.clamp(min=0).unbind(1)
        return torch.stack(
            (torch.minimum(x0, width), torch.minimum(y0, height),
             torch.minimum(x1, width), torch.minimum(y1, height)), dim=1
        )

    def paste(self, probs: torch.Tensor, boxes: torch.Tensor, row: torch.Tensor, col: torch.Tensor):
        """(N, H, W) bool masks: pasted probabilities thresholded as ``detector_postprocess`` does.

        Eager and TorchScript use grid_sample as detectron2 does (bit for bit); ONNX uses the
        faster separable form."""
        paste = paste_mask_probs_separable if self.for_onnx else paste_mask_probs
        return paste(probs, boxes, row, col) >= self.mask_threshold

    def forward(self, image: torch.Tensor, output_size: Optional[torch.Tensor] = None):
        """``image`` (1, 3, H, W); ``output_size`` optional int64 (2,) [height, width] (default H, W)."""
        x = self.preprocess(image)
        if self.cpu_channels_last and x.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        features = self.backbone(x)
        boxes, scores, classes, attns = self.detect(features)

        # detector_postprocess: scale to the output size, clip, drop empty boxes, paste masks
        in_h = torch.ones_like(image[0, 0, :, 0]).sum()
        in_w = torch.ones_like(image[0, 0, 0]).sum()
        if output_size is None:
            out_h, out_w = in_h, in_w
            row, col = _arange_like(image[0, 0, :, 0]), _arange_like(image[0, 0, 0])
        else:
            out_h, out_w = output_size[0].to(torch.float32), output_size[1].to(torch.float32)
            row = torch.arange(output_size[0], dtype=torch.float32, device=image.device)
            col = torch.arange(output_size[1], dtype=torch.float32, device=image.device)
        sx, sy = out_w / in_w, out_h / in_h
        scaled = boxes * torch.stack([sx, sy, sx, sy])
        clipped = self.clip_boxes(scaled, out_h, out_w)
        nonempty = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
        keep = torch.nonzero(nonempty).squeeze(1)
        clipped, scores, classes = clipped[keep], scores[keep], classes[keep]

        if not self.has_masks:
            empty = _no_masks(clipped)
            return clipped, scores, classes, empty, empty > 0
        bases = self.basis_module(features)[0]["bases"][0]
        probs = self.mask_probs(bases, boxes[keep], attns[keep])
        if self.paste_masks:
            masks = self.paste(probs, clipped, row, col)
        else:
            masks = _no_masks(clipped) > 0
        return clipped, scores, classes, probs, masks
