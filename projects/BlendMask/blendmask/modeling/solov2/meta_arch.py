"""The SOLOv2 meta-architecture (AdelaiDet's name and module names): backbone -> instance head
(category grid + dynamic kernels) and mask feature branch -> matrix NMS -> masks resized."""

from dataclasses import asdict
from typing import Dict, List, Sequence

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.structures import BitMasks, ImageList, PolygonMasks

from ...inference import EAGER, InferenceBackend, boxes_from_masks, resize_mask_probs
from ..contract import ModelOutputs
from ..one_stage_detector import OneStageDetector
from .heads import SOLOv2InsHead, instance_features
from .inference import SOLOv2TestParams, solov2_inference_single
from .losses import solov2_losses
from .mask_branch import SOLOv2MaskHead
from .targets import solov2_targets_single

# which resize of the soft masks each paste backend goes with (eager: F.interpolate)
_RESIZE_FOR_PASTE = {"lazy": "interpolate", "detectron2": "interpolate", "grid": "matrix", "separable": "matrix"}


@META_ARCH_REGISTRY.register()
class SOLOv2(OneStageDetector):
    """SOLOv2 (Wang et al., NeurIPS 2020), equal to AdelaiDet's.

    Inference returns [{"instances": Instances}] with scores, pred_classes, pred_masks (n, H, W)
    bool and pred_boxes: the tight box of each mask (AdelaiDet's are all zero; set
    MODEL.SOLOV2.BOXES_FROM_MASKS False for zeros). Training returns loss_ins and loss_cate.
    """

    mask_on = True
    num_classes_key = "MODEL.SOLOV2.NUM_CLASSES"
    class_layers = (("ins_head.cate_pred.weight", 0),)

    @configurable
    def __init__(self, *, ins_head: SOLOv2InsHead, mask_head: SOLOv2MaskHead, instance_in_features: Sequence[str],
                 mask_in_features: Sequence[str], instance_strides: Sequence[int],
                 scale_ranges: Sequence[Sequence[float]], sigma: float, num_classes: int,
                 test_params: SOLOv2TestParams = None, loss_weights: Dict[str, float] = None,
                 boxes_from_masks: bool = True, target_options: Dict = None, **kwargs):
        super().__init__(proposal_generator=None, **kwargs)
        self.ins_head = ins_head
        self.mask_head = mask_head
        self.instance_in_features = list(instance_in_features)
        self.mask_in_features = list(mask_in_features)
        self.instance_strides = list(instance_strides)
        self.scale_ranges = [tuple(r) for r in scale_ranges]
        self.sigma = sigma
        self._num_classes = num_classes
        self.test_params = test_params or SOLOv2TestParams()
        self.loss_weights = dict(loss_weights or {})
        self.boxes_from_masks = boxes_from_masks
        # solov2_targets_single's one_sample_per_cell / min_mask_pixels (AdelaiDet's by default)
        self.target_options = dict(target_options or {})

    @classmethod
    def from_config(cls, cfg):
        s = cfg.MODEL.SOLOV2
        if s.USE_DCN_IN_INSTANCE:
            raise NotImplementedError("MODEL.SOLOV2.USE_DCN_IN_INSTANCE True is not supported (AdelaiDet's "
                                      "released SOLOv2 models do not use it)")
        if s.NMS_TYPE != "matrix":
            raise NotImplementedError(f"MODEL.SOLOV2.NMS_TYPE {s.NMS_TYPE!r}: only 'matrix' is supported")
        if not s.LOSS.FOCAL_USE_SIGMOID:
            raise NotImplementedError("MODEL.SOLOV2.LOSS.FOCAL_USE_SIGMOID False is not supported")
        if len(s.INSTANCE_IN_FEATURES) != 5 or len(s.NUM_GRIDS) != 5:
            raise ValueError("SOLOv2 reads five instance levels (p2..p6): INSTANCE_IN_FEATURES and NUM_GRIDS "
                             f"must have 5 entries, got {list(s.INSTANCE_IN_FEATURES)} and {list(s.NUM_GRIDS)}")
        return dict(
            backbone=build_backbone(cfg),
            ins_head=SOLOv2InsHead(
                s.INSTANCE_IN_CHANNELS, s.INSTANCE_CHANNELS, s.NUM_CLASSES, s.NUM_KERNELS, s.NUM_GRIDS,
                num_convs=s.NUM_INSTANCE_CONVS, norm=s.NORM, prior_prob=s.PRIOR_PROB,
                use_coord_conv=s.USE_COORD_CONV, kernel_pred_size=s.KERNEL_PRED_KERNEL_SIZE,
            ),
            mask_head=SOLOv2MaskHead(s.MASK_IN_CHANNELS, s.MASK_CHANNELS, s.NUM_MASKS,
                                     num_levels=len(s.MASK_IN_FEATURES), norm=s.NORM,
                                     tower_norm=s.MASK_TOWER_NORM, tower_bias=s.MASK_TOWER_BIAS),
            instance_in_features=s.INSTANCE_IN_FEATURES,
            mask_in_features=s.MASK_IN_FEATURES,
            instance_strides=s.FPN_INSTANCE_STRIDES,
            scale_ranges=s.FPN_SCALE_RANGES,
            sigma=s.SIGMA,
            num_classes=s.NUM_CLASSES,
            test_params=SOLOv2TestParams(
                score_thr=s.SCORE_THR, mask_thr=s.MASK_THR, nms_pre=s.NMS_PRE, update_thr=s.UPDATE_THR,
                max_per_img=s.MAX_PER_IMG, nms_kernel=s.NMS_KERNEL, nms_sigma=float(s.NMS_SIGMA),
            ),
            loss_weights=dict(focal_alpha=s.LOSS.FOCAL_ALPHA, focal_gamma=s.LOSS.FOCAL_GAMMA,
                              focal_weight=s.LOSS.FOCAL_WEIGHT, dice_weight=s.LOSS.DICE_WEIGHT),
            boxes_from_masks=s.BOXES_FROM_MASKS,
            target_options=dict(one_sample_per_cell=s.ONE_SAMPLE_PER_CELL, min_mask_pixels=s.MIN_MASK_PIXELS),
            pixel_mean=cfg.MODEL.PIXEL_MEAN,
            pixel_std=cfg.MODEL.PIXEL_STD,
            channels_last_on_cpu=cfg.TEST.CHANNELS_LAST_ON_CPU,
            precision=cfg.TEST.PRECISION,
        )

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def mask_resolution(self) -> int:
        return 0  # "mask_probs" cover the whole padded input at 1/4 resolution, not a fixed R x R

    @property
    def outputs(self) -> ModelOutputs:
        return ModelOutputs("image")

    def postprocessing_spec(self) -> dict:
        return dict(asdict(self.test_params), boxes_from_masks=self.boxes_from_masks)

    def heads(self, features: Dict[str, torch.Tensor]):
        """(category logits per level (N, C, S, S), kernels per level (N, E, S, S), mask feature
        (N, E, Hf, Wf))."""
        cate_logits, kernels = self.ins_head(instance_features([features[f] for f in self.instance_in_features]))
        mask_feat = self.mask_head([features[f] for f in self.mask_in_features])
        return cate_logits, kernels, mask_feat

    def inference(self, features: Dict[str, torch.Tensor], image_sizes: Sequence, output_sizes: Sequence,
                  backend: InferenceBackend = EAGER) -> List[Dict[str, torch.Tensor]]:
        """Per image: "boxes" (n, 4) output pixels (the masks' tight boxes, or zeros), "scores",
        "classes", "levels", "cells", "mask_probs" (n, Hf, Wf) and, unless ``backend.paste`` is
        None, "masks" (n, H, W) bool at the output size."""
        outputs = self.heads(features)
        results = []
        for i, (in_size, out_size) in enumerate(zip(image_sizes, output_sizes)):
            det = self.detect_single(outputs, i)
            boxes = det["mask_probs"].new_zeros((det["mask_probs"].shape[0], 4))
            if backend.paste is not None:
                det["masks"] = resize_mask_probs(det["mask_probs"], in_size, out_size, self.test_params.mask_thr,
                                                 _RESIZE_FOR_PASTE[backend.paste])
                if self.boxes_from_masks:
                    boxes = boxes_from_masks(det["masks"])
            det["boxes"] = boxes
            results.append(det)
        return results

    def detect_single(self, outputs, i: int) -> Dict[str, torch.Tensor]:
        """Image ``i``'s detections from :meth:`heads`' ``outputs`` (before the mask resize)."""
        cate_logits, kernels, mask_feat = outputs
        return solov2_inference_single([x[i] for x in cate_logits], [k[i] for k in kernels], mask_feat[i],
                                       self.instance_strides, self.test_params)

    def losses(self, batched_inputs, images: ImageList, features) -> Dict[str, torch.Tensor]:
        gt_instances = self.gt_instances(batched_inputs)
        outputs = self.heads(features)
        targets = self.targets(gt_instances, images.image_sizes, tuple(outputs[2].shape[-2:]))
        return self.head_losses(outputs, targets)

    def targets(self, gt_instances, image_sizes, feat_size):
        """Per image, per level :class:`LevelTargets` (``feat_size``: the mask feature's (Hf, Wf))."""
        return [
            solov2_targets_single(inst.gt_boxes.tensor, inst.gt_classes, self._bitmasks(inst, size), feat_size,
                                  self.ins_head.num_grids, self.scale_ranges, self.sigma, self._num_classes,
                                  **self.target_options)
            for inst, size in zip(gt_instances, image_sizes)
        ]

    def head_losses(self, outputs, targets) -> Dict[str, torch.Tensor]:
        cate_logits, kernels, mask_feat = outputs
        return solov2_losses(cate_logits, kernels, mask_feat, targets, self.num_classes, **self.loss_weights)

    @staticmethod
    def _bitmasks(instances, image_size) -> torch.Tensor:
        """(n, h, w) bool ground-truth masks at the unpadded input size (polygons are rasterised)."""
        masks = instances.gt_masks
        if isinstance(masks, PolygonMasks):
            masks = BitMasks.from_polygon_masks(masks, *image_size)
        return masks.tensor.to(torch.bool)
