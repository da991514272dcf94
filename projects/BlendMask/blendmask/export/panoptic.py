"""Panoptic BlendMask's exported outputs -> panoptic map: detectron2's combine, run on the host.

The exported graph ends at the instances and the semantic logits (``sem_seg``). The combine step
(detectron2's ``combine_semantic_and_instance_outputs``) stays outside it: it walks the instances in
score order, stops at the confidence threshold and skips an instance by an overlap test, a loop of
data-dependent decisions that tracing would freeze to the sample's and that ONNX has no operator for;
written again as tensor operations it would be a second implementation to keep equal to detectron2's.
It costs a few milliseconds per image on the host (one pass over the masks).
"""

from typing import Sequence

import torch
from detectron2.structures import Boxes, Instances

from ..modeling.blendmask.panoptic import PanopticCombine


def panoptic_from_outputs(outputs: Sequence[torch.Tensor], output_names: Sequence[str], combine: PanopticCombine):
    """(panoptic_seg (H, W) int32, segments_info) from one image's exported outputs, named by
    ``output_names`` (``ExportableModel.output_names``); ``combine``: the model's
    ``panoptic_combine`` or ``PanopticCombine.from_config(cfg)`` (``MODEL.PANOPTIC_FPN.COMBINE.*``).
    The same result as the eager model's "panoptic_seg" on the same instances and logits."""
    named = dict(zip(output_names, outputs))
    if "sem_seg" not in named:
        raise ValueError(
            "the outputs have no 'sem_seg': export a panoptic BlendMask (MODEL.PANOPTIC_FPN.COMBINE.ENABLED)"
        )
    sem_seg = torch.as_tensor(named["sem_seg"])
    masks = torch.as_tensor(named["masks"])
    if masks.shape[1:] != sem_seg.shape[1:]:
        raise ValueError(f"masks {tuple(masks.shape)} are not pasted at the output size {tuple(sem_seg.shape[1:])}: "
                         "export with paste_masks=True")
    instances = Instances(tuple(sem_seg.shape[1:]))
    instances.pred_boxes = Boxes(torch.as_tensor(named["boxes"]))
    instances.scores = torch.as_tensor(named["scores"])
    instances.pred_classes = torch.as_tensor(named["classes"])
    instances.pred_masks = masks
    return combine(instances, sem_seg)
