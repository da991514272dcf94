"""``blendmask-export`` (and ``tools/export_model.py``): export a model of the package, post-processing
included, to ONNX and/or TorchScript.

    python tools/export_model.py --config-file configs/BlendMask/R_50_1x.yaml \\
        --weights model.pth --output export/ --format onnx torchscript \\
        --sample-image img.jpg [more.jpg ...] [--verify] [--benchmark 10]

Writes ``model.onnx`` and/or ``model.ts`` (TorchScript) and ``export_spec.json`` into --output and
prints the input/output spec. The graph is traced on the first --sample-image (prepared as
``DefaultPredictor`` does: read in INPUT.FORMAT, ResizeShortestEdge to the test size); it then runs
on any image size and detection count. --verify compares every exported model with the eager model
on every sample image; --benchmark N times eager PyTorch vs the exports (median of N runs, CPU).
--precision bf16 traces the TorchScript file under bfloat16 autocast (blendmask.export.reduced): it
computes what the eager model computes with TEST.PRECISION bf16, which --verify then compares it
with. --precision int8 quantizes the ONNX file with onnxruntime (blendmask.export.quantize),
calibrated on --calibration-image (default: the --sample-image files); --verify then holds its
detections to the float32 model's within stated bounds. The default, fp32, writes the same files
as before.
The checkpoint loads weights-only (``blendmask.build_model_and_load``): one that needs pickled code
is refused (exit code 2) unless BLENDMASK_ALLOW_PICKLE=1 is set.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

FORMATS = ("onnx", "torchscript")  # files model.onnx and model.ts (blendmask.export.EXPORT_FILE_NAMES)
ORT_NAMES = {"fp32": "onnxruntime", "bf16": "onnxruntime", "int8": "onnxruntime int8"}  # the rows of the output


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, help="model config (AdelaiDet yaml files load as they are)")
    parser.add_argument("--weights", help="checkpoint; same as --opts MODEL.WEIGHTS PATH")
    parser.add_argument("--output", required=True, help="output directory (created)")
    parser.add_argument("--format", nargs="+", choices=FORMATS, default=list(FORMATS))
    parser.add_argument("--sample-image", nargs="+", help="image file(s); the first is traced (default: a "
                        "synthetic image at the test size)")
    parser.add_argument("--no-paste-masks", action="store_true",
                        help="leave out the image-size masks (output 'masks' is (N, 0, 0)): saves memory")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17, at least 16)")
    parser.add_argument("--precision", choices=("fp32", "bf16", "int8"), default="fp32",
                        help="fp32 (default); bf16: TorchScript traced under bfloat16 autocast, what TEST.PRECISION "
                        "bf16 computes (TorchScript only; for CPUs with AVX512-BF16/AMX); int8: onnxruntime's static "
                        "quantization of the ONNX file (ONNX only; needs calibration images)")
    parser.add_argument("--int8-scope", choices=("network", "backbone"), default="network",
                        help="int8: quantize every convolution (network, default) or the backbone + FPN only")
    parser.add_argument("--calibration-image", nargs="+", metavar="IMAGE",
                        help="int8: images like the ones the model will see, for the activation ranges (default: "
                        "the --sample-image files; tens of them are better than one)")
    parser.add_argument("--verify", action="store_true", help="compare the exports with the eager model")
    parser.add_argument("--benchmark", type=int, default=0, metavar="N", help="time N runs per image and backend")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch and onnxruntime")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="config overrides KEY VALUE ...")
    return parser.parse_args(argv)


def setup_cfg(args):
    from blendmask import load_config
    from blendmask.model_zoo import resolve_config_file

    # every key of the package (a run's OUTPUT_DIR/config.yaml holds them all); unknown keys are named
    weights = ["MODEL.WEIGHTS", args.weights] if args.weights else []
    cfg = load_config(resolve_config_file(args.config_file), weights + list(args.opts))
    cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    return cfg


def sample_inputs(args, cfg):
    from blendmask.export import prepare_image, read_image

    if args.sample_image:
        return [(Path(p).name, *read_image(p, cfg)) for p in args.sample_image]
    h = cfg.INPUT.MIN_SIZE_TEST
    rng = np.random.default_rng(0)
    synthetic = rng.integers(0, 256, size=(h, h * 4 // 3, 3), dtype=np.uint8)
    return [("synthetic", *prepare_image(synthetic, cfg))]


def matches(report) -> bool:
    """Same detections, boxes within 1e-2 px, R x R probabilities within 3e-3 and mask pixels
    differing only where the probability is that close to the threshold (else mask IoU >= 0.99)."""
    masks_ok = (report["unexplained_mask_pixels"] == 0 if "unexplained_mask_pixels" in report
                else report["min_mask_iou"] >= 0.99)
    return (report["count_eager"] == report["count_export"] and report["unmatched"] == 0
            and report["max_box_diff"] <= 1e-2 and report["max_mask_prob_diff"] <= 3e-3 and masks_ok)


def latency_ms(fns, runs: int):
    """{name: (median, min)} wall time in ms of ``runs`` calls of each function, after two warm-up
    calls each (TorchScript's profiling executor optimises on its first calls). The functions
    take turns, so that other load on the machine hits them alike."""
    for fn in fns.values():
        fn()
        fn()
    times = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: (statistics.median(t), min(t)) for name, t in times.items()}


def main(argv=None):
    from blendmask.utils.env import quiet_startup

    quiet_startup()
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    import blendmask.export as bx
    from blendmask import build_model_and_load
    from blendmask.checkpoint import CheckpointMismatchError, UnsafeCheckpointError
    from blendmask.engine.precision import cpu_has_native_bf16

    for fmt in args.format:
        try:
            bx.check_export_precision(args.precision, fmt)
        except ValueError as e:
            print(f"error: --precision {args.precision} with --format {fmt}: {e}; pass --format "
                  f"{bx.PRECISION_BACKENDS[args.precision]}", file=sys.stderr)
            return 2
    calibration_files = args.calibration_image or args.sample_image
    if args.precision == "int8" and not calibration_files:
        print("error: --precision int8 needs calibration images (--calibration-image or --sample-image): a random "
              "image would set the int8 ranges of activations no photo produces", file=sys.stderr)
        return 2
    if args.precision == "bf16" and not cpu_has_native_bf16():
        print("warning: this CPU has no native bfloat16 instructions: the bf16 file is written, but runs slower "
              "than the float32 one here", file=sys.stderr)
    cfg = setup_cfg(args)  # MODEL.DEVICE cpu
    try:
        model = build_model_and_load(cfg)  # weights-only: a checkpoint needing pickled code is refused
    except (UnsafeCheckpointError, CheckpointMismatchError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    module = bx.ExportableModel(model, paste_masks=not args.no_paste_masks).eval()
    samples = sample_inputs(args, cfg)
    _, image, output_size = samples[0]
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)

    runners = {}
    for fmt in args.format:
        start = time.perf_counter()
        if fmt == "onnx":
            metadata = {"config_file": args.config_file, "input_format": cfg.INPUT.FORMAT,
                        "min_size_test": cfg.INPUT.MIN_SIZE_TEST, "max_size_test": cfg.INPUT.MAX_SIZE_TEST,
                        "num_classes": module.num_classes}
            if args.precision == "int8":
                calibration = [bx.read_image(p, cfg) for p in calibration_files]
                int8 = dict(precision="int8", calibration=calibration, int8_scope=args.int8_scope)
            else:
                int8 = {}
            path, runners[ORT_NAMES[args.precision]] = bx.export_and_load(
                module, image, output_size, "onnx", out_dir, num_threads=args.threads,
                opset=args.opset or bx.ONNX_OPSET, metadata=metadata, **int8)
        else:
            path, runners["torchscript"] = bx.export_and_load(module, image, output_size, "torchscript", out_dir,
                                                              precision=args.precision)
        print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB, {time.perf_counter() - start:.1f} s)")
    spec = bx.io_spec(module, cfg, precision=f"int8 {args.int8_scope}" if args.precision == "int8" else args.precision)
    spec_path = bx.write_spec(spec, out_dir / "export_spec.json")
    print(f"wrote {spec_path}")
    print(json.dumps(spec, indent=2))

    ok = True
    if args.verify and args.precision == "int8":
        ok = verify_int8(model, runners, samples)
    elif args.verify:
        for name, x, size in samples:
            with bx.eager_autocast(args.precision):  # the eager model in the export's precision
                eager, eager_probs = bx.eager_predict(model, x, size)
            for backend, run in runners.items():
                with torch.no_grad():
                    report = bx.compare_outputs(eager, run(x, size), eager_probs)
                print(f"verify {backend} on {name}: {json.dumps(report)}")
                ok &= matches(report)
        print("verify:", "all match" if ok else "MISMATCH")
    if args.benchmark > 0:
        print(f"latency in ms, median (min) of {args.benchmark} runs, {args.threads} threads, CPU:")
        for name, x, size in samples:
            h, w = (int(v) for v in size)
            inputs = [{"image": x[0], "height": h, "width": w}]
            fns = {"pytorch eager": lambda inputs=inputs: model(inputs)}
            if args.precision == "bf16":
                fns[f"pytorch eager {args.precision}"] = lambda inputs=inputs: _under(
                    bx.eager_autocast(args.precision), model, inputs)
            fns.update({backend: (lambda run=run, x=x, size=size: run(x, size)) for backend, run in runners.items()})
            with torch.no_grad():
                timings = latency_ms(fns, args.benchmark)
            shape = "x".join(str(v) for v in x.shape[-2:])
            print(f"  {name} ({shape}): " + ", ".join(f"{k} {m:.0f} ({lo:.0f})" for k, (m, lo) in timings.items()))
    return 0 if ok else 1


def verify_int8(model, runners, samples) -> bool:
    """--verify of an int8 file: its detections against the float32 eager model's on every sample
    image, held to the bounds of ``blendmask.export.within_int8_bounds`` over all of them."""
    import blendmask.export as bx

    references, others = [], []
    for name, x, size in samples:
        eager, _ = bx.eager_predict(model, x, size)
        for backend, run in runners.items():
            with torch.no_grad():
                other = bx.outputs_to_instances(run(x, size), size)
            row = bx.agreement_row([eager], [other])
            print(f"verify {backend} on {name} against float32: {json.dumps(row)}")
            references.append(eager)
            others.append(other)
    row = bx.agreement_row(references, others)
    ok = bx.within_int8_bounds(row)
    print(f"verify: {row['matched']} of {row['n_ref']} float32 detections matched ({row['confident_matched']} of "
          f"the {row['confident']} scoring >= {bx.CONFIDENT_SCORE}), mean mask IoU {row['mean_mask_iou']:.3f}: "
          + ("within the int8 bounds" if ok else
             f"BELOW the int8 bounds (all confident ones, {bx.INT8_MIN_MATCHED:.0%} of all, mask IoU "
             f"{bx.INT8_MIN_MASK_IOU}): calibrate on more images like yours, or try --int8-scope backbone"))
    return ok


def _under(context, fn, *args):
    with context:
        return fn(*args)


def cli(argv=None):
    """The ``blendmask-export`` command (``tools/export_model.py``)."""
    sys.exit(main(argv))


if __name__ == "__main__":
    cli()
