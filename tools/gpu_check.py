#!/usr/bin/env python
"""One command for a CUDA machine: the CUDA-only tests, every reference fixture in fp32 and fp16,
fp16 inference latency of the models beside FCOS and Mask R-CNN, a few AMP training steps; one
table at the end.

    python tools/gpu_check.py                     # make gpu-check (about 10 minutes on one GPU)
    python tools/gpu_check.py --device cpu --tiny # the dry run the test suite makes (bf16 for fp16)

Steps (each row of the final table says what it measured and whether it passed):

1. ``pytest -k cuda`` over the test files with CUDA-only tests (skipped in a CPU dry run);
2. every reference fixture (tests/precision_fixtures.py) moved to the device, float32 against the
   reduced precision (fp16 on CUDA, bf16 on CPU): detections matched, mask IoU, held to the
   suite's control (the weights rounded to bfloat16);
3. benchmarks/benchmark_inference.py: BlendMask, CenterMask V-39, FCOS and Mask R-CNN R_50 at
   800x1333 with 100 forced detections, fp32 and the reduced precision, and
   benchmarks/benchmark_solov2.py (SOLOv2 R50) alike;
4. benchmarks/benchmark_training.py: BlendMask R_50 steps, fp32 and AMP (fp16 with a gradient
   scaler on CUDA).

Exits non-zero when a step fails.
"""

import argparse
import subprocess
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CUDA_TEST_FILES = ["tests/test_amp.py", "tests/test_precision.py"]


def _step(rows, name, fn):
    start = time.perf_counter()
    try:
        detail, ok = fn()
    except Exception as error:  # a failed step is reported in the table, the others still run
        traceback.print_exc()
        detail, ok = f"{type(error).__name__}: {str(error)[:200]}", False
    rows.append((name, "ok" if ok else "FAILED", f"{time.perf_counter() - start:.0f}", detail))
    print(f"[gpu-check] {name}: {rows[-1][1]} ({detail})", flush=True)


def cuda_tests(device):
    if device != "cuda":
        return "skipped: not a CUDA run", True
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-k", "cuda", *CUDA_TEST_FILES], cwd=REPO,
                          capture_output=True, text=True)
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-300:], done.returncode == 0


def fixtures(device, precision, tiny):
    sys.path.insert(0, str(REPO / "tests"))
    import precision_fixtures as pf
    import pytest
    import torch

    from blendmask.engine.precision import set_inference_precision
    from blendmask.utils.agreement import combine, compare_instances

    names = ["cm_tiny"] if tiny else list(pf.MODEL_FIXTURES)
    parts, ok = [], True
    for name in names:
        try:
            model_name, load = pf.MODEL_FIXTURES[name]
            model, images = load()
        except pytest.skip.Exception:
            parts.append(f"{name} absent")
            continue
        images = images[:1] if tiny else images
        rounded = pf.round_weights_to_bf16(model).to(device)
        model = model.to(device)
        runs = []
        for m, p in ((model, "fp32"), (model, precision), (rounded, "fp32")):
            set_inference_precision(m, p)
            runs.append(_predict(m, images, device))
        ours = combine([compare_instances(a, b) for a, b in zip(runs[0], runs[1])])
        control = combine([compare_instances(a, b) for a, b in zip(runs[0], runs[2])])
        good = (ours["matched"] / max(ours["n_ref"], 1) >= control["matched"] / max(control["n_ref"], 1)
                - pf.MATCHED_MARGIN) and ours["mean_mask_iou"] >= control["mean_mask_iou"] - pf.MASK_IOU_MARGIN
        ok &= good and all(r.scores.dtype == torch.float32 for r in runs[1])
        parts.append(f"{name} {ours['matched']}/{ours['n_ref']} matched (control {control['matched']}), "
                     f"mask IoU {ours['mean_mask_iou']:.3f}")
    return "; ".join(parts), ok


def _predict(model, images, device):
    import numpy as np
    import torch

    out = []
    with torch.no_grad():
        for chw, h, w in images:
            image = torch.from_numpy(np.ascontiguousarray(chw).astype(np.float32)).to(device)
            out.append(model([{"image": image, "height": h, "width": w}])[0]["instances"].to("cpu"))
    return out


def inference_latency(device, precision, tiny, out):
    sys.path.insert(0, str(REPO / "benchmarks"))
    import json

    import benchmark_inference
    import benchmark_solov2

    models = ["BlendMask R_50", "CenterMask V-39", "FCOS R_50", "Mask R-CNN R50-FPN"]
    common = ["--runs", "1" if tiny else "5", "--warmup", "0" if tiny else "1", "--precision", "fp32", precision,
              "--device", device] + (["--tiny"] if tiny else [])
    benchmark_inference.main(["--models", *models, "--counts", "5" if tiny else "100", "--out", str(out), *common])
    records = json.loads((out / "inference.json").read_text())
    solo = benchmark_solov2.main(["--counts", "4" if tiny else "100", "--no-blendmask", "--no-aggmask",
                                  "--out", str(out), *common])
    times = {r["model"]: r["median_ms"] for r in records}
    times.update({name: r["median_ms"] for (name, _), r in solo.items()})
    parts = [f"{m} {times[m]:.0f} ms, {precision} {times[f'{m} {precision}']:.0f} ms"
             for m in [*models, "SOLOv2 R50"] if m in times and f"{m} {precision}" in times]
    return "; ".join(parts), len(parts) == len(models) + 1


def training_steps(device, precision, tiny):
    sys.path.insert(0, str(REPO / "benchmarks"))
    import benchmark_training

    rows = benchmark_training.main(["--models", "BlendMask R_50", "--iters", "2" if tiny else "5", "--batch",
                                    "1" if tiny else "2", "--precision", "fp32", precision, "--device", device]
                                   + (["--tiny"] if tiny else []))
    finite = all(r[5] == r[5] and abs(r[5]) != float("inf") for r in rows)
    return "; ".join(f"{r[0]} {r[1]:.2f} s/step, loss {r[5]:.3f}" for r in rows), finite and len(rows) == 2


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--tiny", action="store_true", help="narrow models, small inputs, one image per fixture")
    parser.add_argument("--out", default=str(REPO / "output" / "gpu_check"))
    args = parser.parse_args(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu-check: no CUDA device here (use --device cpu for the dry run)", file=sys.stderr)
        return 2
    if args.device == "cpu":
        torch.set_num_threads(2)
    precision = "fp16" if args.device == "cuda" else "bf16"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    _step(rows, "CUDA tests", lambda: cuda_tests(args.device))
    _step(rows, f"fixtures fp32 vs {precision}", lambda: fixtures(args.device, precision, args.tiny))
    _step(rows, f"inference latency fp32 / {precision}", lambda: inference_latency(args.device, precision,
                                                                                   args.tiny, out))
    _step(rows, f"training steps fp32 / AMP {precision}", lambda: training_steps(args.device, precision, args.tiny))
    name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    table = [f"gpu-check on {name}, torch {torch.__version__}", "", "| step | result | s | measured |",
             "|---|---|---:|---|"] + [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    print("\n" + "\n".join(table))
    (out / "gpu_check.md").write_text("\n".join(table) + "\n")
    return 0 if all(r[1] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
