"""Every reference fixture run twice by our models, in float32 and in bfloat16 (TEST.PRECISION),
and the two compared (blendmask.utils.agreement). Used by tests/test_precision_agreement.py (which
asserts the tolerances below) and tools/compare_precision.py (which prints the table).

The fixtures' images are real photos at 800 px (../shared/reference/*); the models are the tiny
networks of the equivalence tests with their reference weights. AggMask*'s fixture is head-only:
its FPN features go through ``heads`` + ``detect_single`` under the same autocast that
``TEST.PRECISION`` enters around a model's forward.

What the comparison shows: the fixtures' networks have random (untrained) weights, and such
networks amplify any rounding layer after layer (the relative difference of the tiny ResNet's
features grows from 0.3% after the stem to 44% after res5). So a control is run beside: the same
model in float32 with its weights rounded to bfloat16 and no reduced-precision arithmetic at all.
bf16 inference is held to the control's agreement, not to absolute limits that only a trained
network meets (docs/precision.md has both rows for every fixture):

- matched share of the float32 detections at most ``MATCHED_MARGIN`` (0.15) below the control's
  (measured: at worst 0.06 below, panoptic BlendMask; several fixtures match more than the control);
- mean mask IoU of the matched detections at most ``MASK_IOU_MARGIN`` (0.15) below the control's
  (measured: at worst 0.08 below, tiny BlendMask and AggMask* main);
- scores and boxes come back float32.

The margins leave room for other CPUs, whose oneDNN kernels round differently and, through the same
amplification, move these figures by several hundredths.
"""

import numpy as np
import torch

from blendmask.engine.precision import set_inference_precision
from blendmask.utils.agreement import combine, compare_instances

MATCHED_MARGIN = 0.15
MASK_IOU_MARGIN = 0.15


def _images(npz):
    out, i = [], 0
    while f"img{i}_input_bgr_chw_u8" in npz:
        h, w = (int(v) for v in npz[f"img{i}_orig_hw"])
        out.append((npz[f"img{i}_input_bgr_chw_u8"], h, w))
        i += 1
    return out


def _adelaidet(name):
    def load():
        from adelaidet_fixtures import FIXTURES, load_fixture_model
        from conftest import reference_file

        return load_fixture_model(name), _images(np.load(reference_file(FIXTURES[name].outputs)))
    return load


def _panoptic():
    from panoptic_fixtures import load_fixture_model, reference_outputs

    return load_fixture_model(), _images(reference_outputs())


def _centermask():
    from centermask_fixtures import centermask_file, load_tiny_model

    return load_tiny_model(), _images(np.load(centermask_file("cm_tiny_outputs.npz")))


def _solov2():
    from solov2_fixtures import load_fixture_model, reference_outputs

    return load_fixture_model(), _images(reference_outputs())


# fixture -> (model, its loader)
MODEL_FIXTURES = {
    "fcos_tiny": ("FCOS", _adelaidet("fcos_tiny")),
    "tiny_blendmask": ("BlendMask", _adelaidet("tiny_blendmask")),
    "rt_bnhead_tiny": ("BlendMask RT", _adelaidet("rt_bnhead_tiny")),
    "pan_tiny": ("Panoptic BlendMask", _panoptic),
    "cm_tiny": ("CenterMask V-19", _centermask),
    "solov2_tiny": ("SOLOv2", _solov2),
}
AGGMASK_FIXTURES = {"aggmask_main": "main", "aggmask_halfgrid": "halfgrid"}
ALL_FIXTURES = list(MODEL_FIXTURES) + list(AGGMASK_FIXTURES)


def _predict(model, images):
    out = []
    with torch.no_grad():
        for chw, h, w in images:
            image = torch.from_numpy(np.ascontiguousarray(chw).astype(np.float32))
            result = model([{"image": image, "height": h, "width": w}])[0]
            out.append(result["instances"].to("cpu"))
    return out


def round_weights_to_bf16(model):
    """A copy of ``model`` whose floating parameters and buffers are rounded to bfloat16 (and kept
    float32): the control. It runs in float32 and differs from ``model`` only by the rounding of its
    weights, no reduced-precision arithmetic at all."""
    import copy

    rounded = copy.deepcopy(model)
    with torch.no_grad():
        for t in list(rounded.parameters()) + list(rounded.buffers()):
            if t.is_floating_point():
                t.copy_(t.to(torch.bfloat16).float())
    return rounded


def run_model_fixture(name, precision="bf16", images=None, control=False):
    """(model name, [(fp32 Instances, ``precision`` Instances[, weight-rounded control]) per image],
    image sizes); ``images``: indices of the fixture images to run (default all)."""
    model_name, load = MODEL_FIXTURES[name]
    model, all_images = load()
    chosen = [all_images[i] for i in images] if images is not None else all_images
    rounded = round_weights_to_bf16(model) if control else None  # before any forward caches folded weights
    set_inference_precision(model, "fp32")
    runs = [_predict(model, chosen)]
    set_inference_precision(model, precision)
    runs.append(_predict(model, chosen))
    if control:
        set_inference_precision(rounded, "fp32")
        runs.append(_predict(rounded, chosen))
    return model_name, list(zip(*runs)), [(h, w) for _, h, w in chosen]


def run_aggmask_fixture(name, precision="bf16", images=None, control=False):
    """AggMask*'s head-only fixture, image 0: float32 against ``precision`` autocast."""
    from aggmask_fixtures import fixture_json, load_fixture_model, run_inference
    from detectron2.structures import Boxes, Instances

    from blendmask.engine.precision import autocast, resolve_precision
    from blendmask.inference import boxes_from_masks

    variant = AGGMASK_FIXTURES[name]
    model = load_fixture_model(variant)
    rounded = round_weights_to_bf16(model) if control else None
    out_size = tuple(fixture_json()["img_metas"][0]["ori_shape"][:2])
    dtype = resolve_precision(precision, "cpu")

    def run(model, dtype):
        with autocast(dtype, "cpu"):
            _, _, det, masks = run_inference(model)
        inst = Instances(out_size)
        inst.scores = det["scores"].float()
        inst.pred_classes = det["classes"]
        inst.pred_masks = masks
        inst.pred_boxes = Boxes(boxes_from_masks(masks).float())
        return inst

    runs = [run(model, torch.float32), run(model, dtype)] + ([run(rounded, torch.float32)] if control else [])
    return f"AggMask* ({variant})", [tuple(runs)], [out_size]


def run_fixture(name, precision="bf16", images=None, control=False):
    run = run_aggmask_fixture if name in AGGMASK_FIXTURES else run_model_fixture
    return run(name, precision, images=images, control=control)


def measure(name, precision="bf16", images=None):
    """(model name, the reduced-precision row, the control row, problems found): rows are
    :func:`blendmask.utils.agreement.combine` of the images' agreements with float32."""
    model_name, runs, sizes = run_fixture(name, precision, images=images, control=True)
    ours = combine([compare_instances(ref, other) for ref, other, _ in runs])
    control = combine([compare_instances(ref, rounded) for ref, _, rounded in runs])
    problems = []
    for k, (ref, other, _) in enumerate(runs):
        for inst in (ref, other):
            if inst.scores.dtype != torch.float32 or inst.pred_boxes.tensor.dtype != torch.float32:
                problems.append(f"image {k}: scores/boxes came back {inst.scores.dtype}/{inst.pred_boxes.tensor.dtype}")
    if ours["n_ref"] and ours["matched"] / ours["n_ref"] < control["matched"] / control["n_ref"] - MATCHED_MARGIN:
        problems.append(f"matched {ours['matched']}/{ours['n_ref']}, "
                        f"the control {control['matched']}/{control['n_ref']}")
    if ours["mean_mask_iou"] < control["mean_mask_iou"] - MASK_IOU_MARGIN:
        problems.append(f"mean mask IoU {ours['mean_mask_iou']:.3f}, the control {control['mean_mask_iou']:.3f}")
    return model_name, ours, control, problems
