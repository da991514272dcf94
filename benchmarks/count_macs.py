#!/usr/bin/env python
"""Multiply-accumulates of a model's convolutions and matrix products, per part, at forced detection counts.

    python benchmarks/count_macs.py [--config configs/CenterMask/centermask_V_39_eSE_FPN_ms_3x.yaml] \\
        [--counts 10 50 100] [--size 800 1333] [--baseline-opts KEY VALUE ...]

The arithmetic floor under the latency ratios of benchmarks/benchmark_inference.py and
benchmarks/benchmark_solov2.py: a randomly initialised model, built as those benchmarks build it
(the detection count forced), one image, counted by ``torch.utils.flop_counter.FlopCounterMode``
(convolutions, grouped and transposed included, and matrix products, whether a module or a
functional call ran them; RoIAlign, NMS, resizing and pasting are not counted). Prints per count:
each top-level part (``roi_heads.*`` split per head), "functional" (what ran outside every
module: SOLOv2's dynamic masks, AggMask*'s per-cell networks), the total and its growth against
the first count. For FCOS models also the ratio mask branch / (backbone + FCOS).
``--baseline-opts``: the same config with these overrides is counted too and the ratio of the
totals printed (e.g. ``MODEL.META_ARCHITECTURE SOLOv2`` on an AggMask* config: the aggregation's cost).
"""

import argparse
import logging
import sys
from collections import defaultdict
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))  # the latency benchmarks' model builders
FUNCTIONAL = "functional"


def count_macs(model, image) -> dict:
    """{module name: MACs} of what ran on ``image``, each module's own (its children's excluded);
    ``"functional"`` holds what ran in the top-level module's own code."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model([{"image": image, "height": image.shape[1], "width": image.shape[2]}])
    totals = {name: sum(ops.values()) / 2 for name, ops in counter.get_flop_counts().items() if name != "Global"}
    root = type(model).__name__
    own = dict(totals)
    for name, total in totals.items():  # subtract each module from its nearest counted ancestor
        # (a ModuleList that is iterated, never called, has no entry of its own)
        parts = name.split(".")
        parent = next((p for p in (".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)) if p in totals), None)
        if parent is not None:
            own[parent] -= total
    out = {}
    for name, value in own.items():
        key = FUNCTIONAL if name == root else name[len(root) + 1:]
        if value:
            out[key] = out.get(key, 0) + value
    return out


def parts_of(macs: dict) -> dict:
    parts = defaultdict(float)
    for name, value in macs.items():
        top = name.split(".")[0]
        parts[".".join(name.split(".")[:2]) if top == "roi_heads" else top] += value
    return dict(parts)


def build_for_count(config: str, count: int, image: torch.Tensor, opts=()):
    """The randomly initialised model with ``count`` forced detections, as the latency benchmarks build it."""
    from blendmask import load_config

    meta = load_config(REPO / config, list(opts)).MODEL.META_ARCHITECTURE
    if meta in ("SOLOv2", "AggMask"):
        from benchmark_solov2 import build

        return build(count, image, False, REPO / config, list(opts)).eval()
    from benchmark_inference import build

    if opts:
        raise ValueError("--baseline-opts is supported for SOLOv2 and AggMask* configs")
    return build("ours", config, count, False)


def describe(parts: dict, first_total: float) -> str:
    parts = dict(parts)
    total = sum(parts.values())
    fcos = parts.get("backbone", 0) + parts.get("proposal_generator", 0)
    text = "; ".join(f"{k} {v / 1e9:.2f}" for k, v in sorted(parts.items())) + " GMAC"
    if parts.get("proposal_generator"):
        text += f"; mask branch / (backbone + FCOS) {(total - fcos) / fcos:.3f}"
    return text + f"; total {total / 1e9:.1f} GMAC ({100 * (total / first_total - 1):+.1f}% vs the first count)"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/CenterMask/centermask_V_39_eSE_FPN_ms_3x.yaml")
    parser.add_argument("--counts", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--size", type=int, nargs=2, default=[800, 1333])
    parser.add_argument("--baseline-opts", nargs="+", default=None, metavar="KEY VALUE",
                        help="also count the config with these overrides and print the ratio of the totals")
    args = parser.parse_args(argv)
    if args.baseline_opts and len(args.baseline_opts) % 2:
        parser.error("--baseline-opts takes KEY VALUE pairs")
    logging.disable(logging.WARNING)
    torch.set_num_threads(2)
    image = torch.randint(0, 255, (3, *args.size), generator=torch.Generator().manual_seed(0)).float()
    first = {}
    for count in args.counts:
        runs = [("model", ())] + ([("baseline", args.baseline_opts)] if args.baseline_opts else [])
        totals = {}
        for label, opts in runs:
            parts = parts_of(count_macs(build_for_count(args.config, count, image, opts), image))
            totals[label] = sum(parts.values())
            first.setdefault(label, totals[label])
            name = "" if label == "model" else f" baseline ({' '.join(opts)})"
            print(f"{count} detections{name}: {describe(parts, first[label])}", flush=True)
        if "baseline" in totals:
            ratio = totals["model"] / totals["baseline"]
            print(f"{count} detections: model / baseline {ratio:.3f} ({100 * (ratio - 1):+.1f}%)", flush=True)


if __name__ == "__main__":
    main()
