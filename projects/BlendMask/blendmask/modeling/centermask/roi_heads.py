"""CenterMask's ROI heads: masks (SAG-Mask) and mask scores (MaskIoU) for FCOS's boxes.

There is no box head: FCOS's detections are final, the ROI heads only add, per detection, the
predicted class's mask and (with MASKIOU_ON) ``mask_scores = scores * maskiou``.

Registered in detectron2's ``ROI_HEADS_REGISTRY`` as ``CenterROIHeads``, the name centermask2's
yaml files use, so that those files build with detectron2's own ``build_model`` too
(``GeneralizedRCNN`` + our ``FCOS`` + these heads: see :meth:`CenterROIHeads.forward`).
"""

import math
from typing import Dict, List, Sequence

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.sampling import subsample_labels
from detectron2.structures import BitMasks, Boxes, Instances, PolygonMasks, pairwise_iou
from torch import nn
from torch.nn import functional as F

from .maskiou_head import MaskIoUHead
from .roi_levels import CRITERIA, LevelROIAlign, assign_roi_levels, boxes_with_batch_index
from .sag_mask_head import SpatialAttentionMaskHead


def _gather_class(per_class: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """(n, K, ...) -> (n, ...) at each row's class (K == 1: class-agnostic), trace-safe."""
    if per_class.shape[1] == 1:
        return per_class[:, 0]
    index = classes.view((-1, 1) + (1,) * (per_class.dim() - 2)).expand((-1, 1) + tuple(per_class.shape[2:]))
    return per_class.gather(1, index).squeeze(1)


@ROI_HEADS_REGISTRY.register()
class CenterROIHeads(nn.Module):
    """Mask and MaskIoU heads on ROIAlign of FPN levels ``in_features`` (level per box by
    ``assign_criterion``). ``mask_outputs`` serves inference, ``losses`` training; ``forward`` is
    detectron2's ROI-heads interface over them."""

    # FCOS runs detection in training too when it feeds these heads in detectron2's GeneralizedRCNN
    # (read by FCOS.from_config; our CenterMask meta-architecture switches it on itself)
    takes_fcos_proposals = True

    @configurable
    def __init__(self, *, in_features: List[str], pooler: LevelROIAlign, mask_head: SpatialAttentionMaskHead,
                 maskiou_head=None, assign_criterion: str = "ratio", num_classes: int = 80,
                 batch_size_per_image: int = 512, positive_fraction: float = 0.25, proposal_matcher: Matcher = None,
                 proposal_append_gt: bool = True, maskiou_loss_weight: float = 1.0):
        super().__init__()
        if assign_criterion not in CRITERIA:
            raise ValueError(
                f"MODEL.ROI_MASK_HEAD.ASSIGN_CRITERION must be one of {CRITERIA}, got {assign_criterion!r}")
        self.in_features = list(in_features)
        self.pooler = pooler
        self.mask_head = mask_head
        self.maskiou_head = maskiou_head
        self.assign_criterion = assign_criterion
        self.num_classes = num_classes
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.proposal_matcher = proposal_matcher or Matcher([0.5], [0, 1], allow_low_quality_matches=False)
        self.proposal_append_gt = proposal_append_gt
        self.maskiou_loss_weight = maskiou_loss_weight

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        heads, mask = cfg.MODEL.ROI_HEADS, cfg.MODEL.ROI_MASK_HEAD
        if mask.POOLER_TYPE != "ROIAlignV2":
            raise ValueError(f"MODEL.ROI_MASK_HEAD.POOLER_TYPE {mask.POOLER_TYPE!r}: only ROIAlignV2 is supported")
        if mask.NORM:
            raise ValueError(f"MODEL.ROI_MASK_HEAD.NORM {mask.NORM!r}: CenterMask's mask head has no norm")
        missing = [f for f in heads.IN_FEATURES if f not in input_shape]
        if missing:
            raise ValueError(f"MODEL.ROI_HEADS.IN_FEATURES {missing} are not backbone outputs {sorted(input_shape)}")
        shapes = [input_shape[f] for f in heads.IN_FEATURES]
        channels = {s.channels for s in shapes}
        if len(channels) != 1:
            raise ValueError(f"MODEL.ROI_HEADS.IN_FEATURES {heads.IN_FEATURES} differ in channels: {channels}")
        in_channels = channels.pop()
        res = mask.POOLER_RESOLUTION
        maskiou_head = None
        if cfg.MODEL.MASKIOU_ON:
            iou = cfg.MODEL.ROI_MASKIOU_HEAD
            maskiou_head = MaskIoUHead(in_channels, iou.CONV_DIM, iou.NUM_CONV, heads.NUM_CLASSES, res)
        return dict(
            in_features=heads.IN_FEATURES,
            pooler=LevelROIAlign(res, [1.0 / s.stride for s in shapes], mask.POOLER_SAMPLING_RATIO),
            mask_head=SpatialAttentionMaskHead(in_channels, mask.CONV_DIM, mask.NUM_CONV, heads.NUM_CLASSES,
                                               mask.CLS_AGNOSTIC_MASK),
            maskiou_head=maskiou_head,
            assign_criterion=mask.ASSIGN_CRITERION,
            num_classes=heads.NUM_CLASSES,
            batch_size_per_image=heads.BATCH_SIZE_PER_IMAGE,
            positive_fraction=heads.POSITIVE_FRACTION,
            proposal_matcher=Matcher(heads.IOU_THRESHOLDS, heads.IOU_LABELS, allow_low_quality_matches=False),
            proposal_append_gt=heads.PROPOSAL_APPEND_GT,
            maskiou_loss_weight=cfg.MODEL.MASKIOU_LOSS_WEIGHT,
        )

    @property
    def mask_resolution(self) -> int:
        return 2 * self.pooler.resolution

    def pool(self, features: Dict[str, torch.Tensor], boxes: Sequence[torch.Tensor], image_sizes):
        """ROI features (n, C, R, R) of every image's boxes (unclipped XYXY input pixels, images
        concatenated) and their levels (n,)."""
        levels = torch.cat([assign_roi_levels(b, size, self.assign_criterion) for b, size in zip(boxes, image_sizes)])
        pooled = self.pooler([features[f] for f in self.in_features], boxes_with_batch_index(boxes), levels)
        return pooled, levels

    def mask_outputs(self, features, boxes: Sequence[torch.Tensor], classes: Sequence[torch.Tensor],
                     scores: Sequence[torch.Tensor], image_sizes) -> Dict[str, torch.Tensor]:
        """Inference for boxes, classes and scores per image. Returns, images concatenated:
        "mask_logits" (n, 2R, 2R) of each box's class, "mask_probs" (their sigmoid), "roi_levels"
        and, with a MaskIoU head, "maskiou" (n,) and "mask_scores" = scores * maskiou."""
        pooled, levels = self.pool(features, boxes, image_sizes)
        classes = torch.cat(list(classes))
        logits = _gather_class(self.mask_head(pooled), classes)
        out = {"mask_logits": logits, "mask_probs": logits.sigmoid(), "roi_levels": levels}
        if self.maskiou_head is not None:
            maskiou = _gather_class(self.maskiou_head(pooled, out["mask_probs"][:, None]), classes)
            out["maskiou"] = maskiou
            out["mask_scores"] = torch.cat(list(scores)) * maskiou
        return out

    def forward(self, images, features: Dict[str, torch.Tensor], proposals, targets=None):
        """detectron2's ROI-heads interface, for ``GeneralizedRCNN`` with FCOS as the proposal
        generator (centermask2's yaml files through detectron2's ``build_model``).

        ``proposals``: FCOS's output (:class:`~blendmask.modeling.fcos.FCOSOutput`). Training returns
        ``([], losses)``; inference ``(instances per image, {})`` with pred_boxes (input pixels),
        scores, pred_classes, pred_masks (n, 1, 2R, 2R) probabilities (pasted by detectron2's
        ``detector_postprocess``) and, with MaskIoU, mask_scores.
        """
        detections = proposals.detections
        boxes = [d["boxes"] for d in detections]
        if self.training:
            if targets is None:
                raise ValueError("CenterROIHeads in training mode needs the ground-truth instances")
            return [], self.losses(features, boxes, targets, images.image_sizes)
        out = self.mask_outputs(features, boxes, [d["classes"] for d in detections],
                                [d["scores"] for d in detections], images.image_sizes)
        counts = [len(b) for b in boxes]
        split = {k: out[k].split(counts) for k in ("mask_probs", "mask_scores") if k in out}
        results = []
        for i, (det, size) in enumerate(zip(detections, images.image_sizes)):
            inst = Instances(tuple(size))
            inst.pred_boxes = Boxes(det["boxes"])
            inst.scores = det["scores"]
            inst.pred_classes = det["classes"]
            inst.pred_masks = split["mask_probs"][i][:, None]
            if "mask_scores" in split:
                inst.mask_scores = split["mask_scores"][i]
            results.append(inst)
        return results, {}

    # --- training ------------------------------------------------------------------------------

    @torch.no_grad()
    def sample_proposals(self, proposals: Sequence[torch.Tensor], gt_instances: Sequence[Instances]):
        """Per image: proposals (+ ground-truth boxes), matched at IoU thresholds, subsampled (as
        detectron2's ROI heads do, with ``torch.randperm``); only the foreground is returned, as
        Instances with proposal_boxes, gt_classes, gt_boxes, gt_masks."""
        out = []
        for boxes, gt in zip(proposals, gt_instances):
            boxes = boxes.detach()
            if self.proposal_append_gt:
                boxes = torch.cat([boxes, gt.gt_boxes.tensor.to(boxes.dtype)])
            if len(gt):
                matched_idxs, matched_labels = self.proposal_matcher(pairwise_iou(gt.gt_boxes, Boxes(boxes)))
                gt_classes = gt.gt_classes[matched_idxs]
                gt_classes[matched_labels == 0] = self.num_classes
                gt_classes[matched_labels == -1] = -1
            else:
                matched_idxs = torch.zeros(len(boxes), dtype=torch.long, device=boxes.device)
                gt_classes = torch.full_like(matched_idxs, self.num_classes)
            fg, bg = subsample_labels(gt_classes, self.batch_size_per_image, self.positive_fraction, self.num_classes)
            sampled = torch.cat([fg, bg])
            keep = sampled[gt_classes[sampled] != self.num_classes]
            inst = Instances(gt.image_size)
            inst.proposal_boxes = Boxes(boxes[keep])
            inst.gt_classes = gt_classes[keep]
            inst.gt_boxes = gt.gt_boxes[matched_idxs[keep]]
            inst.gt_masks = gt.gt_masks[matched_idxs[keep]]
            out.append(inst)
        return out

    def losses(self, features, proposals: Sequence[torch.Tensor], gt_instances: Sequence[Instances], image_sizes):
        """"loss_mask" (BCE of the ground-truth class's logits, mean over foreground ROIs and pixels)
        and, with a MaskIoU head, "loss_maskiou" (float64: see :func:`maskiou_targets`)."""
        fg = self.sample_proposals(proposals, gt_instances)
        boxes = [f.proposal_boxes.tensor for f in fg]
        pooled, _ = self.pool(features, boxes, image_sizes)
        gt_classes = torch.cat([f.gt_classes for f in fg])
        logits = _gather_class(self.mask_head(pooled), gt_classes)
        if len(gt_classes) == 0:
            zero = logits.sum() * 0
            return {"loss_mask": zero, **({"loss_maskiou": zero} if self.maskiou_head is not None else {})}
        res = logits.shape[-1]
        targets = torch.cat([
            f.gt_masks.crop_and_resize(f.proposal_boxes.tensor, res).to(logits.device) for f in fg if len(f)
        ])
        losses = {"loss_mask": F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))}
        if self.maskiou_head is not None:
            pred = _gather_class(self.maskiou_head(pooled, logits.sigmoid()[:, None]), gt_classes)
            target = maskiou_targets(fg, logits.detach(), targets)
            positive = target > 0
            if positive.any():
                loss = 0.5 * (pred[positive].to(torch.float64) - target[positive]) ** 2
                losses["loss_maskiou"] = loss.sum() / positive.sum() * self.maskiou_loss_weight
            else:
                losses["loss_maskiou"] = pred.sum() * 0
        return losses


def _box_area_fraction(instances: Instances) -> torch.Tensor:
    """Per foreground ROI: the fraction of its ground-truth mask's area inside the proposal box,
    clamped to [1e-10, 1], float64.

    The box is taken at its integer-truncated size ``(int(x1 - x0), int(y1 - y0))`` from its
    (fractional) origin, as centermask2's targets do. Polygons (``PolygonMasks``) are shifted to the
    box origin and rasterised on that grid; bitmasks (``BitMasks``: RLE annotations or
    ``INPUT.MASK_FORMAT bitmask``) count the pixels whose centres fall inside it, the same area up
    to rasterisation.
    """
    masks = instances.gt_masks
    boxes = instances.proposal_boxes.tensor.tolist()
    if isinstance(masks, PolygonMasks):
        inside, full = _polygon_areas_in_boxes(masks, boxes)
    elif isinstance(masks, BitMasks):
        inside, full = _bitmask_areas_in_boxes(masks.tensor, boxes)
    else:
        raise TypeError(f"MaskIoU targets need PolygonMasks or BitMasks ground truth, got {type(masks).__name__}")
    fractions = [i / f if f > 0 else 0.0 for i, f in zip(inside, full)]
    return torch.tensor(fractions, dtype=torch.float64).clamp(0.0, 1.0).clamp(min=1e-10)


def _polygon_areas_in_boxes(masks: PolygonMasks, boxes: List[List[float]]):
    """(area inside each box on the box's integer grid, full polygon area) per instance."""
    from pycocotools import mask as mask_util

    inside = []
    for polygons, (x0, y0, x1, y1) in zip(masks.polygons, boxes):
        w, h = int(x1 - x0), int(y1 - y0)
        if h <= 0 or w <= 0:
            inside.append(0.0)
            continue
        shifted = []
        for p in polygons:
            p = np.asarray(p, dtype=np.float64).copy()
            p[0::2] -= x0
            p[1::2] -= y0
            shifted.append(p.tolist())
        inside.append(float(mask_util.area(mask_util.merge(mask_util.frPyObjects(shifted, h, w)))))
    return inside, masks.area().to(torch.float64).tolist()


def _bitmask_areas_in_boxes(masks: torch.Tensor, boxes: List[List[float]]):
    """(pixels of each (H, W) mask whose centre lies in its box's integer grid, all its pixels)."""
    height, width = masks.shape[1:]
    inside = []
    for mask, (x0, y0, x1, y1) in zip(masks, boxes):
        w, h = int(x1 - x0), int(y1 - y0)
        # pixel c's centre c + 0.5 in [x0, x0 + w)  <=>  c in [ceil(x0 - 0.5), ceil(x0 + w - 0.5))
        cols = (min(max(math.ceil(x0 - 0.5), 0), width), min(max(math.ceil(x0 + w - 0.5), 0), width))
        rows = (min(max(math.ceil(y0 - 0.5), 0), height), min(max(math.ceil(y0 + h - 0.5), 0), height))
        if h <= 0 or w <= 0:
            inside.append(0.0)
        else:
            inside.append(float(mask[rows[0]:rows[1], cols[0]:cols[1]].sum()))
    return inside, masks.flatten(1).sum(dim=1).to(torch.float64).tolist()


def maskiou_targets(fg_instances: Sequence[Instances], logits: torch.Tensor, gt_masks: torch.Tensor) -> torch.Tensor:
    """IoU between each predicted mask (logit > 0) and its full ground-truth mask, float64 (n,).

    The ground truth cropped to the box (``gt_masks``, (n, R, R)) misses the part of the object
    outside the box; its full size at the ROI's resolution is estimated as
    ``sum(gt_masks) / fraction of the ground-truth area inside the box`` (polygons or bitmasks).
    """
    fraction = torch.cat([_box_area_fraction(f) for f in fg_instances if len(f)]).to(logits.device)
    pred = logits > 0
    gt = gt_masks > 0.5 if gt_masks.dtype != torch.bool else gt_masks
    full = gt.sum(dim=(1, 2)).to(torch.float64) / fraction
    overlap = (pred & gt).sum(dim=(1, 2)).to(torch.float64)
    union = (pred.sum(dim=(1, 2)).to(torch.float64) + full - overlap).clamp(min=1.0)
    return overlap / union
