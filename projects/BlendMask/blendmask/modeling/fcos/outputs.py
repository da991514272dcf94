"""What FCOS returns, in training and at inference: one type.

Heads that build on FCOS (BlendMask's attention now; ROI heads later) read the box tower's
features at FCOS's chosen locations: at inference its kept detections
(:meth:`FCOSOutput.detection_locations`), in training its positive locations
(``FCOSOutput.positives.locations``). Both are :class:`~blendmask.inference.Locations`, which
``blendmask.inference.conv_at_locations`` / ``gather_patches`` evaluate on ``box_towers``.
"""

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch

from ...inference import Locations


@dataclass
class Positives:
    """Training locations assigned to a ground-truth box, in the order level, image, cell.

    ``gt_inds`` index the batch's ground truth with images concatenated; ``gt_ctrs`` are the
    centerness targets (the mask loss weights); ``labels`` the assigned classes.
    """

    locations: Locations
    gt_inds: torch.Tensor
    gt_ctrs: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.gt_inds)


@dataclass
class FCOSOutput:
    """``box_towers``: the box tower's output per level (N, C, H_l, W_l).

    ``detections`` (inference): one dict per image with "boxes" (n, 4) unclipped XYXY in input
    pixels, "scores" sqrt(cls * ctr), "classes", "levels" and "cells" (where each was predicted),
    sorted by decreasing score. ``positives``, ``losses`` and ``loss_denorm`` (the mean sum of
    centerness targets, which box and mask losses divide by) are set in training.
    """

    box_towers: List[torch.Tensor]
    detections: List[Dict[str, torch.Tensor]] = field(default_factory=list)
    positives: Optional[Positives] = None
    losses: Dict[str, torch.Tensor] = field(default_factory=dict)
    loss_denorm: Optional[float] = None

    def __iter__(self):
        """Unpacks as ``(self, losses)``: the ``(proposals, losses)`` pair detectron2's meta-
        architectures (``GeneralizedRCNN``) expect from a proposal generator."""
        return iter((self, self.losses))

    def detection_locations(self) -> Locations:
        """Where the detections of all images were predicted, images concatenated in order."""
        levels = torch.cat([d["levels"] for d in self.detections])
        cells = torch.cat([d["cells"] for d in self.detections])
        images = torch.cat([torch.full_like(d["cells"], i) for i, d in enumerate(self.detections)])
        return Locations(levels, images, cells)
