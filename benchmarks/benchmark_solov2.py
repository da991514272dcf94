#!/usr/bin/env python
"""Inference latency of SOLOv2 R50 (configs/SOLOv2/R50_3x.yaml) and AggMask* R50
(configs/AggMask/AggMaskStar_R50.yaml) on CPU, with per-stage times.

    python benchmarks/benchmark_solov2.py [--runs 5] [--warmup 1] [--threads 2] [--counts 10 50 100]
        [--size 800 1333] [--out output/benchmarks] [--tiny] [--no-blendmask] [--no-aggmask]
        [--precision fp32 bf16] [--device cpu]

The model is randomly initialised (no download). A random model's category scores sit far below
SOLOv2's 0.1 threshold, so the detection count N is forced: the score threshold is set just below
the N-th largest point-NMS'd category score of the input, NMS_PRE = MAX_PER_IMG = N and the update
threshold 0, so N candidates go through the dynamic masks, matrix NMS, the two-step resize and
the mask boxes, as a trained model's N detections would. Inputs are one random 800x1333 image
(the test size; results at that size). Each setting's figure is the median (min-max) of ``--runs``
eval-mode forwards under no_grad after ``--warmup`` runs, settings interleaved round by round;
stages come from forward hooks and function wrappers (benchmark_inference.StageTimer). BlendMask
R_50 runs in the same rounds (benchmark_inference's forced counts), so the ratio row compares the
two under the same load whatever else the machine is doing (``--no-blendmask`` skips it).
AggMask* R50 runs in the same rounds beside "SOLOv2 R50 (AggMask* settings)", the same config
without the aggregation (the authors' SOLOv2: 256-wide towers, 1x1 kernel predictor, mask
branch without norm), so the "AggMask* / SOLOv2" row is the aggregation's cost alone; a second
row compares with AdelaiDet's SOLOv2 R50 (``--no-aggmask`` skips these). AggMask*'s forced N
candidates go through its per-cell networks instead of the dynamic masks (the last output bias of
the random network is raised by 10 so that all N masks pass the stride filter).
``--tiny`` uses a narrow model and small images (for the test suite). ``--precision`` runs every
model in each listed TEST.PRECISION (rows "<model> <precision>", a "<precision> / fp32" ratio row
each; the forced threshold is found in that precision); ``--device cuda`` runs on a GPU.
"""

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import benchmark_inference  # noqa: E402
from benchmark_inference import StageTimer  # noqa: E402

CONFIG = REPO / "configs" / "SOLOv2" / "R50_3x.yaml"
AGGMASK_CONFIG = REPO / "configs" / "AggMask" / "AggMaskStar_R50.yaml"
TINY_OPTS = ["MODEL.RESNETS.STEM_OUT_CHANNELS", 16, "MODEL.RESNETS.RES2_OUT_CHANNELS", 32,
             "MODEL.RESNETS.WIDTH_PER_GROUP", 8, "MODEL.FPN.OUT_CHANNELS", 64,
             "MODEL.SOLOV2.INSTANCE_IN_CHANNELS", 64, "MODEL.SOLOV2.MASK_IN_CHANNELS", 64,
             "MODEL.SOLOV2.INSTANCE_CHANNELS", 64, "MODEL.SOLOV2.MASK_CHANNELS", 64,
             "MODEL.SOLOV2.NUM_MASKS", 32, "MODEL.SOLOV2.NUM_KERNELS", 32]
# published by AdelaiDet (configs/SOLOv2/README.md): COCO val mask AP of its R50 3x model; no speed given
ADELAIDET_R50_3X = {"mask AP": 37.6, "inference time": "not published"}
STAGES = ("backbone+FPN", "instance head", "mask head", "candidates+masks", "matrix NMS", "resize", "boxes")
AGGMASK_STAGES = STAGES + ("weight head", "context head")
AGGMASK = "AggMask* R50"
SOLOV2_AGGMASK_SETTINGS = "SOLOv2 R50 (AggMask* settings)"


def build(count: int, image: torch.Tensor, tiny: bool, config=CONFIG, extra_opts=(), precision="fp32",
          device="cpu"):
    from blendmask import build_model_and_load, load_config
    from blendmask.engine.precision import autocast, float32, inference_dtype
    from blendmask.modeling.solov2 import point_nms

    opts = ["MODEL.WEIGHTS", "", "MODEL.DEVICE", device, "TEST.PRECISION", precision] + (TINY_OPTS if tiny else []) \
        + list(extra_opts)
    torch.manual_seed(0)
    model = build_model_and_load(load_config(config, opts))
    with torch.no_grad(), autocast(inference_dtype(model), torch.device(device).type):
        # the N-th largest category score of this input, in the precision the model runs in
        images = model.preprocess_image([{"image": image}])
        cate = model.heads(model.backbone(model.backbone_input(images.tensor)))[0]
        scores = torch.cat([point_nms(torch.sigmoid(x)).flatten() for x in float32(cate)])
    if hasattr(model, "weight_head"):
        # AggMask*: a random per-cell network's masks mostly fail the stride filter (<= stride px);
        # raising its output bias b2 lets all N through, as a trained model's masks would pass
        with torch.no_grad():
            model.weight_head.weight_pred.bias[-1] += 10.0
    kth = scores.topk(count).values[-1]
    threshold = torch.nextafter(kth, torch.tensor(-1.0)).item()
    model.test_params = dataclasses.replace(model.test_params, score_thr=threshold, nms_pre=count,
                                            max_per_img=count, update_thr=0.0)
    return model


def instrument(model, timer: StageTimer):
    from blendmask.modeling.solov2 import inference as solov2_inference
    from blendmask.modeling.solov2 import meta_arch

    timer.module("backbone+FPN", model.backbone)
    timer.module("instance head", model.ins_head)
    timer.module("mask head", model.mask_head)
    timer.method("candidates+masks", meta_arch, "solov2_inference_single")  # includes matrix NMS
    timer.method("matrix NMS", solov2_inference, "matrix_nms")
    timer.method("resize", meta_arch, "resize_mask_probs")
    timer.method("boxes", meta_arch, "boxes_from_masks")


def instrument_aggmask(model, timer: StageTimer):
    from blendmask.modeling.aggmask import meta_arch as aggmask_meta_arch

    instrument(model, timer)
    timer.module("weight head", model.weight_head)
    timer.module("context head", model.context_head)
    timer.method("candidates+masks", aggmask_meta_arch, "solov2_inference_single")  # includes matrix NMS


def run(settings, runs: int, warmup: int):
    """settings: {(model name, N): (model, inputs, instrument function)}."""
    timer = StageTimer()
    for model, _, add_stages in settings.values():
        add_stages(model, timer)
    totals = {k: [] for k in settings}
    stages = {k: {} for k in settings}
    counts = {}
    keys = list(settings)
    with torch.no_grad():
        for _ in range(warmup):
            for key in keys:
                settings[key][0](settings[key][1])
        for r in range(runs):
            for key in keys if r % 2 == 0 else reversed(keys):
                model, inputs, _ = settings[key]
                timer.reset()
                benchmark_inference._sync()
                start = time.perf_counter()
                out = model(inputs)
                benchmark_inference._sync()
                totals[key].append(time.perf_counter() - start)
                for name, value in timer.times.items():
                    stages[key].setdefault(name, []).append(value)
                counts[key] = len(out[0]["instances"])
            print(f"round {r + 1}/{runs} done", flush=True)
    timer.remove()
    results = {}
    for key in keys:
        st = {k: 1000 * statistics.median(v) for k, v in stages[key].items()}
        if "candidates+masks" in st:  # exclusive of matrix NMS
            st["candidates+masks"] -= st.get("matrix NMS", 0.0)
        results[key] = {"median_ms": 1000 * statistics.median(totals[key]), "min_ms": 1000 * min(totals[key]),
                        "max_ms": 1000 * max(totals[key]), "detections": counts[key], "stages_ms": st}
    return results


def markdown(results, size, threads) -> str:
    lines = [f"Random init, input {size[0]}x{size[1]}, {threads} CPU thread(s)", "",
             "| model | N forced | dets | median ms | spread ms | stages (median ms) |",
             "|---|---:|---:|---:|---|---|"]
    for (name, n), r in sorted(results.items()):
        stages = ", ".join(f"{k} {v:.0f}" for k, v in r["stages_ms"].items())
        lines.append(f"| {name} | {n} | {r['detections']} | {r['median_ms']:.0f} | "
                     f"{r['min_ms']:.0f}-{r['max_ms']:.0f} | {stages} |")
    for (name, n), r in sorted(results.items()):
        other = results.get(("BlendMask R_50", n))
        if name == "SOLOv2 R50" and other:
            lines.append(f"| SOLOv2 / BlendMask | {n} | | {r['median_ms'] / other['median_ms']:.2f} | | |")
        for base, label in ((SOLOV2_AGGMASK_SETTINGS, "AggMask* / SOLOv2 (same settings)"),
                            ("SOLOv2 R50", "AggMask* / SOLOv2 (AdelaiDet's)")):
            if name == AGGMASK and (base, n) in results:
                ratio = r["median_ms"] / results[(base, n)]["median_ms"]
                lines.append(f"| {label} | {n} | | {ratio:.3f} ({100 * (ratio - 1):+.1f}%) | | |")
        base = benchmark_inference._precision_base(name)
        if base and (base, n) in results:
            lines.append(f"| {name} / {base} | {n} | | {r['median_ms'] / results[(base, n)]['median_ms']:.2f} | | |")
    lines += ["", f"AdelaiDet's SOLOv2 R50 3x (published): mask AP {ADELAIDET_R50_3X['mask AP']} on COCO val; "
              f"inference time {ADELAIDET_R50_3X['inference time']}."]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--counts", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--size", type=int, nargs=2, default=[800, 1333])
    parser.add_argument("--out", default=str(REPO / "output" / "benchmarks"))
    parser.add_argument("--tiny", action="store_true", help="narrow model, small image (tests)")
    parser.add_argument("--no-blendmask", action="store_true", help="no BlendMask rows")
    parser.add_argument("--no-aggmask", action="store_true", help="no AggMask* rows")
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16", "fp16", "auto"],
                        help="TEST.PRECISION values, each a row per model (default fp32)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    size = (96, 128) if args.tiny else tuple(args.size)
    g = torch.Generator().manual_seed(0)
    image = (torch.rand(3, *size, generator=g) * 255).round().to(args.device)
    inputs = [{"image": image, "height": size[0], "width": size[1]}]
    settings = {}
    for p in args.precision:
        suffix = "" if p == "fp32" else f" {p}"
        kw = dict(precision=p, device=args.device)
        for n in args.counts:
            settings[(f"SOLOv2 R50{suffix}", n)] = (build(n, image, args.tiny, **kw), inputs, instrument)
        if not args.no_aggmask:
            for n in args.counts:
                settings[(AGGMASK + suffix, n)] = (build(n, image, args.tiny, AGGMASK_CONFIG, **kw), inputs,
                                                   instrument_aggmask)
                settings[(SOLOV2_AGGMASK_SETTINGS + suffix, n)] = (
                    build(n, image, args.tiny, AGGMASK_CONFIG, ["MODEL.META_ARCHITECTURE", "SOLOv2"], **kw), inputs,
                    instrument)
        if not args.no_blendmask:
            for n in args.counts:
                model = benchmark_inference.build("ours", benchmark_inference.BLENDMASK, n, args.tiny, (), p,
                                                  args.device)
                settings[(f"BlendMask R_50{suffix}", n)] = (
                    model, inputs, lambda m, t: benchmark_inference.instrument("ours", m, t))
    results = run(settings, args.runs, args.warmup)
    table = markdown(results, size, args.threads)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "solov2_inference.json").write_text(json.dumps({f"{m} N={n}": v for (m, n), v in results.items()}, indent=1))
    (out / "solov2_inference.md").write_text(table + "\n")
    return results


if __name__ == "__main__":
    main()
