"""Per-pixel class maps painted from instance masks: the targets of the basis module's auxiliary loss."""

from typing import List

import torch
from detectron2.structures import BitMasks, Instances, PolygonMasks, polygons_to_bitmask


def semantic_targets_from_instances(
    instances: List[Instances], image_sizes: List[tuple], padded_size: tuple, device
) -> torch.Tensor:
    """Per-pixel class map (N, Hp, Wp) int64 built from each image's instance masks.

    0 is background and class+1 marks an instance's pixels, painted in ground-truth order (a
    later instance overwrites an earlier one); outside each image (padding) stays 0. Polygons are
    rasterised like pycocotools does for COCO masks.
    """
    out = torch.zeros((len(instances), *padded_size), dtype=torch.long, device=device)
    for i, (inst, (h, w)) in enumerate(zip(instances, image_sizes)):
        if len(inst) == 0:
            continue
        if not inst.has("gt_masks"):
            raise ValueError("MODEL.BASIS_MODULE.LOSS_ON needs gt_masks in the training instances")
        masks = inst.gt_masks
        if isinstance(masks, PolygonMasks):
            bitmaps = torch.stack([
                torch.from_numpy(polygons_to_bitmask(polys, h, w)) for polys in masks.polygons
            ]).to(device)
        elif isinstance(masks, BitMasks):
            bitmaps = masks.tensor[:, :h, :w].to(device)
        else:
            bitmaps = torch.as_tensor(masks, device=device)[:, :h, :w]
        sem = out[i, :h, :w]
        for bitmap, cls in zip(bitmaps.bool(), inst.gt_classes.tolist()):
            sem[bitmap] = cls + 1
    return out
