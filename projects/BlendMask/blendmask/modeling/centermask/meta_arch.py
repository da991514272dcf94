"""The CenterMask meta-architecture: backbone -> FCOS -> ROIAlign -> SAG-Mask (+ MaskIoU)."""

from typing import Dict, List, Sequence

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import ImageList, Instances

from ...inference import EAGER, InferenceBackend, postprocess_detections
from ..contract import ModelOutputs
from ..fcos import FCOSOutput
from ..one_stage_detector import OneStageDetector
from .roi_heads import CenterROIHeads


@META_ARCH_REGISTRY.register()
class CenterMask(OneStageDetector):
    """CenterMask / CenterMask-Lite (Lee & Park, CVPR 2020) on this package's FCOS.

    FCOS's detections are final (boxes, scores, classes); ``roi_heads`` pools each unclipped box
    from the FPN level chosen by ``MODEL.ROI_MASK_HEAD.ASSIGN_CRITERION``, predicts its class's
    mask with SAG-Mask and, with ``MODEL.MASKIOU_ON``, the mask's IoU: ``mask_scores = scores *
    maskiou`` (used for segm AP; ``scores`` stays FCOS's). centermask2's yaml files
    (``GeneralizedRCNN`` + ``CenterROIHeads``) build this model through ``blendmask.load_config`` /
    ``build_model_and_load``; module names match centermask2's checkpoints.

    Training runs FCOS (losses and, with the training thresholds, proposals), appends the
    ground-truth boxes, samples as detectron2's ROI heads do, and adds loss_mask and loss_maskiou.
    """

    mask_on = True
    class_layers = OneStageDetector.class_layers + (("roi_heads.mask_head.predictor.weight", 0),)

    @configurable
    def __init__(self, *, roi_heads: CenterROIHeads, **kwargs):
        super().__init__(**kwargs)
        self.roi_heads = roi_heads
        self.proposal_generator.yield_proposals = True  # FCOS's training detections are the proposals

    @classmethod
    def from_config(cls, cfg):
        if not cfg.MODEL.MASK_ON:
            raise ValueError("CenterMask needs MODEL.MASK_ON True (use OneStageDetector for FCOS alone)")
        if cfg.MODEL.FCOS.NUM_CLASSES != cfg.MODEL.ROI_HEADS.NUM_CLASSES:
            raise ValueError(
                f"MODEL.FCOS.NUM_CLASSES ({cfg.MODEL.FCOS.NUM_CLASSES}) differs from MODEL.ROI_HEADS.NUM_CLASSES "
                f"({cfg.MODEL.ROI_HEADS.NUM_CLASSES}); set both at once with blendmask.data.set_num_classes(cfg, n)"
            )
        args = super().from_config(cfg)
        args["roi_heads"] = CenterROIHeads(cfg, args["backbone"].output_shape())
        return args

    @property
    def mask_resolution(self) -> int:
        return self.roi_heads.mask_resolution

    @property
    def maskiou_on(self) -> bool:
        return self.roi_heads.maskiou_head is not None

    @property
    def outputs(self) -> ModelOutputs:
        return ModelOutputs("box", self.mask_resolution, mask_scores=self.maskiou_on)

    def inference(self, features: Dict[str, torch.Tensor], image_sizes: Sequence, output_sizes: Sequence,
                  backend: InferenceBackend = EAGER) -> List[Dict[str, torch.Tensor]]:
        """As :meth:`OneStageDetector.inference`; each image's dict also has "mask_scores" (with
        MaskIoU). The ROI level rule needs the input sizes, hence this override."""
        fcos = self.proposal_generator(None, features, nms_backend=backend.nms)
        detections = self.add_masks(features, fcos, image_sizes)
        return [
            postprocess_detections(det, in_size, out_size, paste=backend.paste)
            for det, in_size, out_size in zip(detections, image_sizes, output_sizes)
        ]

    def add_masks(self, features: Dict[str, torch.Tensor], fcos: FCOSOutput,
                  image_sizes: Sequence = None) -> List[Dict[str, torch.Tensor]]:
        """Adds "mask_probs" (n, 2R, 2R) and, with MaskIoU, "mask_scores" to each image's detections.
        ``image_sizes``: each image's (h, w) before padding (needed by the "ratio" level rule)."""
        dets = fcos.detections
        if image_sizes is None:
            if self.roi_heads.assign_criterion == "ratio":
                raise ValueError("CenterMask.add_masks needs image_sizes with ASSIGN_CRITERION 'ratio'")
            image_sizes = [(0, 0)] * len(dets)
        out = self.roi_heads.mask_outputs(features, [d["boxes"] for d in dets], [d["classes"] for d in dets],
                                          [d["scores"] for d in dets], image_sizes)
        keys = ["mask_probs"] + (["mask_scores"] if "mask_scores" in out else [])
        if len(dets) == 1:  # a single image (always, when exported): no data-dependent split
            return [dict(dets[0], **{k: out[k] for k in keys})]
        counts = [len(d["boxes"]) for d in dets]
        split = {k: out[k].split(counts) for k in keys}
        return [dict(det, **{k: split[k][i] for k in keys}) for i, det in enumerate(dets)]

    def losses(self, batched_inputs, images: ImageList, features) -> Dict[str, torch.Tensor]:
        gt_instances = self.gt_instances(batched_inputs)
        fcos = self.proposal_generator(images, features, gt_instances)
        losses = self.roi_heads.losses(features, [d["boxes"] for d in fcos.detections], gt_instances,
                                       images.image_sizes)
        losses.update(fcos.losses)
        return losses

    @staticmethod
    def to_instances(result: Dict[str, torch.Tensor], output_size) -> Instances:
        instances = OneStageDetector.to_instances(result, output_size)
        if "mask_scores" in result:
            instances.mask_scores = result["mask_scores"]
        return instances


