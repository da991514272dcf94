"""A model defined outside the package through the model contract alone (modeling/contract.py):
FCOS (the FCOS-based layer, ``OneStageDetector``) plus a toy class-agnostic mask head on P3
(ROIAlign, one 1x1 convolution, 8x8 masks). Importing this module registers ``ToyMaskDetector``;
tests/matrix_models.py adds it to the models x paths matrix, so training, evaluation, the demo,
export and two processes serve it with no change to shared code."""

from typing import Dict, List

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY
from torch import nn
from torch.nn import functional as F
from torchvision.ops import roi_align

from blendmask.modeling import OneStageDetector
from blendmask.modeling.contract import ModelOutputs

RESOLUTION = 8


@META_ARCH_REGISTRY.register()
class ToyMaskDetector(OneStageDetector):
    mask_on = True
    class_layers = OneStageDetector.class_layers  # the mask head is class-agnostic

    @configurable
    def __init__(self, *, mask_channels: int, **kwargs):
        super().__init__(**kwargs)
        self.mask_head = nn.Conv2d(mask_channels, 1, 1)
        self.proposal_generator.yield_proposals = False

    @classmethod
    def from_config(cls, cfg):
        return dict(super().from_config(cfg), mask_channels=cfg.MODEL.FPN.OUT_CHANNELS)

    @property
    def mask_resolution(self) -> int:
        return RESOLUTION

    @property
    def outputs(self) -> ModelOutputs:
        return ModelOutputs("box", RESOLUTION)

    def _mask_logits(self, features, boxes: List[torch.Tensor]) -> torch.Tensor:
        rois = torch.cat([torch.cat([torch.full_like(b[:, :1], i), b], dim=1) for i, b in enumerate(boxes)])
        pooled = roi_align(features["p3"], rois, RESOLUTION, spatial_scale=1 / 8, sampling_ratio=2, aligned=True)
        return self.mask_head(pooled)[:, 0]

    def add_masks(self, features: Dict[str, torch.Tensor], fcos) -> List[Dict[str, torch.Tensor]]:
        dets = fcos.detections
        probs = self._mask_logits(features, [d["boxes"] for d in dets]).sigmoid()
        if len(dets) == 1:
            return [dict(dets[0], mask_probs=probs)]
        return [dict(d, mask_probs=p) for d, p in zip(dets, probs.split([len(d["boxes"]) for d in dets]))]

    def losses(self, batched_inputs, images, features):
        gt = self.gt_instances(batched_inputs)
        losses = dict(self.proposal_generator(images, features, gt).losses)
        boxes = [g.gt_boxes.tensor for g in gt]
        logits = self._mask_logits(features, boxes)
        targets = torch.cat([g.gt_masks.crop_and_resize(g.gt_boxes.tensor, RESOLUTION).to(logits.dtype)
                             for g in gt if len(g)]) if len(logits) else logits
        losses["loss_toy_mask"] = F.binary_cross_entropy_with_logits(logits, targets) if len(logits) \
            else logits.sum() * 0
        return losses
