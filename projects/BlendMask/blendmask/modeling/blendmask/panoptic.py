"""Panoptic BlendMask's parts beside the instance model: detectron2's semantic FPN head and combine step.

AdelaiDet's panoptic BlendMask is BlendMask with ``MODEL.PANOPTIC_FPN.COMBINE.ENABLED``: a
``panoptic_module`` (detectron2's ``SemSegFPNHead``, built from ``MODEL.SEM_SEG_HEAD.*``: all thing
classes as label 0, stuff classes 1..) reads FPN levels P2-P5, and detectron2's
``combine_semantic_and_instance_outputs`` merges the instances with the semantic argmax. Both are
reused from detectron2 here, not written again; this module only decides when the head exists,
prepares its targets and scales its logits as detectron2's ``PanopticFPN`` does.
"""

import logging
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling.meta_arch.panoptic_fpn import combine_semantic_and_instance_outputs
from detectron2.modeling.meta_arch.semantic_seg import build_sem_seg_head
from detectron2.modeling.postprocessing import sem_seg_postprocess
from detectron2.structures import ImageList, Instances
from torch import nn

logger = logging.getLogger(__name__)


def build_panoptic_module(cfg, input_shape: Dict[str, ShapeSpec]) -> Optional[nn.Module]:
    """detectron2's semantic segmentation head (``MODEL.SEM_SEG_HEAD.NAME``) when
    ``MODEL.PANOPTIC_FPN.COMBINE.ENABLED`` is set and the backbone has every level of
    ``MODEL.SEM_SEG_HEAD.IN_FEATURES``; None otherwise (instance-only BlendMask).

    detectron2's default for COMBINE.ENABLED is True, and every instance BlendMask config sets it
    False; a config that leaves it at True without the P2 level (a hand-made instance config) stays
    instance-only rather than growing a head on the wrong levels.
    """
    if not cfg.MODEL.PANOPTIC_FPN.COMBINE.ENABLED:
        return None
    wanted = list(cfg.MODEL.SEM_SEG_HEAD.IN_FEATURES)
    missing = [f for f in wanted if f not in input_shape]
    if missing or not wanted:
        logger.info(
            "MODEL.PANOPTIC_FPN.COMBINE.ENABLED is set but the backbone has no %s (MODEL.SEM_SEG_HEAD.IN_FEATURES): "
            "instance-only BlendMask. Panoptic BlendMask needs res2 in MODEL.RESNETS.OUT_FEATURES and "
            "MODEL.FPN.IN_FEATURES (configs/BlendMask/Panoptic).", missing or "IN_FEATURES",
        )
        return None
    return build_sem_seg_head(cfg, input_shape)


@dataclass(frozen=True)
class PanopticCombine:
    """``MODEL.PANOPTIC_FPN.COMBINE.*``: detectron2's combine of instances and the semantic argmax."""

    overlap_thresh: float = 0.5
    stuff_area_limit: int = 4096
    instances_confidence_thresh: float = 0.5

    @classmethod
    def from_config(cls, cfg) -> "PanopticCombine":
        combine = cfg.MODEL.PANOPTIC_FPN.COMBINE
        return cls(float(combine.OVERLAP_THRESH), int(combine.STUFF_AREA_LIMIT),
                   float(combine.INSTANCES_CONFIDENCE_THRESH))

    def __call__(self, instances: Instances, sem_seg: torch.Tensor):
        """(panoptic_seg (H, W) int32, segments_info) from ``instances`` (pred_masks at the output
        size, scores, pred_classes) and the (C, H, W) semantic logits at the same size."""
        # positional: the parameter names changed between detectron2 releases, the order did not
        return combine_semantic_and_instance_outputs(
            instances, sem_seg.argmax(dim=0), self.overlap_thresh, self.stuff_area_limit,
            self.instances_confidence_thresh,
        )


def semantic_logits(
    head: nn.Module, features: Dict[str, torch.Tensor], image_sizes: Sequence, output_sizes: Sequence
) -> List[torch.Tensor]:
    """Per image, the head's (C, H, W) logits at its output size, as detectron2's ``PanopticFPN``
    gives them: upsampled to the padded input, cropped to the image, resized bilinearly to the output
    size (``sem_seg_postprocess``). No softmax."""
    logits = head(features)[0]
    return [
        sem_seg_postprocess(x, size, out_size[0], out_size[1])
        for x, size, out_size in zip(logits, image_sizes, output_sizes)
    ]


def semantic_targets(batched_inputs: List[Dict], images: ImageList, head: nn.Module, device) -> torch.Tensor:
    """(N, Hp, Wp) int64: each input's "sem_seg" (H, W) padded with the head's ``ignore_value`` to the
    batch's size; labels must lie in [0, C) of the head's C classes, or be ``ignore_value``."""
    ignore_value, num_classes = head.ignore_value, head.predictor.out_channels
    if any("sem_seg" not in x for x in batched_inputs):
        raise ValueError(
            "panoptic BlendMask training needs 'sem_seg' (H, W) in every input dict: a dataset with "
            "sem_seg_file_name (e.g. registered by register_coco_panoptic_separated)"
        )
    padded = tuple(images.tensor.shape[-2:])
    targets = torch.full((len(batched_inputs), *padded), ignore_value, dtype=torch.long, device=device)
    for i, (x, size) in enumerate(zip(batched_inputs, images.image_sizes)):
        sem = torch.as_tensor(x["sem_seg"])
        if sem.dim() != 2 or tuple(sem.shape) != tuple(int(s) for s in size):
            raise ValueError(
                f"'sem_seg' must be an (H, W) map of the image's size {tuple(size)}, got {tuple(sem.shape)}"
            )
        sem = sem.to(device=device, dtype=torch.long)
        bad = ((sem < 0) | (sem >= num_classes)) & (sem != ignore_value)
        if bad.any():
            raise ValueError(
                f"'sem_seg' labels must lie in [0, {num_classes}) (MODEL.SEM_SEG_HEAD.NUM_CLASSES) or be "
                f"{ignore_value} (IGNORE_VALUE), got {sorted(set(sem[bad].tolist()))[:10]} in "
                f"{x.get('file_name', 'an input')}"
            )
        targets[i, : sem.shape[0], : sem.shape[1]] = sem
    return targets
