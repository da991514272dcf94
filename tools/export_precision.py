#!/usr/bin/env python
"""Measure reduced-precision exports against the float32 eager model: speed and agreement.

    # speed: BlendMask R_50, random weights, 100 forced detections, one 800x1333 image
    python tools/export_precision.py --runs 5

    # agreement: a trained model on the first images of a dataset (calibrated on another split)
    python tools/export_precision.py --config-file OUT/config.yaml --weights OUT/model_final.pth \\
        --dataset shapes_val --limit 100 --calibration-dataset shapes_train

Each variant is exported from the same model and run on the same images:

- ``eager fp32``: the model itself (the reference of every agreement row);
- ``eager bf16``: ``TEST.PRECISION bf16`` (autocast, float32 decoding), the bar a reduced export is held to;
- ``eager fp32, weights rounded (control)``: float32 with the weights rounded to bfloat16, the
  control of docs/precision.md (agreement only: how much bf16 weights alone move the detections);
- ``torchscript fp32``: ``blendmask.export.export_torchscript``, the default export;
- ``torchscript bf16``: the same module traced under bfloat16 autocast (``blendmask-export --precision bf16``);
- ``onnxruntime fp32``: ``blendmask.export.export_onnx``;
- ``onnxruntime int8 backbone`` / ``int8 network``: the float32 ONNX file with onnxruntime's static
  quantization (``blendmask.export.quantize``: QDQ, per-channel int8 weights, uint8 activations
  calibrated on ``--calibration-dataset``) of the backbone + FPN, or of every convolution (backbone,
  FCOS head, basis module); the post-processing stays float32 (``blendmask-export --precision int8
  [--int8-scope backbone]``);
- ``onnxruntime int8 dynamic backbone`` (only when named in ``--variants``): onnxruntime's dynamic
  quantization of the backbone's convolutions (ConvInteger), slower than float32.

Agreement (``blendmask.export.agreement_row``): detections matched one to one with the float32
eager model's (same class, box IoU >= 0.5, greedy by score), the largest score and box differences
over matched ones, mean and min mask IoU; then the float32 detections scoring at least
``--min-score`` and how many of them found a partner; with ``--evaluate``, COCO bbox and segm AP.
Latency: median (min) of ``--runs`` calls of each variant on the first image, the variants taking
turns in each round after two warm-up calls. ``--tiny`` runs a narrow R_50 on a small image (the test suite's path).
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = "configs/BlendMask/R_50_1x.yaml"
# narrow R_50 of benchmarks/benchmark_inference.py --tiny
TINY_OPTS = ["MODEL.RESNETS.STEM_OUT_CHANNELS", 16, "MODEL.RESNETS.RES2_OUT_CHANNELS", 32,
             "MODEL.RESNETS.WIDTH_PER_GROUP", 8, "MODEL.FPN.OUT_CHANNELS", 64, "MODEL.BASIS_MODULE.CONVS_DIM", 32,
             "INPUT.MIN_SIZE_TEST", 192, "INPUT.MAX_SIZE_TEST", 256]
TINY_SIZE = (192, 256)

EAGER_FP32, EAGER_BF16, CONTROL = "eager fp32", "eager bf16", "eager fp32, weights rounded (control)"
TS_FP32, TS_BF16 = "torchscript fp32", "torchscript bf16"
ORT_FP32 = "onnxruntime fp32"
ORT_INT8_BACKBONE, ORT_INT8_NETWORK = "onnxruntime int8 backbone", "onnxruntime int8 network"
ORT_DYNAMIC_BACKBONE = "onnxruntime int8 dynamic backbone"
VARIANTS = {  # --variants key -> row name
    "eager-bf16": EAGER_BF16, "control": CONTROL, "ts-fp32": TS_FP32, "ts-bf16": TS_BF16, "ort-fp32": ORT_FP32,
    "ort-int8-backbone": ORT_INT8_BACKBONE, "ort-int8-network": ORT_INT8_NETWORK,
    "ort-int8-dynamic-backbone": ORT_DYNAMIC_BACKBONE,
}
DEFAULT_VARIANTS = [v for v in VARIANTS if v != "ort-int8-dynamic-backbone"]  # ConvInteger: slower than fp32
NO_LATENCY = {CONTROL}  # the control differs from eager fp32 by its weights only: same speed


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default=DEFAULT_CONFIG)
    parser.add_argument("--weights", help="a checkpoint; without one the weights are random and detections are "
                        "forced (score threshold 0, no NMS, --count per image), as benchmarks/benchmark_inference.py")
    parser.add_argument("--count", type=int, default=100, help="forced detections per image (random weights)")
    parser.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="random image size without --dataset (default 800 1333, --tiny 192 256)")
    parser.add_argument("--dataset", help="measure on the first --limit images of this registered dataset "
                        "(shapes_* or --coco-dataset)")
    parser.add_argument("--coco-dataset", nargs=3, action="append", default=[], metavar=("NAME", "JSON", "IMAGES"))
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--calibration-dataset", help="images for the int8 activation ranges (default: the "
                        "measured images)")
    parser.add_argument("--calibration-images", type=int, default=16)
    parser.add_argument("--evaluate", action="store_true", help="COCO bbox/segm AP of every variant on the "
                        "--dataset images")
    parser.add_argument("--min-score", type=float, default=0.5,
                        help="the confident detections of the second agreement columns")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=DEFAULT_VARIANTS)
    parser.add_argument("--runs", type=int, default=5, help="timed rounds (0: agreement only)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help="narrow R_50, small image (tests)")
    parser.add_argument("--output", help="directory for the exported files (default: a temporary one)")
    parser.add_argument("--json", help="write the rows to this file")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="config overrides KEY VALUE ...")
    return parser.parse_args(argv)


# ---------------------------------------------------------------- the model and its images


def build_cfg(args):
    from blendmask import load_config
    from blendmask.model_zoo import resolve_config_file

    opts = ["MODEL.DEVICE", "cpu", "TEST.PRECISION", "fp32"]
    if args.weights:
        opts += ["MODEL.WEIGHTS", args.weights]
    else:  # forced detections: every location is a candidate, no NMS, the top --count kept
        opts += ["MODEL.WEIGHTS", "", "MODEL.FCOS.INFERENCE_TH_TEST", 0.0, "MODEL.FCOS.NMS_TH", 1.0,
                 "MODEL.FCOS.POST_NMS_TOPK_TEST", args.count]
    if args.tiny:
        opts += TINY_OPTS
    return load_config(resolve_config_file(args.config_file), opts + list(args.opts))


def build_model(cfg, random_weights: bool):
    from blendmask import build_model_and_load

    torch.manual_seed(0)
    model = build_model_and_load(cfg).eval()
    if random_weights:  # boxes of 3 strides on each side of their location, as the benchmarks force them
        torch.nn.init.constant_(model.proposal_generator.fcos_head.bbox_pred.bias, 3.0)
    return model


def dataset_inputs(cfg, name: str, limit: int, coco_datasets=()):
    """The first ``limit`` images of dataset ``name`` as (file name, image, output_size, image id) inputs."""
    from detectron2.data import DatasetCatalog
    from detectron2.data.detection_utils import read_image

    from blendmask.engine import register_datasets
    from blendmask.export import prepare_image

    probe = cfg.clone()
    probe.defrost()
    probe.DATASETS.TEST = (name,)
    register_datasets(probe, coco_datasets)
    records = DatasetCatalog.get(name)[:limit]
    return [(Path(r["file_name"]).name, *prepare_image(read_image(r["file_name"], format=cfg.INPUT.FORMAT), cfg),
             r["image_id"]) for r in records]


def random_input(cfg, size):
    from blendmask.export import prepare_image

    rng = np.random.default_rng(0)
    return [("random", *prepare_image(rng.integers(0, 256, size=(*size, 3), dtype=np.uint8), cfg), None)]


# ---------------------------------------------------------------- the variants


def round_weights_to_bf16(model):
    """A float32 copy of ``model`` whose floating parameters and buffers are rounded to bfloat16."""
    import copy

    rounded = copy.deepcopy(model)
    with torch.no_grad():
        for t in list(rounded.parameters()) + list(rounded.buffers()):
            if t.is_floating_point():
                t.copy_(t.to(torch.bfloat16).float())
    return rounded


def eager_runner(model, context=None):
    """The eager model as a runner (image, output_size) -> Instances, under ``context`` (an autocast)."""
    import contextlib

    def run(image, output_size):
        h, w = (int(v) for v in output_size)
        with torch.no_grad(), context or contextlib.nullcontext():
            return model([{"image": image[0], "height": h, "width": w}])[0]["instances"]
    return run


def export_runner(run):
    """A runner of an exported file returning ``Instances`` (boxes, scores, classes, masks)."""
    from blendmask.export import outputs_to_instances

    return lambda image, output_size: outputs_to_instances(run(image, output_size), output_size)


def build_variants(model, variants, sample, calibration, out_dir: Path, threads: int, log=print):
    """{row name: runner (image, output_size) -> Instances} for the chosen ``variants``, exported
    from ``model`` traced on ``sample`` (image, output_size); ``calibration``: feeds for static int8."""
    import blendmask.export as bx

    module = bx.ExportableModel(model).eval()
    image, output_size = sample
    rows = {EAGER_FP32: eager_runner(model)}
    if "eager-bf16" in variants:  # TEST.PRECISION bf16's autocast, entered here also on CPUs without native bf16
        rows[EAGER_BF16] = eager_runner(model, bx.eager_autocast("bf16"))
    if "control" in variants:
        rows[CONTROL] = eager_runner(round_weights_to_bf16(model))
    if "ts-fp32" in variants:
        rows[TS_FP32] = export_runner(_timed(log, TS_FP32, lambda: bx.export_and_load(
            module, image, output_size, "torchscript", out_dir)[1]))
    if "ts-bf16" in variants:
        bf16_dir = out_dir / "bf16"
        bf16_dir.mkdir(exist_ok=True)
        rows[TS_BF16] = export_runner(_timed(log, TS_BF16, lambda: bx.export_and_load(
            module, image, output_size, "torchscript", bf16_dir, precision="bf16")[1]))
    onnx_variants = [v for v in variants if v.startswith("ort-")]
    if onnx_variants:
        fp32_path = _timed(log, ORT_FP32, lambda: bx.export_onnx(module, image, output_size, out_dir / "model.onnx"))
        quantized = {"ort-fp32": (fp32_path, None),
                     "ort-int8-backbone": (out_dir / "model_int8_backbone.onnx", ("backbone", calibration)),
                     "ort-int8-network": (out_dir / "model_int8_network.onnx", ("network", calibration)),
                     "ort-int8-dynamic-backbone": (out_dir / "model_int8_dynamic_backbone.onnx", ("backbone", None))}
        for key in onnx_variants:
            path, how = quantized[key]
            if how is not None:
                _timed(log, VARIANTS[key], lambda path=path, how=how: bx.quantize_onnx(fp32_path, path, *how))
            session = bx.onnx_session(path, num_threads=threads)
            rows[VARIANTS[key]] = export_runner(lambda x, size, session=session: bx.run_onnx(session, x, size))
    return rows


def _timed(log, name, fn):
    start = time.perf_counter()
    result = fn()
    log(f"{name}: exported in {time.perf_counter() - start:.1f} s")
    return result


# ---------------------------------------------------------------- measuring


def average_precision(dataset: str, image_ids, outputs) -> dict:
    """COCO bbox and segm AP of ``outputs`` on the images ``image_ids`` of ``dataset`` (only those
    images are evaluated)."""
    import contextlib
    import io
    import logging

    from detectron2.evaluation import COCOEvaluator

    logging.getLogger("detectron2").setLevel(logging.WARNING)
    evaluator = COCOEvaluator(dataset, tasks=("bbox", "segm"), distributed=False, output_dir=None)
    evaluator.reset()
    for image_id, instances in zip(image_ids, outputs):
        evaluator.process([{"image_id": image_id}], [{"instances": instances}])
    with contextlib.redirect_stdout(io.StringIO()):
        results = evaluator.evaluate()
    return {"bbox_ap": results["bbox"]["AP"], "segm_ap": results["segm"]["AP"]}


def measure(rows, inputs, runs: int, min_score: float = 0.5, dataset: str = None):
    """{row name: agreement with eager fp32 over ``inputs`` (:func:`agreement`), COCO AP on
    ``dataset`` when given, latency on the first input when ``runs``}. Every output is checked to
    come back float32 (``float32_outputs``)."""
    from blendmask.cli.export import latency_ms
    from blendmask.export import agreement_row

    outputs = {name: [run(image, size) for _, image, size, _ in inputs] for name, run in rows.items()}
    results = {}
    for name, outs in outputs.items():
        row = agreement_row(outputs[EAGER_FP32], outs, min_score)
        row["float32_outputs"] = all(o.scores.dtype == torch.float32 and o.pred_boxes.tensor.dtype == torch.float32
                                     for o in outs)
        if dataset:
            row.update(average_precision(dataset, [image_id for *_, image_id in inputs], outs))
        results[name] = row
    if runs > 0:
        _, image, size, _ = inputs[0]
        timed = {name: (lambda run=run: run(image, size)) for name, run in rows.items() if name not in NO_LATENCY}
        with torch.no_grad():
            for name, (median, low) in latency_ms(timed, runs).items():
                results[name].update(median_ms=median, min_ms=low)
        base = results[EAGER_FP32]["median_ms"]
        for name in timed:
            results[name]["vs_eager_fp32"] = results[name]["median_ms"] / base
    return results


def table(results, min_score: float) -> str:
    with_ap = any("segm_ap" in r for r in results.values())
    lines = ["| variant | median (min) ms | / eager fp32 | dets fp32 / variant | matched | max unmatched score | "
             f"max score diff | max box diff px | mask IoU mean / min | score >= {min_score}: matched | "
             "mask IoU mean / min |" + (" bbox / segm AP |" if with_ap else ""),
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if with_ap else "")]
    for name, r in results.items():
        latency = f"{r['median_ms']:.0f} ({r['min_ms']:.0f})" if "median_ms" in r else "-"
        ratio = f"{r['vs_eager_fp32']:.2f}" if "vs_eager_fp32" in r else "-"
        ap = f" {r['bbox_ap']:.2f} / {r['segm_ap']:.2f} |" if with_ap else ""
        lines.append(f"| {name} | {latency} | {ratio} | {r['n_ref']} / {r['n_other']} | {r['matched']} | "
                     f"{r['max_unmatched_score']:.3f} | {r['max_score_diff']:.4f} | {r['max_box_diff']:.2f} | "
                     f"{r['mean_mask_iou']:.3f} / {r['min_mask_iou']:.3f} | "
                     f"{r['confident_matched']} / {r['confident']} | "
                     f"{r['confident_mean_mask_iou']:.3f} / {r['confident_min_mask_iou']:.3f} |" + ap)
    return "\n".join(lines)


def main(argv=None):
    from blendmask.utils.env import quiet_startup

    quiet_startup()
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = build_cfg(args)
    model = build_model(cfg, random_weights=not args.weights)
    if args.dataset:
        inputs = dataset_inputs(cfg, args.dataset, args.limit, args.coco_dataset)
    else:
        size = args.size or (TINY_SIZE if args.tiny else (800, 1333))
        inputs = random_input(cfg, size)
    calibration_inputs = (dataset_inputs(cfg, args.calibration_dataset, args.calibration_images, args.coco_dataset)
                          if args.calibration_dataset else inputs[: args.calibration_images])
    calibration = [{"image": x.numpy(), "output_size": s.numpy()} for _, x, s, _ in calibration_inputs]
    _, image, size, _ = inputs[0]
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = Path(args.output or tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        rows = build_variants(model, args.variants, (image, size), calibration, out_dir, args.threads)
        results = measure(rows, inputs, args.runs, args.min_score, args.dataset if args.evaluate else None)
    shape = "x".join(str(v) for v in image.shape[-2:])
    print(f"\n{args.config_file}, {'weights ' + args.weights if args.weights else 'random weights'}, "
          f"{len(inputs)} image(s) ({'dataset ' + args.dataset if args.dataset else 'random'}, first {shape}), "
          f"{args.threads} threads, latency on the first image over {args.runs} rounds:\n")
    print(table(results, args.min_score))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
    sys.exit(0)
