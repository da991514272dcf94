"""The BlendMask meta-architecture: backbone -> FCOS + attentions -> bases -> blender."""

from dataclasses import asdict
from typing import Dict, List, Optional

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import ImageList
from torch import nn

from ...inference import EAGER, InferenceBackend
from ..contract import ModelOutputs
from ..fcos import FCOSOutput
from ..layers import syncbn_to_bn_for_single_process
from ..one_stage_detector import OneStageDetector
from .attention import AttentionConv
from .basis_module import build_basis_module
from .blender import Blender
from .panoptic import PanopticCombine, build_panoptic_module, semantic_logits, semantic_targets
from .semantic_targets import semantic_targets_from_instances


@META_ARCH_REGISTRY.register()
class BlendMask(OneStageDetector):
    """BlendMask (Chen et al., CVPR 2020).

    ``top_layer`` (:class:`AttentionConv`, a 3x3 conv with K*M*M outputs on FCOS's box tower)
    predicts an attention for each location FCOS keeps; the basis module predicts K bases at
    stride 4; the blender merges the bases pooled in each box with that box's attention into an
    R x R mask.

    Inference returns [{"instances": Instances}] with pred_boxes, scores, pred_classes and
    pred_masks (n, H, W) bool at each input's height/width. Training returns the loss dict:
    loss_fcos_cls/loc/ctr, loss_mask and, with BASIS_MODULE.LOSS_ON, loss_basis_sem (its
    semantic targets are built from the instances' gt_masks, or read from "basis_sem").

    Panoptic BlendMask (AdelaiDet's, ``MODEL.PANOPTIC_FPN.COMBINE.ENABLED`` with P2 in the FPN): a
    ``panoptic_module`` (detectron2's semantic FPN head, see ``panoptic.py``) adds "sem_seg" (C, H, W)
    logits and "panoptic_seg" (detectron2's combine) to each output, and loss_sem_seg to training
    (which then needs "sem_seg" in the inputs).
    """

    mask_on = True

    @configurable
    def __init__(self, *, basis_module: nn.Module, blender: Blender, top_layer: AttentionConv,
                 panoptic_module: Optional[nn.Module] = None, panoptic_combine: Optional[PanopticCombine] = None,
                 **kwargs):
        super().__init__(**kwargs)
        self.basis_module = basis_module
        self.blender = blender
        self.top_layer = top_layer
        self.panoptic_module = panoptic_module
        self.panoptic_combine = panoptic_combine or PanopticCombine()
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
        args.update(
            basis_module=build_basis_module(cfg, args["backbone"].output_shape()),
            blender=Blender(cfg),
            top_layer=AttentionConv(
                cfg.MODEL.FPN.OUT_CHANNELS, basis.NUM_BASES, cfg.MODEL.BLENDMASK.ATTN_SIZE,
                sparse=cfg.MODEL.BLENDMASK.SPARSE_ATTENTION,
            ),
            panoptic_module=build_panoptic_module(cfg, args["backbone"].output_shape()),
            panoptic_combine=PanopticCombine.from_config(cfg),
        )
        return args

    @property
    def mask_resolution(self) -> int:
        return self.blender.resolution

    @property
    def outputs(self) -> ModelOutputs:
        channels = self.panoptic_module.predictor.out_channels if self.panoptic_module is not None else 0
        return ModelOutputs("box", self.mask_resolution, sem_seg_channels=channels)

    def postprocessing_spec(self) -> dict:
        spec = super().postprocessing_spec()
        if self.panoptic_module is not None:  # host-side, see export/panoptic.py
            spec["panoptic_combine"] = asdict(self.panoptic_combine)
        return spec

    def add_masks(self, features: Dict[str, torch.Tensor], fcos: FCOSOutput) -> List[Dict[str, torch.Tensor]]:
        bases = self.basis_module(features)[0]["bases"]
        attns = self.top_layer.at_locations(fcos.box_towers, fcos.detection_locations())
        probs = self.blender.mask_probs(bases, [d["boxes"] for d in fcos.detections], attns)
        if len(fcos.detections) == 1:  # a single image (always, when exported): no data-dependent split
            return [dict(fcos.detections[0], mask_probs=probs)]
        counts = [len(d["boxes"]) for d in fcos.detections]
        return [dict(det, mask_probs=p) for det, p in zip(fcos.detections, probs.split(counts))]

    def forward(self, batched_inputs: List[Dict]):
        if self.panoptic_module is None or self.training:
            return super().forward(batched_inputs)
        # panoptic inference: OneStageDetector.forward's steps, with "sem_seg" and "panoptic_seg" added
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(self.backbone_input(images.tensor))
        output_sizes = [(x.get("height", h), x.get("width", w))
                        for x, (h, w) in zip(batched_inputs, images.image_sizes)]
        results = self.inference(features, images.image_sizes, output_sizes, self.eager_backend(images.tensor.device))
        outputs = []
        for result, size in zip(results, output_sizes):
            instances = self.to_instances(result, size)
            panoptic = self.panoptic_combine(instances, result["sem_seg"])
            outputs.append({"instances": instances, "sem_seg": result["sem_seg"], "panoptic_seg": panoptic})
        return outputs

    def inference(self, features: Dict[str, torch.Tensor], image_sizes, output_sizes,
                  backend: InferenceBackend = EAGER) -> List[Dict[str, torch.Tensor]]:
        """``OneStageDetector.inference``; panoptic models add "sem_seg" (C, H, W) logits at the output size."""
        results = super().inference(features, image_sizes, output_sizes, backend)
        if self.panoptic_module is not None:
            for result, logits in zip(results, semantic_logits(self.panoptic_module, features, image_sizes,
                                                               output_sizes)):
                result["sem_seg"] = logits
        return results

    def losses(self, batched_inputs, images: ImageList, features) -> Dict[str, torch.Tensor]:
        gt_instances = self.gt_instances(batched_inputs)
        panoptic_targets = None
        if self.panoptic_module is not None:
            panoptic_targets = semantic_targets(batched_inputs, images, self.panoptic_module, self.device)
        sem_targets = None
        if getattr(self.basis_module, "loss_on", False):
            sem_targets = self.semantic_targets(batched_inputs, gt_instances, images)
        bases, losses = self.basis_module(features, sem_targets)
        fcos = self.proposal_generator(images, features, gt_instances)
        losses.update(fcos.losses)
        attns = self.top_layer.at_locations(fcos.box_towers, fcos.positives.locations)
        losses.update(self.blender.losses(bases["bases"], attns, fcos.positives, gt_instances, fcos.loss_denorm))
        if self.panoptic_module is not None:
            losses.update(self.panoptic_module(features, panoptic_targets)[1])
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
