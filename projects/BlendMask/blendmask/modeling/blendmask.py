"""The BlendMask meta-architecture: backbone -> FCOS + attentions -> bases -> blender."""

from typing import Dict, List

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY
from torch import nn

from .basis_module import build_basis_module, semantic_targets_from_instances
from .blender import Blender
from .layers import syncbn_to_bn_for_single_process
from .one_stage_detector import OneStageDetector


@META_ARCH_REGISTRY.register()
class BlendMask(OneStageDetector):
    """BlendMask (Chen et al., CVPR 2020).

    The FCOS box tower also predicts, through ``top_layer`` (a 3x3 conv with K*M*M outputs), an
    attention for every location; the basis module predicts K bases at stride 4; the blender
    merges the bases pooled in each box with that box's attention into an R x R mask.

    Inference returns [{"instances": Instances}] with pred_boxes, scores, pred_classes and
    pred_masks (n, H, W) bool at each input's height/width. Training returns the loss dict:
    loss_fcos_cls/loc/ctr, loss_mask and, with BASIS_MODULE.LOSS_ON, loss_basis_sem (its
    semantic targets are built from the instances' gt_masks, or read from "basis_sem").
    """

    @configurable
    def __init__(self, *, basis_module: nn.Module, blender: Blender, top_layer: nn.Module, **kwargs):
        super().__init__(**kwargs)
        self.basis_module = basis_module
        self.blender = blender
        self.top_layer = top_layer
        syncbn_to_bn_for_single_process(self)

    @classmethod
    def from_config(cls, cfg):
        basis, fcos = cfg.MODEL.BASIS_MODULE, cfg.MODEL.FCOS
        if basis.LOSS_ON and basis.NUM_CLASSES != fcos.NUM_CLASSES:
            raise ValueError(
                f"MODEL.BASIS_MODULE.NUM_CLASSES ({basis.NUM_CLASSES}) differs from MODEL.FCOS.NUM_CLASSES "
                f"({fcos.NUM_CLASSES}); set both at once with blendmask.data.set_num_classes(cfg, n)"
            )
        args = super().from_config(cfg)
        blender = Blender(cfg)
        top_layer = nn.Conv2d(cfg.MODEL.FPN.OUT_CHANNELS, blender.attn_len, kernel_size=3, padding=1)
        nn.init.normal_(top_layer.weight, std=0.01)
        nn.init.zeros_(top_layer.bias)
        args.update(
            basis_module=build_basis_module(cfg, args["backbone"].output_shape()),
            blender=blender,
            top_layer=top_layer,
        )
        return args

    def forward(self, batched_inputs: List[Dict]):
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(self.backbone_input(images))
        if not self.training:
            bases, _ = self.basis_module(features)
            detections, _ = self.proposal_generator(images, features, None, self.top_layer)
            detections = self.blender(bases["bases"], detections)
            return self.postprocess(detections, batched_inputs, images.image_sizes)

        gt_instances = self.gt_instances(batched_inputs)
        sem_targets = None
        if getattr(self.basis_module, "loss_on", False):
            sem_targets = self.semantic_targets(batched_inputs, gt_instances, images)
        bases, losses = self.basis_module(features, sem_targets)
        extras, fcos_losses = self.proposal_generator(images, features, gt_instances, self.top_layer)
        losses.update(fcos_losses)
        losses.update(
            self.blender(bases["bases"], extras["instances"], gt_instances, extras["loss_denorm"])
        )
        return losses

    def semantic_targets(self, batched_inputs, gt_instances, images) -> torch.Tensor:
        """(N, Hp, Wp) int64 class map: from "basis_sem" when given, else from the instances."""
        padded = tuple(images.tensor.shape[-2:])
        if "basis_sem" in batched_inputs[0]:
            sem = torch.zeros((len(batched_inputs), *padded), dtype=torch.long, device=self.device)
            for i, x in enumerate(batched_inputs):
                h, w = x["basis_sem"].shape
                sem[i, :h, :w] = x["basis_sem"].to(self.device)
            return sem
        return semantic_targets_from_instances(gt_instances, images.image_sizes, padded, self.device)
