"""Load the AdelaiDet reference fixtures and compare our outputs with them.

The tolerances are those recommended by ../shared/reference/adelaidet/README.md, which measured
AdelaiDet against itself under 1 vs 2 threads and float64.
"""

import json
from dataclasses import dataclass

import numpy as np
import torch
from detectron2.config import get_cfg
from detectron2.structures import Boxes, Instances, PolygonMasks, pairwise_iou

from blendmask import add_blendmask_config
from conftest import reference_file

BOX_ATOL = 1e-2
SCORE_ATOL = 1e-4
TOP_FEAT_ATOL = 2e-3
BASES_ATOL = 1e-2
MASK_PROB_ATOL = 3e-3
LOSS_RTOL = 2e-5
MIN_MASK_IOU = 0.98
MAX_FLIPPED_FRACTION = 1e-3


@dataclass
class Fixture:
    config: str
    weights: str
    outputs: str
    losses: str = None


FIXTURES = {
    "tiny_blendmask": Fixture(
        "tiny_blendmask.yaml", "tiny_blendmask_adet.pth", "tiny_blendmask_adet_outputs.npz",
        "tiny_blendmask_adet_losses.json",
    ),
    "fcos_tiny": Fixture("fcos_tiny.yaml", "fcos_tiny.pth", "fcos_tiny_outputs.npz", "fcos_tiny_losses.json"),
    "rt_bnhead_tiny": Fixture("rt_bnhead_tiny.yaml", "rt_bnhead_tiny.pth", "rt_bnhead_tiny_outputs.npz"),
}


def fixture_cfg(name, opts=()):
    fixture = FIXTURES[name]
    cfg = add_blendmask_config(get_cfg())
    cfg.merge_from_file(str(reference_file(fixture.config)))
    cfg.MODEL.WEIGHTS = str(reference_file(fixture.weights))
    cfg.merge_from_list(list(opts))
    return cfg


def load_fixture_model(name, opts=()):
    """Our model built from the fixture's slim config (+ ``opts``), weights loaded through MODEL.WEIGHTS
    as a user would (``blendmask.build_model_and_load``)."""
    from blendmask import build_model_and_load

    return build_model_and_load(fixture_cfg(name, opts))


def run_with_intermediates(model, image_chw_u8, height, width):
    """Run one image; return final instances plus pre-postprocess detections and bases.

    ``captured["prepost"]``: [Instances] before rescaling, with pred_boxes, scores, pred_classes,
    fpn_levels, locations and, for BlendMask, top_feat (n, K*M*M) and pred_masks (n, 1, R, R)
    probabilities; ``captured["bases"]`` (1, K, H/4, W/4).
    """
    image = torch.from_numpy(image_chw_u8.astype(np.float32))
    inputs = [{"image": image, "height": height, "width": width}]
    captured = {}
    with torch.no_grad():
        result = model(inputs)[0]["instances"]
        images = model.preprocess_image(inputs)
        features = model.backbone(model.backbone_input(images.tensor))
        fcos = model.proposal_generator(images, features)
        det = model.add_masks(features, fcos)[0]
        captured["prepost"] = [prepost_instances(model, fcos, det, images.image_sizes[0])]
        if hasattr(model, "blender"):
            captured["bases"] = model.basis_module(features)[0]["bases"][0].clone()
    return result, captured


def prepost_instances(model, fcos, det, image_size):
    """One image's detections before rescaling (see ``run_with_intermediates``) from the FCOS output
    and the detection dict ``model.add_masks`` returned for it."""
    prepost = Instances(image_size)
    prepost.pred_boxes = Boxes(det["boxes"])
    prepost.scores = det["scores"]
    prepost.pred_classes = det["classes"]
    prepost.fpn_levels = det["levels"]
    strides = torch.tensor(model.proposal_generator.strides)[det["levels"]]
    widths = torch.tensor([t.shape[-1] for t in fcos.box_towers])[det["levels"]]
    prepost.locations = torch.stack(
        ((det["cells"] % widths) * strides + strides // 2, det["cells"] // widths * strides + strides // 2),
        dim=1).float()
    if hasattr(model, "blender"):
        prepost.top_feat = model.top_layer.at_locations(fcos.box_towers, fcos.detection_locations())
        prepost.pred_masks = det["mask_probs"][:, None]
    return prepost


def match_detections(ref_boxes, ref_scores, ref_classes, boxes, scores, classes):
    """Tie-tolerant matching: index into ours for each reference detection (-1 when unmatched).

    Rank order first; where scores are within SCORE_ATOL the order may permute, so otherwise
    unmatched detections are paired by (class, box IoU > 0.99).
    """
    n = len(ref_boxes)
    match = np.full(n, -1)
    used = set()
    for i in range(min(n, len(boxes))):
        if classes[i] == ref_classes[i] and np.abs(boxes[i] - ref_boxes[i]).max() <= BOX_ATOL:
            match[i] = i
            used.add(i)
    if (match >= 0).all():
        return match
    ious = pairwise_iou(Boxes(torch.as_tensor(ref_boxes)), Boxes(torch.as_tensor(boxes))).numpy()
    for i in np.nonzero(match < 0)[0]:
        for j in np.argsort(-ious[i]):
            if j not in used and ious[i, j] > 0.99 and classes[j] == ref_classes[i]:
                match[i] = j
                used.add(j)
                break
    return match


def fixture_training_inputs(losses_json):
    """Image 0 at its original size with the recorded ground truth (polygons), as AdelaiDet saw it."""
    from PIL import Image

    record = json.loads(reference_file(losses_json).read_text())
    rgb = np.asarray(Image.open(reference_file("tiny_blendmask_test_img0.png")).convert("RGB"))
    image = torch.from_numpy(np.ascontiguousarray(rgb[:, :, ::-1].transpose(2, 0, 1))).float()
    instances = Instances(tuple(image.shape[1:]))
    instances.gt_boxes = Boxes(torch.tensor(record["gt_boxes"], dtype=torch.float32))
    instances.gt_classes = torch.tensor(record["gt_classes"], dtype=torch.long)
    polygons = record["gt_polygons"]
    polygons = json.loads(polygons) if isinstance(polygons, str) else polygons
    instances.gt_masks = PolygonMasks([[np.asarray(p, dtype=np.float64)] for p in polygons])
    return {"image": image, "instances": instances}, record["losses"]
