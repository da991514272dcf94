"""FCOS (Tian et al., ICCV 2019) as a detectron2 proposal generator."""

from typing import Dict, List, Optional

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec, cat
from detectron2.modeling import PROPOSAL_GENERATOR_REGISTRY, ROI_HEADS_REGISTRY
from detectron2.structures import Instances
from torch import nn

from ...inference import Locations
from .head import FCOSHead
from .inference import detect_single_image
from .losses import fcos_losses
from .outputs import FCOSOutput, Positives
from .targets import (
    assign_targets_single_image,
    compute_ctrness_targets,
    compute_locations,
    size_ranges_from_sizes_of_interest,
)


def _flatten_levels(per_level: List[torch.Tensor]) -> torch.Tensor:
    """[(N, D, H_l, W_l)] -> (L*N*H*W..., D), ordered level, image, row, column."""
    return cat([x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]) for x in per_level], dim=0)


@PROPOSAL_GENERATOR_REGISTRY.register()
class FCOS(nn.Module):
    """Fully convolutional one-stage detector: head, targets, losses and inference.

    ``forward(images, features, gt_instances=None, nms_backend="torchvision")`` returns an
    :class:`~blendmask.modeling.fcos.outputs.FCOSOutput` in both modes: the box towers, and the
    detections (inference) or the positives, losses and loss normaliser (training). ``images`` is
    not read (it may be None); ``nms_backend`` is "onnx" when exporting to ONNX.
    """

    @configurable
    def __init__(
        self,
        *,
        head: FCOSHead,
        in_features: List[str],
        strides: List[int],
        num_classes: int,
        sizes_of_interest: List[float],
        center_sample: bool = True,
        pos_radius: float = 1.5,
        focal_loss_alpha: float = 0.25,
        focal_loss_gamma: float = 2.0,
        loc_loss_type: str = "giou",
        loss_weight_cls: float = 1.0,
        thresh_with_ctr: bool = False,
        inference_thresh: Dict[bool, float],
        pre_nms_topk: Dict[bool, int],
        post_nms_topk: Dict[bool, int],
        nms_thresh: float = 0.6,
        yield_proposals: bool = False,
    ):
        """``inference_thresh``/``pre_nms_topk``/``post_nms_topk`` map ``training`` -> value.

        ``yield_proposals`` (MODEL.FCOS.YIELD_PROPOSAL): in training, also run detection with the
        training thresholds and top-k and return it in ``FCOSOutput.detections`` (proposals for a
        second stage such as CenterMask's ROI heads; the boxes keep their gradients).
        """
        super().__init__()
        if len(strides) != len(in_features):
            raise ValueError(f"FPN_STRIDES {strides} and IN_FEATURES {in_features} differ in length")
        if len(sizes_of_interest) != len(in_features) - 1:
            raise ValueError(
                f"SIZES_OF_INTEREST needs {len(in_features) - 1} boundaries for "
                f"{len(in_features)} levels, got {list(sizes_of_interest)}"
            )
        self.fcos_head = head
        self.in_features = list(in_features)
        self.strides = list(strides)
        self.num_classes = num_classes
        self.size_ranges = size_ranges_from_sizes_of_interest(sizes_of_interest)
        self.center_sample = center_sample
        self.pos_radius = pos_radius
        self.focal_loss_alpha = focal_loss_alpha
        self.focal_loss_gamma = focal_loss_gamma
        self.loc_loss_type = loc_loss_type
        self.loss_weight_cls = loss_weight_cls
        self.thresh_with_ctr = thresh_with_ctr
        self.inference_thresh = inference_thresh
        self.pre_nms_topk = pre_nms_topk
        self.post_nms_topk = post_nms_topk
        self.nms_thresh = nms_thresh
        self.yield_proposals = yield_proposals

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        fcos = cfg.MODEL.FCOS
        missing = [f for f in fcos.IN_FEATURES if f not in input_shape]
        if missing:
            raise ValueError(
                f"MODEL.FCOS.IN_FEATURES {missing} are not backbone outputs {sorted(input_shape)}"
                " (does MODEL.FCOS.TOP_LEVELS match IN_FEATURES?)"
            )
        if fcos.BOX_QUALITY != "ctrness":
            raise ValueError(f"MODEL.FCOS.BOX_QUALITY {fcos.BOX_QUALITY!r}: only 'ctrness' is supported")
        if fcos.LOSS_NORMALIZER_CLS != "fg":
            raise ValueError(
                f"MODEL.FCOS.LOSS_NORMALIZER_CLS {fcos.LOSS_NORMALIZER_CLS!r}: only 'fg' is supported"
            )
        shapes = [input_shape[f] for f in fcos.IN_FEATURES]
        return dict(
            head=FCOSHead(cfg, shapes),
            in_features=fcos.IN_FEATURES,
            strides=fcos.FPN_STRIDES,
            num_classes=fcos.NUM_CLASSES,
            sizes_of_interest=fcos.SIZES_OF_INTEREST,
            center_sample=fcos.CENTER_SAMPLE,
            pos_radius=fcos.POS_RADIUS,
            focal_loss_alpha=fcos.LOSS_ALPHA,
            focal_loss_gamma=fcos.LOSS_GAMMA,
            loc_loss_type=fcos.LOC_LOSS_TYPE,
            loss_weight_cls=fcos.LOSS_WEIGHT_CLS,
            thresh_with_ctr=fcos.THRESH_WITH_CTR,
            inference_thresh={True: fcos.INFERENCE_TH_TRAIN, False: fcos.INFERENCE_TH_TEST},
            pre_nms_topk={True: fcos.PRE_NMS_TOPK_TRAIN, False: fcos.PRE_NMS_TOPK_TEST},
            post_nms_topk={True: fcos.POST_NMS_TOPK_TRAIN, False: fcos.POST_NMS_TOPK_TEST},
            nms_thresh=fcos.NMS_TH,
            yield_proposals=fcos.YIELD_PROPOSAL or _roi_heads_take_proposals(cfg),
        )

    def forward(
        self,
        images,
        features: Dict[str, torch.Tensor],
        gt_instances: Optional[List[Instances]] = None,
        nms_backend: str = "torchvision",
    ) -> FCOSOutput:
        features = [features[f] for f in self.in_features]
        head = self.fcos_head(features)
        output = FCOSOutput(box_towers=head["box_towers"])
        if self.training:
            if gt_instances is None:
                raise ValueError("FCOS in training mode needs gt_instances")
            output.positives, output.losses, output.loss_denorm = self.losses(
                compute_locations(features, self.strides), head, gt_instances)
            if self.yield_proposals:
                output.detections = self.detect(head, nms_backend)
        else:
            output.detections = self.detect(head, nms_backend)
        return output

    def detect(self, head: Dict[str, List[torch.Tensor]], nms_backend: str = "torchvision"):
        """Head outputs of a batch -> one detections dict per image (see ``detect_single_image``)."""
        return [
            detect_single_image(
                [x[i] for x in head["logits"]], [x[i] for x in head["reg"]], [x[i] for x in head["ctrness"]],
                strides=self.strides,
                thresh=self.inference_thresh[self.training],
                pre_nms_topk=self.pre_nms_topk[self.training],
                post_nms_topk=self.post_nms_topk[self.training],
                nms_thresh=self.nms_thresh,
                thresh_with_ctr=self.thresh_with_ctr,
                num_classes=self.num_classes,
                nms_backend=nms_backend,
            )
            for i in range(head["logits"][0].shape[0])
        ]

    def get_ground_truth(self, locations: List[torch.Tensor], gt_instances: List[Instances]):
        """Targets for all locations, flattened in the order level, image, location.

        Returns a dict of tensors: labels (P,), reg_targets (P, 4) in stride units, gt_inds (P,)
        into the batch's concatenated ground truth, fpn_levels, im_inds and cell_inds (P,) (the
        location's level, image and row-major index within its level).
        """
        num_per_level = [len(loc) for loc in locations]
        all_locations = torch.cat(locations)
        device = all_locations.device
        level_of = torch.cat([
            torch.full((n,), level, dtype=torch.long, device=device)
            for level, n in enumerate(num_per_level)
        ])
        strides = torch.tensor(self.strides, dtype=torch.float32, device=device)[level_of]
        size_ranges = torch.tensor(self.size_ranges, dtype=torch.float32, device=device)[level_of]
        cell_of = torch.cat([torch.arange(n, device=device) for n in num_per_level])

        per_image, offset = [], 0
        for instances in gt_instances:
            boxes = instances.gt_boxes.tensor
            targets = assign_targets_single_image(
                all_locations, strides, size_ranges, boxes, instances.gt_classes,
                self.num_classes, self.center_sample, self.pos_radius,
            )
            if len(boxes):
                targets["gt_inds"] = targets["gt_inds"] + offset
            offset += len(boxes)
            targets["reg_targets"] = targets["reg_targets"] / strides[:, None]
            targets["fpn_levels"] = level_of
            targets["cell_inds"] = cell_of
            targets["im_inds"] = torch.full_like(level_of, len(per_image))
            per_image.append(targets)

        # image-major -> level-major, the order of the flattened predictions
        flat = {}
        for key in per_image[0]:
            split = [t[key].split(num_per_level) for t in per_image]
            flat[key] = torch.cat([split[i][lvl] for lvl in range(len(locations))
                                   for i in range(len(per_image))])
        return flat

    def losses(self, locations, head, gt_instances):
        """(positives, losses, loss_denorm) of a training batch."""
        targets = self.get_ground_truth(locations, gt_instances)
        logits = _flatten_levels(head["logits"])
        reg_pred = _flatten_levels(head["reg"])
        ctrness_pred = _flatten_levels(head["ctrness"]).reshape(-1)
        labels = targets["labels"]
        pos_inds = torch.nonzero(labels != self.num_classes).squeeze(1)
        reg_targets = targets["reg_targets"][pos_inds]
        ctrness_targets = compute_ctrness_targets(reg_targets)
        losses, loss_denorm = fcos_losses(
            logits, reg_pred[pos_inds], ctrness_pred[pos_inds], labels, reg_targets,
            ctrness_targets,
            num_classes=self.num_classes, alpha=self.focal_loss_alpha,
            gamma=self.focal_loss_gamma, loc_loss_type=self.loc_loss_type,
            cls_weight=self.loss_weight_cls,
        )
        positives = Positives(
            locations=Locations(targets["fpn_levels"][pos_inds], targets["im_inds"][pos_inds],
                                targets["cell_inds"][pos_inds]),
            gt_inds=targets["gt_inds"][pos_inds],
            gt_ctrs=ctrness_targets,
            labels=labels[pos_inds],
        )
        return positives, losses, loss_denorm


def _roi_heads_take_proposals(cfg) -> bool:
    """Whether detectron2's ``GeneralizedRCNN`` will feed FCOS's training detections to ROI heads
    that declare ``takes_fcos_proposals`` (CenterMask's, built from centermask2's yaml files)."""
    if cfg.MODEL.META_ARCHITECTURE != "GeneralizedRCNN":
        return False
    try:
        heads = ROI_HEADS_REGISTRY.get(cfg.MODEL.ROI_HEADS.NAME)
    except KeyError:
        return False
    return bool(getattr(heads, "takes_fcos_proposals", False))
