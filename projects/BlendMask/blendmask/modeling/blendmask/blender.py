"""The blender: combine RoI-pooled bases with per-detection attentions into R x R masks."""

from typing import Dict, List

import torch
from detectron2.config import configurable
from detectron2.layers import cat
from detectron2.modeling.poolers import ROIPooler
from detectron2.structures import Boxes, Instances
from torch import nn
from torch.nn import functional as F

from ..fcos.outputs import Positives


def blend(rois: torch.Tensor, attns: torch.Tensor, attn_size: int, interp: str = "bilinear"):
    """Mask logits from pooled bases and attentions.

    rois (N, K, R, R); attns (N, K*M*M) with channel k*M*M + y*M + x -> logits (N, R, R):
    attentions are resized M -> R, softmaxed over K, multiplied with the bases, summed over K.
    """
    n, k, r_h, r_w = rois.shape
    attns = attns.reshape(n, k, attn_size, attn_size)
    kwargs = {"align_corners": False} if interp in ("bilinear", "bicubic") else {}
    attns = F.interpolate(attns, size=(r_h, r_w), mode=interp, **kwargs).softmax(dim=1)
    return (rois * attns).sum(dim=1)


class Blender(nn.Module):
    """Pool bases inside boxes and blend them with attentions into R x R masks.

    ``mask_probs(bases, boxes, attns)`` (inference, eager and export alike) -> (n, R, R)
    probabilities; ``losses(bases, attns, positives, gt_instances, loss_denorm)`` (training) ->
    {"loss_mask"}.
    """

    @configurable
    def __init__(
        self,
        *,
        num_bases: int,
        attn_size: int,
        resolution: int,
        pooler_scales=(0.25,),
        pooler_type: str = "ROIAlignV2",
        sampling_ratio: int = 1,
        top_interp: str = "bilinear",
        loss_weight: float = 1.0,
    ):
        super().__init__()
        self.num_bases = num_bases
        self.attn_size = attn_size
        self.resolution = resolution
        self.top_interp = top_interp
        self.loss_weight = loss_weight
        self.pooler = ROIPooler(
            output_size=resolution,
            scales=tuple(pooler_scales),
            sampling_ratio=sampling_ratio,
            pooler_type=pooler_type,
            canonical_level=2,
        )

    @classmethod
    def from_config(cls, cfg):
        bm = cfg.MODEL.BLENDMASK
        return dict(
            num_bases=cfg.MODEL.BASIS_MODULE.NUM_BASES,
            attn_size=bm.ATTN_SIZE,
            resolution=bm.BOTTOM_RESOLUTION,
            pooler_scales=bm.POOLER_SCALES,
            pooler_type=bm.POOLER_TYPE,
            sampling_ratio=bm.POOLER_SAMPLING_RATIO,
            top_interp=bm.TOP_INTERP,
            loss_weight=bm.INSTANCE_LOSS_WEIGHT,
        )

    def mask_probs(self, bases: List[torch.Tensor], boxes: List[torch.Tensor], attns: torch.Tensor) -> torch.Tensor:
        """(n, R, R) mask probabilities for the boxes of every image (unclipped XYXY, input pixels,
        images concatenated in order) and their attentions (n, K*M*M)."""
        if len(self.pooler.level_poolers) == 1:
            # the RoIAlign itself, with a trace-safe batch-index column
            rois = torch.cat([torch.cat([torch.full_like(b[:, :1], i), b], dim=1) for i, b in enumerate(boxes)])
            pooled = self.pooler.level_poolers[0](bases[0], rois)
        else:
            pooled = self.pooler(bases, [Boxes(b) for b in boxes])
        return blend(pooled, attns, self.attn_size, self.top_interp).sigmoid()

    def losses(
        self, bases, attns: torch.Tensor, positives: Positives, gt_instances: List[Instances], loss_denorm: float
    ) -> Dict[str, torch.Tensor]:
        """BCE per positive location against its ground-truth mask, weighted by centerness.

        ``attns`` (P, K*M*M) are the positives' attentions; ``positives.gt_inds`` (P,) index the
        concatenated ``gt_instances``, ``positives.gt_ctrs`` (P,) weight each term. The sum is
        divided by ``loss_denorm``.
        """
        if len(positives) == 0:
            zero = bases[0].sum() * 0 + attns.sum() * 0
            return {"loss_mask": zero}
        gt_inds = positives.gt_inds
        rois = self.pooler(bases, [g.gt_boxes for g in gt_instances])[gt_inds]
        logits = blend(rois, attns, self.attn_size, self.top_interp)
        targets = cat([
            g.gt_masks.crop_and_resize(g.gt_boxes.tensor, self.resolution).to(logits.device)
            for g in gt_instances if len(g) > 0
        ])[gt_inds]
        per_pixel = F.binary_cross_entropy_with_logits(
            logits.flatten(1), targets.flatten(1).to(logits.dtype), reduction="none"
        )
        loss = (per_pixel.mean(dim=1) * positives.gt_ctrs).sum() / loss_denorm
        return {"loss_mask": loss * self.loss_weight}
