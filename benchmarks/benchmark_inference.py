#!/usr/bin/env python
"""Inference latency of BlendMask vs CenterMask vs FCOS vs detectron2's Mask R-CNN, in one process, same inputs.

    python benchmarks/benchmark_inference.py [--runs 5] [--threads 2] [--counts 10 50 100 200]
        [--size 800 1333] [--out output/benchmarks] [--tiny] [--precision fp32 bf16] [--device cpu]

Models are randomly initialised (no download). Detection counts are forced the same way for all
models: score threshold 0, NMS off (IoU threshold 1.0), at most N detections; FCOS-style box
outputs get a positive bias so boxes have a size. All models are built first; then each round runs
every setting once (alternating the order between rounds), so that drifts of the machine hit all
models alike. Each setting's figure is the median (and min-max spread) of ``--runs`` eval-mode
forwards under no_grad after ``--warmup`` rounds, with per-stage times from forward hooks and
wrappers. Peak memory is the peak RSS above the pre-run level, sampled every 5 ms.
Prints a markdown table with ratios and writes time-vs-detections plots (PNG) and JSON to --out.
``--tiny`` uses narrow models and small images (for the test suite). ``--precision`` runs every
model in each listed TEST.PRECISION (blendmask.engine.precision; rows other than fp32 are named
"<model> <precision>", in the same interleaved rounds, with a "<precision> / fp32" ratio row per
model). ``--device cuda`` runs on a GPU (synchronised before each clock reading).
"""

import argparse
import ctypes
import gc
import json
import statistics
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import torch
from detectron2 import model_zoo
from detectron2.config import get_cfg
from detectron2.modeling import build_model

from blendmask import load_config
from blendmask.modeling import one_stage_detector

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its sibling stage_timer, however it is loaded
from stage_timer import StageTimer  # noqa: E402,F401  (benchmark_solov2 imports it from here)

REPO = Path(__file__).resolve().parents[1]

BLENDMASK, FCOS, MASK_RCNN = "configs/BlendMask/R_50_1x.yaml", "configs/FCOS-Detection/R_50_1x.yaml", \
    "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml"
# name -> (family, config, input size or None for --size, speed-ups switched off (ablations))
MODELS = {
    "BlendMask R_50": ("ours", BLENDMASK, None, ()),
    "BlendMask R_50 550": ("ours", "configs/BlendMask/550_R_50_3x.yaml", (550, 916), ()),
    "FCOS R_50": ("ours", FCOS, None, ()),
    "CenterMask V-39": ("ours", "configs/CenterMask/centermask_V_39_eSE_FPN_ms_3x.yaml", None, ()),
    "CenterMask-Lite V-19": ("ours", "configs/CenterMask/centermask_lite_V_19_eSE_FPN_ms_4x.yaml", None, ()),
    "Mask R-CNN R50-FPN": ("d2", MASK_RCNN, None, ()),
    # detectron2's Mask R-CNN fed a channels-last batch, as our models are on CPU
    "Mask R-CNN R50-FPN NHWC": ("d2-nhwc", MASK_RCNN, None, ()),
    # our BlendMask with one of its speed-ups switched off, and with all of them off ("before")
    "BlendMask R_50 dense-attn": ("ours", BLENDMASK, None, ("sparse-attn",)),
    "BlendMask R_50 NCHW": ("ours", BLENDMASK, None, ("channels-last",)),
    "BlendMask R_50 d2-paste": ("ours", BLENDMASK, None, ("lazy-paste",)),
    "BlendMask R_50 unfolded-BN": ("ours", BLENDMASK, None, ("bn-fold",)),
    "BlendMask R_50 before": ("ours", BLENDMASK, None, ("sparse-attn", "channels-last", "lazy-paste", "bn-fold")),
    # AdelaiDet's panoptic BlendMask: P2 in the FPN, detectron2's semantic FPN head, its resize and combine
    "Panoptic BlendMask R_50": ("ours", "configs/BlendMask/Panoptic/R_50_3x.yaml", None, ()),
}
DEFAULT_MODELS = ["BlendMask R_50", "BlendMask R_50 550", "FCOS R_50", "CenterMask V-39", "CenterMask-Lite V-19",
                  "Mask R-CNN R50-FPN"]

TINY_OPTS = ["MODEL.RESNETS.STEM_OUT_CHANNELS", 16, "MODEL.RESNETS.RES2_OUT_CHANNELS", 32,
             "MODEL.RESNETS.WIDTH_PER_GROUP", 8, "MODEL.FPN.OUT_CHANNELS", 64]
TINY_CENTERMASK_OPTS = ["MODEL.VOVNET.CONV_BODY", "V-19-slim-dw-eSE", "MODEL.ROI_MASK_HEAD.CONV_DIM", 64,
                        "MODEL.ROI_MASKIOU_HEAD.CONV_DIM", 16]
# CenterMask's mask branch (per ROI) and its FCOS (per image): the stages of the "mask branch / FCOS" rows
MASK_BRANCH_STAGES = ("ROIAlign", "SAG-Mask", "MaskIoU", "paste")
FCOS_STAGES = ("backbone+FPN", "head", "post-processing")


# each speed-up's config key, and the value that switches it off (outputs equal up to float rounding)
SPEEDUP_OFF = {
    "sparse-attn": ("MODEL.BLENDMASK.SPARSE_ATTENTION", False),  # the attention conv on every location
    "channels-last": ("TEST.CHANNELS_LAST_ON_CPU", False),  # NCHW batch into the backbone
    "lazy-paste": ("TEST.LAZY_PASTE", False),  # detectron2's paste_masks_in_image
    "bn-fold": ("MODEL.BASIS_MODULE.FOLD_BN", False),  # BatchNorm after each basis-module conv
}


def switch_off_opts(ablations):
    """Config overrides that switch off our inference speed-ups named in ``ablations``."""
    opts = []
    for name in ablations:
        key, value = SPEEDUP_OFF[name]
        opts += [key, value]
    return opts


def build(family, config, count, tiny, ablations=(), precision="fp32", device="cpu"):
    from blendmask.engine.precision import set_inference_precision

    if family == "ours":
        opts = ["MODEL.WEIGHTS", "", "MODEL.DEVICE", device, "MODEL.FCOS.INFERENCE_TH_TEST", 0.0,
                "MODEL.FCOS.NMS_TH", 1.0, "MODEL.FCOS.POST_NMS_TOPK_TEST", count]
        if tiny:
            opts += TINY_OPTS + ["MODEL.BASIS_MODULE.CONVS_DIM", 32]
            if "CenterMask" in config:
                opts += TINY_CENTERMASK_OPTS
        cfg = load_config(REPO / config, opts + switch_off_opts(ablations))
    else:
        cfg = get_cfg()
        cfg.merge_from_file(model_zoo.get_config_file(config))
        cfg.merge_from_list(["MODEL.WEIGHTS", "", "MODEL.DEVICE", device, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0,
                             "MODEL.ROI_HEADS.NMS_THRESH_TEST", 1.0, "TEST.DETECTIONS_PER_IMAGE", count])
        if tiny:
            cfg.merge_from_list(TINY_OPTS)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    if family == "ours":  # boxes of 3 strides on each side of their location
        torch.nn.init.constant_(model.proposal_generator.fcos_head.bbox_pred.bias, 3.0)
    else:
        zero_box_deltas(model)
        if family == "d2-nhwc":
            model.backbone.register_forward_pre_hook(
                lambda _, args: (args[0].contiguous(memory_format=torch.channels_last),))
    return set_inference_precision(model, precision)


def zero_box_deltas(model):
    """Mask R-CNN's boxes = its anchors: random box deltas on a randomly initialised backbone
    collapse proposals onto the whole image or overflow exp() into Inf boxes."""
    for layer in (model.proposal_generator.rpn_head.anchor_deltas, model.roi_heads.box_predictor.bbox_pred):
        torch.nn.init.zeros_(layer.weight)
        torch.nn.init.zeros_(layer.bias)


def instrument(kind, model, timer):
    """Register ``model``'s stages on the shared ``timer`` (only one model runs at a time)."""
    timer.module("backbone+FPN", model.backbone)
    if kind == "ours":
        timer.module("head", model.proposal_generator.fcos_head)
        timer.method("post-processing", model.proposal_generator, "detect")
        # scaling, clipping and pasting; a function of the module the meta-architecture calls it from
        timer.method("paste", one_stage_detector, "postprocess_detections")
        if hasattr(model, "basis_module"):
            timer.module("basis module", model.basis_module)
            timer.method("attention", model.top_layer, "at_locations")
            timer.method("blender", model.blender, "mask_probs")
        if getattr(model, "panoptic_module", None) is not None:
            from blendmask.modeling.blendmask import panoptic

            timer.module("semantic head", model.panoptic_module)
            timer.method("semantic resize", panoptic, "sem_seg_postprocess")
            timer.method("combine", panoptic, "combine_semantic_and_instance_outputs")
        if hasattr(model, "roi_heads"):  # CenterMask
            from blendmask.modeling.centermask import meta_arch as centermask_meta_arch

            timer.method("paste", centermask_meta_arch, "postprocess_detections")
            timer.method("ROIAlign", model.roi_heads, "pool")
            timer.module("SAG-Mask", model.roi_heads.mask_head)
            if model.roi_heads.maskiou_head is not None:
                timer.module("MaskIoU", model.roi_heads.maskiou_head)
    else:
        timer.module("head", model.proposal_generator.rpn_head)
        timer.method("head", model.roi_heads, "_forward_box")  # box head + its post-processing
        if model.roi_heads.mask_on:
            timer.method("mask branch", model.roi_heads, "_forward_mask")
        timer.method("paste", type(model), "_postprocess")  # detectron2 calls it on the class


class PeakRSS:
    """Peak resident memory above the level at start, sampled in a background thread."""

    def __enter__(self):
        _release_free_memory()
        self.base = self.peak = _rss()
        self._stop = False
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop:
            self.peak = max(self.peak, _rss())
            time.sleep(0.005)

    def __exit__(self, *exc):
        self._stop = True
        self._thread.join()
        self.peak = max(self.peak, _rss())

    @property
    def mib(self):
        return (self.peak - self.base) / 2**20


def _release_free_memory():
    """Hand memory freed by earlier models back to the OS (glibc keeps it otherwise), so that the
    next model's peak above the starting level counts its own allocations."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the figure may then undercount
        pass


def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def _sync():
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def time_settings(settings, runs, warmup):
    """Time every setting ``runs`` times, interleaved round by round (alternating direction), so
    that slow drifts of the machine (thermal, other load) affect all models alike.

    settings: {key: (model, inputs, kind)}; all models' stages are registered on one StageTimer.
    """
    timer = StageTimer()
    for model, _, kind in settings.values():
        instrument(kind, model, timer)
    totals, stages, peaks, counts = defaultdict(list), defaultdict(lambda: defaultdict(list)), defaultdict(float), {}
    keys = list(settings)
    with torch.no_grad():
        for w in range(warmup):
            start = time.perf_counter()
            for key in keys:
                settings[key][0](settings[key][1])
            print(f"warm-up round {w + 1}/{warmup} took {time.perf_counter() - start:.0f} s", flush=True)
        for r in range(runs):
            round_start = time.perf_counter()
            for key in keys if r % 2 == 0 else reversed(keys):
                model, inputs, _ = settings[key]
                timer.reset()
                with PeakRSS() as mem:
                    _sync()
                    start = time.perf_counter()
                    out = model(inputs)
                    _sync()
                    totals[key].append(time.perf_counter() - start)
                for k, v in timer.times.items():
                    stages[key][k].append(v)
                peaks[key] = max(peaks[key], mem.mib)
                counts[key] = len(out[0]["instances"])
                del out
            print(f"round {r + 1}/{runs} took {time.perf_counter() - round_start:.0f} s", flush=True)
    timer.remove()
    return {
        key: {
            "median_ms": 1000 * statistics.median(totals[key]),
            "min_ms": 1000 * min(totals[key]),
            "max_ms": 1000 * max(totals[key]),
            "stages_ms": {k: 1000 * statistics.median(v) for k, v in stages[key].items()},
            "detections": counts[key],
            "peak_mib": peaks[key],
        }
        for key in keys
    }


def markdown(results, counts):
    lines = ["| model | input | N | median ms | spread ms | dets | peak MiB | stages (median ms) |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for (name, size, n), r in results.items():
        stages = ", ".join(f"{k} {v:.0f}" for k, v in r["stages_ms"].items())
        lines.append(f"| {name} | {size[0]}x{size[1]} | {n} | {r['median_ms']:.0f} | "
                     f"{r['min_ms']:.0f}-{r['max_ms']:.0f} | {r['detections']} | {r['peak_mib']:.0f} | {stages} |")
    lines += ["", "| ratio | " + " | ".join(f"N={n}" for n in counts) + " |", "|---|" + "---:|" * len(counts)]
    present = {m for m, _, _ in results}
    pairs = [("BlendMask / Mask R-CNN", "BlendMask R_50", "Mask R-CNN R50-FPN"),
             ("BlendMask / FCOS", "BlendMask R_50", "FCOS R_50"),
             ("BlendMask / Mask R-CNN NHWC", "BlendMask R_50", "Mask R-CNN R50-FPN NHWC"),
             ("Panoptic BlendMask / BlendMask", "Panoptic BlendMask R_50", "BlendMask R_50")]
    pairs += [(f"{m[len('BlendMask R_50 '):]} / BlendMask R_50", m, "BlendMask R_50")
              for m in MODELS if MODELS[m][3]]
    pairs += [(f"{m} / {base}", m, base) for m in sorted(present) for base in [_precision_base(m)] if base]
    for i, (label, a, b) in enumerate(pairs):
        if i >= 2 and not {a, b} <= present:  # the first two rows always, the others when measured
            continue
        row = []
        for n in counts:
            ra = next((r for (m, _, k), r in results.items() if m == a and k == n), None)
            rb = next((r for (m, _, k), r in results.items() if m == b and k == n), None)
            row.append(f"{ra['median_ms'] / rb['median_ms']:.2f}" if ra and rb else "-")
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    for name in sorted({m for m, _, _ in results}):
        runs = {k: r for (m, _, k), r in results.items() if m == name}
        if all(s in r["stages_ms"] for r in runs.values() for s in MASK_BRANCH_STAGES):
            share = [sum(runs[n]["stages_ms"][s] for s in MASK_BRANCH_STAGES)
                     / sum(runs[n]["stages_ms"].get(s, 0.0) for s in FCOS_STAGES) if n in runs else None
                     for n in counts]
            lines.append(f"| {name}: mask branch / FCOS | " + " | ".join(
                "-" if v is None else f"{v:.3f}" for v in share) + " |")
        first = next((r for (m, _, k), r in results.items() if m == name and k == counts[0]), None)
        last = next((r for (m, _, k), r in results.items() if m == name and k == counts[-1]), None)
        if first and last and len(counts) > 1:
            lines.append(f"| {name}: N={counts[-1]} / N={counts[0]} | "
                         f"{last['median_ms'] / first['median_ms']:.3f} |" + " |" * (len(counts) - 1))
    return "\n".join(lines)


def _precision_base(name):
    """The fp32 row of a "<model> <precision>" row (None for fp32 rows)."""
    model, _, precision = name.rpartition(" ")
    return model if precision in ("bf16", "fp16", "auto") else None


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for name in sorted({m for m, _, _ in results}):
        pts = sorted((n, r["median_ms"]) for (m, _, n), r in results.items() if m == name)
        ablation = bool(MODELS.get(name, (None, None, None, ()))[3])  # a speed-up switched off: dashed
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name, linestyle="--" if ablation else "-")
    ax.set_xlabel("detections per image")
    ax.set_ylabel("median latency (ms)")
    ax.set_title("CPU inference latency vs number of detections")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--counts", type=int, nargs="+", default=[10, 50, 100, 200])
    parser.add_argument("--size", type=int, nargs=2, default=[800, 1333])
    parser.add_argument("--models", nargs="+", choices=list(MODELS),
                        default=DEFAULT_MODELS)
    parser.add_argument("--out", default="output/benchmarks")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16", "fp16", "auto"],
                        help="TEST.PRECISION values, each a row per model (default fp32)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {}
    g = torch.Generator().manual_seed(0)
    for name in args.models:
        kind, config, size, ablations = MODELS[name]
        size = tuple(size or args.size)
        if args.tiny:
            size = (min(size[0], 128), min(size[1], 192))
        image = (torch.rand(3, *size, generator=g) * 255).round().to(args.device)
        inputs = [{"image": image, "height": size[0], "width": size[1]}]
        for n in args.counts:
            for precision in args.precision:
                row = name if precision == "fp32" else f"{name} {precision}"
                settings[(row, size, n)] = (build(kind, config, n, args.tiny, ablations, precision, args.device),
                                            inputs, kind)
    print(f"timing {len(settings)} settings x {args.runs} interleaved runs after {args.warmup} warm-up", flush=True)
    results = time_settings(settings, args.runs, args.warmup)
    for (name, size, n), r in results.items():
        print(f"{name} {size[0]}x{size[1]} N={n}: {r['median_ms']:.0f} ms ({r['detections']} dets)", flush=True)
    table = markdown(results, args.counts)
    print(f"\ntorch {torch.__version__}, {args.threads} threads, {args.runs} runs after {args.warmup} warm-up\n")
    print(table)
    (out / "inference.md").write_text(table + "\n")
    (out / "inference.json").write_text(json.dumps(
        [{"model": m, "size": s, "count": n, **r} for (m, s, n), r in results.items()], indent=1))
    plot(results, out / "latency_vs_detections.png")
    print(f"\nwrote {out / 'inference.md'}, {out / 'inference.json'}, {out / 'latency_vs_detections.png'}")


if __name__ == "__main__":
    main()
