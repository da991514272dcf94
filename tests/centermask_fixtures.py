"""Load the centermask2 reference fixture (../shared/reference/centermask2) and run our CenterMask
with the intermediate values it records.

Tolerances are the ones ../shared/reference/centermask2/README.md recommends (section 6), from
centermask2 re-run against itself with 1 thread and in float64; they are tighter than the issue's.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.structures import Boxes, Instances, PolygonMasks

from conftest import REFERENCE_DIR

CENTERMASK_DIR = Path(os.environ.get("BLENDMASK_CENTERMASK_REFERENCE_DIR", REFERENCE_DIR.parent / "centermask2"))

BOX_ATOL = 1e-2  # px
SCORE_ATOL = 1e-4  # scores and mask_scores
MASKIOU_ATOL = 2e-4
LOGIT_ATOL, LOGIT_RTOL = 1e-2, 1e-3  # |d| <= atol + rtol * |ref| (logits reach |92|)
ATTENTION_ATOL = 1e-3
CROP_ATOL = 2e-3  # debug-crop tensors (values up to ~16)
LOSS_RTOL = 2e-5
MIN_MASK_IOU = 0.98
MAX_FLIPPED_FRACTION = 1e-3  # of the reference foreground pixels, per image

TINY_SPEC = "cm_tiny_vovnet_spec.json"


def centermask_file(name: str) -> Path:
    """Path of a file in ../shared/reference/centermask2; skips the test when it is absent."""
    path = CENTERMASK_DIR / name
    if not path.exists():
        pytest.skip(f"centermask2 reference fixture {path} is absent (needs ../shared beside the repo)")
    return path


def register_tiny_spec():
    """Register the fixture's narrowed VoVNet body, as a user adds a spec of their own."""
    from blendmask import register_vovnet_spec

    for name, spec in json.loads(centermask_file(TINY_SPEC).read_text()).items():
        register_vovnet_spec(name, spec)


def load_tiny_model(opts=(), eval_mode=True):
    """CenterMask from the slim centermask2 yaml + spec + weights, as a user loads it."""
    from blendmask import build_model_and_load, load_config

    register_tiny_spec()
    cfg = load_config(centermask_file("cm_tiny.yaml"),
                      ["MODEL.WEIGHTS", str(centermask_file("cm_tiny.pth")), *opts])
    return build_model_and_load(cfg, eval_mode=eval_mode)


def run_with_intermediates(model, image_chw_u8, height, width):
    """One image through the model: (final instances, dict of pre-postprocess values).

    The dict holds "boxes" (unclipped input pixels), "scores", "classes", "levels", "locations"
    and the ROI heads' "mask_logits", "mask_probs", "roi_levels", "maskiou", "mask_scores",
    "attention" (n, 1, R, R), plus "features" (the FPN outputs) and "image_size".
    """
    image = torch.from_numpy(np.ascontiguousarray(image_chw_u8).astype(np.float32))
    inputs = [{"image": image, "height": height, "width": width}]
    attention = model.roi_heads.mask_head.spatialAtt
    with torch.no_grad():
        result = model(inputs)[0]["instances"]
        images = model.preprocess_image(inputs)
        features = model.backbone(model.backbone_input(images.tensor))
        fcos = model.proposal_generator(images, features)
        det = fcos.detections[0]
        attention.keep_attention = True
        try:
            heads = model.roi_heads.mask_outputs(features, [det["boxes"]], [det["classes"]], [det["scores"]],
                                                 images.image_sizes)
        finally:
            attention.keep_attention = False
        heads["attention"] = attention.last_attention
        attention.last_attention = None
    strides = torch.tensor(model.proposal_generator.strides)[det["levels"]]
    widths = torch.tensor([t.shape[-1] for t in fcos.box_towers])[det["levels"]]
    locations = torch.stack(((det["cells"] % widths) * strides + strides // 2,
                             det["cells"] // widths * strides + strides // 2), dim=1).float()
    captured = dict(det, locations=locations, features=features, image_size=images.image_sizes[0], **heads)
    return result, captured


def match_detections(ref_boxes, ref_classes, boxes, classes):
    """Index into ours for each reference detection (-1 when unmatched): by rank, else (scores
    within SCORE_ATOL may swap) by class and box IoU > 0.99 (adelaidet_fixtures' matcher)."""
    from adelaidet_fixtures import match_detections as match_by_rank_then_iou

    return match_by_rank_then_iou(ref_boxes, None, ref_classes, boxes, None, classes)


def training_inputs():
    """Image 0 at its original size with the fixture's ground truth (polygons); and the record."""
    from PIL import Image

    record = json.loads(centermask_file("cm_tiny_losses.json").read_text())
    png = CENTERMASK_DIR.parent / "adelaidet" / "tiny_blendmask_test_img0.png"
    if not png.exists():
        pytest.skip(f"the fixture's test image {png} is absent")
    rgb = np.asarray(Image.open(png).convert("RGB"))
    image = torch.from_numpy(np.ascontiguousarray(rgb[:, :, ::-1].transpose(2, 0, 1))).float()
    instances = Instances(tuple(image.shape[1:]))
    instances.gt_boxes = Boxes(torch.tensor(record["gt_boxes"], dtype=torch.float32))
    instances.gt_classes = torch.tensor(record["gt_classes"], dtype=torch.long)
    instances.gt_masks = PolygonMasks([[np.asarray(p, dtype=np.float64)] for p in record["gt_polygons"]])
    return {"image": image, "instances": instances}, record
