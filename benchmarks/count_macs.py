#!/usr/bin/env python
"""Multiply-accumulates of a model's convolutions and linear layers, per part, at forced detection counts.

    python benchmarks/count_macs.py [--config configs/CenterMask/centermask_V_39_eSE_FPN_ms_3x.yaml] \\
        [--counts 10 50 100] [--size 800 1333]

The arithmetic floor under the latency ratios of benchmarks/benchmark_inference.py: a randomly
initialised model (built as that benchmark builds it, with the detection count forced), one image,
forward hooks on every Conv2d, ConvTranspose2d and Linear. ROIAlign, NMS, resizing and pasting are
not counted. Prints per count: backbone, FCOS head, each RoI head (CenterMask) or the rest, the
ratio mask branch / (backbone + FCOS) and the growth of the total against the first count.
"""

import argparse
import logging
import sys
from collections import defaultdict
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def count_macs(model, image) -> dict:
    """{module name: MACs} of the convolutions and linear layers that ran on ``image``."""
    macs = defaultdict(float)

    def hook(name):
        def record(module, inputs, output):
            if isinstance(module, torch.nn.Linear):
                macs[name] += output.numel() * module.in_features
            elif isinstance(module, torch.nn.ConvTranspose2d):
                k = module.kernel_size[0] * module.kernel_size[1]
                macs[name] += inputs[0].numel() * module.out_channels // module.groups * k
            else:
                k = module.kernel_size[0] * module.kernel_size[1]
                macs[name] += output.numel() * module.in_channels // module.groups * k
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear))]
    try:
        with torch.no_grad():
            model([{"image": image, "height": image.shape[1], "width": image.shape[2]}])
    finally:
        for h in handles:
            h.remove()
    return macs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/CenterMask/centermask_V_39_eSE_FPN_ms_3x.yaml")
    parser.add_argument("--counts", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--size", type=int, nargs=2, default=[800, 1333])
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO / "benchmarks"))
    from benchmark_inference import build

    logging.disable(logging.WARNING)
    torch.set_num_threads(2)
    image = torch.randint(0, 255, (3, *args.size), generator=torch.Generator().manual_seed(0)).float()
    first = None
    for count in args.counts:
        macs = count_macs(build("ours", args.config, count, False), image)
        parts = defaultdict(float)
        for name, value in macs.items():
            top = name.split(".")[0]
            parts[".".join(name.split(".")[:2]) if top == "roi_heads" else top] += value
        detector = parts.pop("backbone", 0) + parts.pop("proposal_generator", 0)
        total = detector + sum(parts.values())
        first = first or total
        rest = ", ".join(f"{k} {v / 1e9:.2f}" for k, v in sorted(parts.items()))
        print(f"{count} detections: backbone + FCOS {detector / 1e9:.1f} GMAC; {rest} GMAC; "
              f"mask branch / (backbone + FCOS) {sum(parts.values()) / detector:.3f}; "
              f"total {total / 1e9:.1f} GMAC ({100 * (total / first - 1):+.1f}% vs {args.counts[0]})", flush=True)


if __name__ == "__main__":
    main()
