#!/usr/bin/env python
"""Inference latency of our SOLOv2 R50 against AdelaiDet's own SOLOv2 code, same weights, same input.

    python benchmarks/benchmark_adelaidet_solov2.py --adelaidet PATH/TO/AdelaiDet [--count 100]
        [--rounds 6] [--runs 1] [--warmup 1] [--threads 2] [--size 800 1333] [--nchw] [--tiny]
        [--adelaidet-config YAML] [--out output/benchmarks]

``--adelaidet`` is a checkout of https://github.com/aim-uofa/AdelaiDet (or the environment variable
ADELAIDET_PATH); nothing is copied from it and nothing in it is changed. AdelaiDet's code is imported
from that path at run time, uncompiled: a finder appended to ``sys.meta_path`` of the AdelaiDet
process answers ``adet._C`` (the compiled extension, which SOLOv2 never calls) and ``skimage`` (only
BoxInst uses it) with placeholder modules whose functions raise, and only when the real modules are
missing.

Steps:

1. A "prepare" process builds our SOLOv2 from ``configs/SOLOv2/R50_3x.yaml`` with random weights
   (seed 0) and saves its state dict, the input (one random image, ``--size``) and the forced
   detection count: a random model's category scores lie far below SOLOv2's 0.1, so the score
   threshold is set halfway between the N-th and the (N+1)-th largest point-NMS'd category score,
   with NMS_PRE = MAX_PER_IMG = N and UPDATE_THR 0 (as benchmarks/benchmark_solov2.py does).
   These are config keys both projects share, so both models are built from their own config
   with the same overrides.
2. Each round starts one process per implementation, the order alternating between rounds, so
   that the machine's load falls on both alike. A process builds its model, loads the state dict
   strictly (a missing or unexpected key stops the benchmark), runs ``--warmup`` forwards and then
   ``--runs`` timed ones (eval mode, no_grad), with per-stage times from forward hooks and
   function wrappers. AdelaiDet's model is built from its own ``configs/SOLOv2/R50_3x.yaml``.
3. The first process of each implementation saves its detections; they must agree (same count,
   classes, scores within 1e-4, every mask IoU >= 0.98: the reference fixture's tolerances) or
   the benchmark exits with status 1 after printing the table.

The table gives, per implementation, the median over all timed forwards, the spread, the median
per stage, and the ratio ours / AdelaiDet: of the pooled medians, as the median of the per-round
ratios, and of the fastest runs (meaningful only when both had undisturbed runs: on a shared
machine one side's single quiet moment decides it). Stages:
backbone+FPN, instance head, mask head (forward hooks), matrix NMS, resize (the two bilinear
resizes of the soft masks), candidates+masks (the rest of the per-image inference: point NMS,
candidates, dynamic masks, maskness, sorting) and boxes (ours only: the masks' tight boxes, which
AdelaiDet does not compute). ``--nchw`` runs ours in AdelaiDet's memory
format (TEST.CHANNELS_LAST_ON_CPU False), where the outputs are bit-equal.
"""

import argparse
import importlib.abc
import importlib.machinery
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))  # its sibling stage_timer, however it is loaded
from stage_timer import StageTimer  # noqa: E402

OURS, ADELAIDET = "ours", "AdelaiDet"
OUR_CONFIG = REPO / "configs" / "SOLOv2" / "R50_3x.yaml"
ADELAIDET_CONFIG = Path("configs") / "SOLOv2" / "R50_3x.yaml"  # inside the AdelaiDet checkout
STAGES = ("backbone+FPN", "instance head", "mask head", "candidates+masks", "matrix NMS", "resize", "boxes")
TINY_SIZE = (96, 128)
SCORE_TOLERANCE, MIN_MASK_IOU = 1e-4, 0.98


# ---------------------------------------------------------------- AdelaiDet without compiling it

class PlaceholderModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """A last-resort finder: modules in ``names`` that no other finder provides become
    placeholders whose every public attribute is a function raising NotImplementedError;
    ``packages`` become empty packages (to hold placeholder submodules).
    Appended to ``sys.meta_path``, so a real (compiled or installed) module always wins."""

    def __init__(self, names, packages=()):
        self.names = set(names) | set(packages)
        self.packages = set(packages)

    def find_spec(self, name, path=None, target=None):
        if name in self.names:
            return importlib.machinery.ModuleSpec(name, self, is_package=name in self.packages)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        name = module.__name__
        if name in self.packages:  # attributes of a package are its (placeholder) submodules
            return

        def __getattr__(attr):
            if attr.startswith("__"):
                raise AttributeError(attr)

            def unavailable(*args, **kwargs):
                raise NotImplementedError(f"{name}.{attr}: a placeholder (the benchmark runs AdelaiDet uncompiled)")
            return unavailable

        module.__getattr__ = __getattr__


def import_adelaidet(checkout: Path):
    """Import ``adet`` from ``checkout`` uncompiled (see the module docstring); returns its get_cfg."""
    sys.meta_path.append(PlaceholderModules({"adet._C", "skimage.color"}, packages={"skimage"}))
    sys.path.insert(0, str(checkout))
    from adet.config import get_cfg

    return get_cfg


def check_checkout(path) -> Path:
    """The AdelaiDet checkout, or SystemExit with what is missing."""
    if not path:
        raise SystemExit("give the path of an AdelaiDet checkout (git clone https://github.com/aim-uofa/AdelaiDet) "
                         "with --adelaidet PATH or the environment variable ADELAIDET_PATH")
    path = Path(path).expanduser().resolve()
    if not (path / "adet" / "modeling" / "solov2" / "solov2.py").is_file():
        raise SystemExit(f"--adelaidet {path}: not an AdelaiDet checkout (no adet/modeling/solov2/solov2.py there)")
    return path


# ---------------------------------------------------------------- forcing N detections

def forced_threshold(scores: torch.Tensor, count: int) -> float:
    """A score threshold that lets exactly ``count`` of ``scores`` through (``> threshold``):
    halfway between the count-th and the (count+1)-th largest, so that float rounding that differs
    between two implementations does not change the count."""
    top = scores.flatten().double().topk(min(count + 1, scores.numel())).values
    if top.numel() <= count:
        return float(top[-1]) / 2
    threshold = (top[count - 1] + top[count]) / 2
    if not top[count] < threshold.float().double() < top[count - 1]:
        raise ValueError(f"the {count}-th and {count + 1}-th scores are equal in float32; choose another count")
    return float(threshold)


def forcing_opts(threshold: float, count: int):
    """MODEL.SOLOV2 overrides (names shared by AdelaiDet and us) that pass exactly the candidates above
    ``threshold`` through pre-NMS top-k, matrix NMS and the final top-k."""
    return ["MODEL.SOLOV2.SCORE_THR", threshold, "MODEL.SOLOV2.NMS_PRE", count, "MODEL.SOLOV2.MAX_PER_IMG", count,
            "MODEL.SOLOV2.UPDATE_THR", 0.0]


def tiny_opts():
    """benchmark_solov2's narrow widths (config keys both projects read)."""
    return ["MODEL.RESNETS.STEM_OUT_CHANNELS", 16, "MODEL.RESNETS.RES2_OUT_CHANNELS", 32,
            "MODEL.RESNETS.WIDTH_PER_GROUP", 8, "MODEL.FPN.OUT_CHANNELS", 64,
            "MODEL.SOLOV2.INSTANCE_IN_CHANNELS", 64, "MODEL.SOLOV2.MASK_IN_CHANNELS", 64,
            "MODEL.SOLOV2.INSTANCE_CHANNELS", 64, "MODEL.SOLOV2.MASK_CHANNELS", 64,
            "MODEL.SOLOV2.NUM_MASKS", 32, "MODEL.SOLOV2.NUM_KERNELS", 32]


def build_ours(opts, nchw: bool = False):
    from blendmask import build_model_and_load, load_config

    opts = ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu", "TEST.PRECISION", "fp32", *opts]
    if nchw:
        opts += ["TEST.CHANNELS_LAST_ON_CPU", False]
    return build_model_and_load(load_config(OUR_CONFIG, opts)).eval()


def build_adelaidet(checkout: Path, config: Path, opts):
    get_cfg = import_adelaidet(checkout)
    from detectron2.modeling import build_model

    cfg = get_cfg()
    cfg.merge_from_file(str(config))
    cfg.merge_from_list(["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu", *opts])
    return build_model(cfg).eval()


def prepare(workdir: Path, count: int, size, tiny: bool) -> dict:
    """Our randomly initialised model's state dict, the input image and the forcing overrides,
    saved to ``workdir/setup.pt``."""
    from blendmask.modeling.solov2 import point_nms

    opts = tiny_opts() if tiny else []
    torch.manual_seed(0)
    model = build_ours(opts)
    image = (torch.rand(3, *size, generator=torch.Generator().manual_seed(0)) * 255).round()
    with torch.no_grad():
        images = model.preprocess_image([{"image": image}])
        cate = model.heads(model.backbone(model.backbone_input(images.tensor)))[0]
        scores = torch.cat([point_nms(torch.sigmoid(x)).flatten() for x in cate])
    setup = {"state_dict": model.state_dict(), "image": image, "count": count,
             "opts": opts + forcing_opts(forced_threshold(scores, count), count)}
    torch.save(setup, workdir / "setup.pt")
    return setup


# ---------------------------------------------------------------- one implementation, timed

def load_strict(model, state_dict, name: str):
    result = model.load_state_dict(state_dict, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise SystemExit(f"{name}: the state dict does not match: missing {result.missing_keys[:5]} "
                         f"({len(result.missing_keys)}), unexpected {result.unexpected_keys[:5]} "
                         f"({len(result.unexpected_keys)})")


def instrument_ours(model, timer: StageTimer):
    from blendmask.modeling.solov2 import inference as solov2_inference
    from blendmask.modeling.solov2 import meta_arch

    timer.module("backbone+FPN", model.backbone)
    timer.module("instance head", model.ins_head)
    timer.module("mask head", model.mask_head)
    timer.method("per-image inference", meta_arch, "solov2_inference_single")
    timer.method("matrix NMS", solov2_inference, "matrix_nms")
    timer.method("resize", meta_arch, "resize_mask_probs")
    timer.method("boxes", meta_arch, "boxes_from_masks")


class _TimedInterpolate:
    """Stands in for ``torch.nn.functional`` in AdelaiDet's solov2 module: ``interpolate`` calls made
    while ``active`` count as the "resize" stage (the per-image mask resizes); the rest passes through."""

    def __init__(self, functional, timer: StageTimer):
        self._functional, self._timer, self.active = functional, timer, False

    def __getattr__(self, name):
        return getattr(self._functional, name)

    def interpolate(self, *args, **kwargs):
        if not self.active:
            return self._functional.interpolate(*args, **kwargs)
        start = time.perf_counter()
        try:
            return self._functional.interpolate(*args, **kwargs)
        finally:
            self._timer.times["resize"] += time.perf_counter() - start


def instrument_adelaidet(model, timer: StageTimer):
    solov2_module = sys.modules[type(model).__module__]
    functional = _TimedInterpolate(solov2_module.F, timer)
    solov2_module.F = functional
    timer.module("backbone+FPN", model.backbone)
    timer.module("instance head", model.ins_head)
    timer.module("mask head", model.mask_head)
    timer.method("point NMS", solov2_module, "point_nms")
    timer.method("matrix NMS", solov2_module, "matrix_nms")
    single = model.inference_single_image

    def inference_single_image(*args, **kwargs):
        functional.active = True
        try:
            return single(*args, **kwargs)
        finally:
            functional.active = False

    model.inference_single_image = inference_single_image
    timer.method("per-image inference", model, "inference_single_image")


def exclusive_stages(times: dict, resize_inside: bool) -> dict:
    """Stage times in ms; "candidates+masks" is the per-image inference (with point NMS) less the
    matrix NMS it contains, and less the resize where it contains that too (AdelaiDet's does; ours
    resizes after it)."""
    ms = {k: 1000 * v for k, v in times.items()}
    whole = ms.pop("per-image inference", 0.0) + ms.pop("point NMS", 0.0)
    ms["candidates+masks"] = whole - ms.get("matrix NMS", 0.0) - (ms.get("resize", 0.0) if resize_inside else 0.0)
    return ms


def worker(role: str, workdir: Path, runs: int, warmup: int, threads: int, save_outputs: bool,
           checkout=None, adelaidet_config=None, nchw: bool = False) -> dict:
    """Build ``role``'s model, time ``runs`` forwards; returns (and writes ``workdir/<role>-<pid>.json``)
    the totals and stages in ms, and with ``save_outputs`` writes ``workdir/<role>.pt``."""
    torch.set_num_threads(threads)
    setup = torch.load(workdir / "setup.pt", weights_only=True)
    if role == OURS:
        model = build_ours(setup["opts"], nchw)
        add_stages = instrument_ours
    else:
        model = build_adelaidet(checkout, adelaidet_config, setup["opts"])
        add_stages = instrument_adelaidet
    load_strict(model, setup["state_dict"], role)
    size = setup["image"].shape[-2:]
    inputs = [{"image": setup["image"], "height": size[0], "width": size[1]}]
    timer = StageTimer()
    add_stages(model, timer)
    totals, stages = [], []
    with torch.no_grad():
        for _ in range(warmup):
            model(inputs)
        for _ in range(runs):
            timer.reset()
            start = time.perf_counter()
            out = model(inputs)
            totals.append(1000 * (time.perf_counter() - start))
            stages.append(exclusive_stages(timer.times, resize_inside=role == ADELAIDET))
    instances = out[0]["instances"]
    if save_outputs:
        torch.save({"scores": instances.scores.float(), "classes": instances.pred_classes.long(),
                    "masks": instances.pred_masks.bool()}, workdir / f"{role}.pt")
    result = {"role": role, "totals_ms": totals, "stages_ms": stages, "detections": len(instances),
              "threads": torch.get_num_threads()}
    (workdir / f"{role}-{os.getpid()}.json").write_text(json.dumps(result))
    return result


# ---------------------------------------------------------------- agreement and the table

def agreement(ours: dict, theirs: dict) -> dict:
    """Match detections one to one (same class, scores within SCORE_TOLERANCE, the best mask IoU;
    order may differ among near-equal scores) and measure the differences."""
    n_ours, n_theirs = len(ours["scores"]), len(theirs["scores"])
    free = set(range(n_theirs))
    score_diffs, ious, flipped = [], [], 0
    for i in range(n_ours):
        best, best_iou = None, -1.0
        for j in sorted(free, key=lambda j: abs(j - i)):
            if theirs["classes"][j] != ours["classes"][i]:
                continue
            if abs(float(theirs["scores"][j] - ours["scores"][i])) > SCORE_TOLERANCE:
                continue
            a, b = ours["masks"][i], theirs["masks"][j]
            union = int((a | b).sum())
            iou = int((a & b).sum()) / union if union else 1.0
            if iou > best_iou:
                best, best_iou = j, iou
            if iou == 1.0:
                break
        if best is None:
            continue
        free.discard(best)
        score_diffs.append(abs(float(theirs["scores"][best] - ours["scores"][i])))
        ious.append(best_iou)
        flipped += int((ours["masks"][i] ^ theirs["masks"][best]).sum())
    matched = len(ious)
    return {"detections": (n_ours, n_theirs), "matched": matched,
            "max_score_diff": max(score_diffs, default=0.0), "min_mask_iou": min(ious, default=1.0),
            "flipped_pixels": flipped, "foreground_pixels": int(theirs["masks"].sum()),
            "ok": n_ours == n_theirs == matched and min(ious, default=1.0) >= MIN_MASK_IOU}


def schedule(rounds: int):
    """The process order of each round: ours first in even rounds, AdelaiDet first in odd ones."""
    return [(OURS, ADELAIDET) if r % 2 == 0 else (ADELAIDET, OURS) for r in range(rounds)]


def summarize(results) -> dict:
    """``results``: per round, {role: worker result}. Pooled medians per role and stage, and the
    median of the per-round ratios ours / AdelaiDet."""
    summary = {}
    for role in (OURS, ADELAIDET):
        totals = [t for rnd in results for t in rnd[role]["totals_ms"]]
        stage_runs = [s for rnd in results for s in rnd[role]["stages_ms"]]
        summary[role] = {
            "median_ms": statistics.median(totals), "min_ms": min(totals), "max_ms": max(totals), "runs": len(totals),
            "stages_ms": {k: statistics.median([s.get(k, 0.0) for s in stage_runs])
                          for k in STAGES if any(k in s for s in stage_runs)},
        }
    summary["ratio"] = summary[OURS]["median_ms"] / summary[ADELAIDET]["median_ms"]
    summary["round_ratios"] = [
        statistics.median(rnd[OURS]["totals_ms"]) / statistics.median(rnd[ADELAIDET]["totals_ms"]) for rnd in results]
    summary["median_round_ratio"] = statistics.median(summary["round_ratios"])
    summary["fastest_ratio"] = summary[OURS]["min_ms"] / summary[ADELAIDET]["min_ms"]
    return summary


def markdown(summary: dict, agree: dict, size, threads: int, count: int) -> str:
    head = "| implementation | runs | median ms | spread ms | " + " | ".join(STAGES) + " |"
    lines = [f"SOLOv2 R50 fp32, random weights shared by both, input {size[0]}x{size[1]}, {count} forced "
             f"detections, {threads} thread(s), one process per implementation and round", "",
             head, "|---|---:|---:|---|" + "---:|" * len(STAGES)]
    for role in (OURS, ADELAIDET):
        r = summary[role]
        cells = " | ".join(f"{r['stages_ms'][k]:.0f}" if k in r["stages_ms"] else "-" for k in STAGES)
        lines.append(f"| {role} | {r['runs']} | {r['median_ms']:.0f} | {r['min_ms']:.0f}-{r['max_ms']:.0f} | {cells} |")
    ratios = []
    for k in STAGES:
        a, b = summary[OURS]["stages_ms"].get(k), summary[ADELAIDET]["stages_ms"].get(k)
        ratios.append(f"{a / b:.2f}" if a is not None and b else "-")
    lines.append(f"| ours / AdelaiDet | | {summary['ratio']:.3f} | | " + " | ".join(ratios) + " |")
    per_round = ", ".join(f"{x:.3f}" for x in summary["round_ratios"])
    lines += ["", f"Median of the per-round ratios: {summary['median_round_ratio']:.3f} (rounds: {per_round}); "
              f"ratio of the fastest runs: {summary['fastest_ratio']:.3f}.",
              f"Agreement: {agree['detections'][0]} vs {agree['detections'][1]} detections, {agree['matched']} "
              f"matched, scores within {agree['max_score_diff']:.2g}, smallest mask IoU {agree['min_mask_iou']:.5f}, "
              f"{agree['flipped_pixels']} of {agree['foreground_pixels']} mask pixels differ"
              f" ({'ok' if agree['ok'] else 'NOT within tolerance'})."]
    return "\n".join(lines)


# ---------------------------------------------------------------- processes

def _run_process(role: str, workdir: Path, args, save_outputs: bool) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", role, "--workdir", str(workdir),
           "--runs", str(args.runs), "--warmup", str(args.warmup), "--threads", str(args.threads)]
    if role == ADELAIDET:
        cmd += ["--adelaidet", str(args.adelaidet), "--adelaidet-config", str(args.adelaidet_config)]
    if args.nchw:
        cmd.append("--nchw")
    if save_outputs:
        cmd.append("--save-outputs")
    before = set(workdir.glob(f"{role}-*.json"))
    subprocess.run(cmd, check=True, env=env)
    (path,) = set(workdir.glob(f"{role}-*.json")) - before
    return json.loads(path.read_text())


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adelaidet", default=os.environ.get("ADELAIDET_PATH"),
                        help="AdelaiDet checkout (default: $ADELAIDET_PATH)")
    parser.add_argument("--adelaidet-config", help=f"AdelaiDet's yaml (default: CHECKOUT/{ADELAIDET_CONFIG})")
    parser.add_argument("--count", type=int, default=100, help="detections forced in both")
    parser.add_argument("--rounds", type=int, default=6, help="processes per implementation")
    parser.add_argument("--runs", type=int, default=1, help="timed forwards per process")
    parser.add_argument("--warmup", type=int, default=1, help="untimed forwards per process")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, nargs=2, default=[800, 1333])
    parser.add_argument("--nchw", action="store_true", help="ours in NCHW (AdelaiDet's memory format)")
    parser.add_argument("--tiny", action="store_true", help="narrow models and a small image (tests)")
    parser.add_argument("--out", default=str(REPO / "output" / "benchmarks"))
    parser.add_argument("--worker", choices=[OURS, ADELAIDET], help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--save-outputs", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        checkout = Path(args.adelaidet) if args.adelaidet else None
        config = Path(args.adelaidet_config) if args.adelaidet_config else None
        worker(args.worker, Path(args.workdir), args.runs, args.warmup, args.threads, args.save_outputs,
               checkout, config, args.nchw)
        return None
    args.adelaidet = check_checkout(args.adelaidet)
    args.adelaidet_config = Path(args.adelaidet_config or args.adelaidet / ADELAIDET_CONFIG).resolve()
    if not args.adelaidet_config.is_file():
        raise SystemExit(f"AdelaiDet's config {args.adelaidet_config} is missing (--adelaidet-config)")
    size = TINY_SIZE if args.tiny else tuple(args.size)
    with tempfile.TemporaryDirectory(prefix="solov2_vs_adelaidet_") as tmp:
        workdir = Path(tmp)
        # prepare in a process of its own, so that this one never holds a model or imports either project
        code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); import benchmark_adelaidet_solov2 as b; "
                f"from pathlib import Path; b.prepare(Path({tmp!r}), {args.count}, {size!r}, {args.tiny})")
        subprocess.run([sys.executable, "-c", code], check=True)
        results = []
        for r, order in enumerate(schedule(args.rounds)):
            results.append({role: _run_process(role, workdir, args, save_outputs=r == 0) for role in order})
            print(f"round {r + 1}/{args.rounds}: " + ", ".join(
                f"{role} {statistics.median(results[-1][role]['totals_ms']):.0f} ms" for role in order), flush=True)
        agree = agreement(torch.load(workdir / f"{OURS}.pt"), torch.load(workdir / f"{ADELAIDET}.pt"))
    summary = summarize(results)
    table = markdown(summary, agree, size, args.threads, args.count)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "adelaidet_solov2.md").write_text(table + "\n")
    (out / "adelaidet_solov2.json").write_text(json.dumps({"summary": summary, "agreement": agree,
                                                           "rounds": results}, indent=1))
    if not agree["ok"]:
        raise SystemExit(1)
    return summary, agree


if __name__ == "__main__":
    main()
