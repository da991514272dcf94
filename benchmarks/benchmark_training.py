#!/usr/bin/env python
"""Training throughput of BlendMask vs Mask R-CNN vs FCOS at a fixed batch, in one process.

    python benchmarks/benchmark_training.py [--batch 2] [--size 512 683] [--iters 5] [--threads 2] [--tiny]

Random init, the same synthetic batch for every model (random boxes with box-shaped polygon
masks), SGD steps (forward + backward + step) with momentum and learning rate 0: a randomly
initialised Mask R-CNN diverges to Inf boxes after one real step, and the arithmetic of a step is
the same at any rate. Reports the median seconds per iteration after one warm-up iteration and the
peak RSS above the pre-run level.
"""

import argparse
import statistics
import time

import numpy as np
import torch
from benchmark_inference import MODELS, REPO, TINY_OPTS, PeakRSS, zero_box_deltas
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances, PolygonMasks
from detectron2.utils.events import EventStorage

TRAINED = ["BlendMask R_50", "FCOS R_50", "Mask R-CNN R50-FPN"]


def build_for_training(name, tiny):
    from detectron2 import model_zoo
    from detectron2.config import get_cfg

    from blendmask import load_config

    kind, config, _, _ = MODELS[name]
    opts = ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu"] + (TINY_OPTS if tiny else [])
    if kind == "ours":
        cfg = load_config(REPO / config, opts + (["MODEL.BASIS_MODULE.CONVS_DIM", 32] if tiny else []))
    else:
        cfg = get_cfg()
        cfg.merge_from_file(model_zoo.get_config_file(config))
        cfg.merge_from_list(opts)
    torch.manual_seed(0)
    model = build_model(cfg).train()
    if kind == "d2":
        zero_box_deltas(model)
    return model


def synthetic_batch(batch, h, w, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(batch):
        n = 6
        xy = rng.uniform(0, [w * 0.7, h * 0.7], size=(n, 2))
        wh = rng.uniform(16, [w * 0.3, h * 0.3], size=(n, 2))
        boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
        inst = Instances((h, w))
        inst.gt_boxes = Boxes(torch.from_numpy(boxes))
        inst.gt_classes = torch.from_numpy(rng.integers(0, 80, n))
        inst.gt_masks = PolygonMasks([[np.array([x0, y0, x1, y0, x1, y1, x0, y1])] for x0, y0, x1, y1 in boxes])
        out.append({"image": torch.from_numpy(rng.uniform(0, 255, (3, h, w)).astype(np.float32)),
                    "instances": inst})
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, nargs=2, default=[512, 683])
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    h, w = (96, 128) if args.tiny else args.size
    batch = synthetic_batch(args.batch, h, w)
    rows = []
    for name in TRAINED:
        model = build_for_training(name, args.tiny)
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0, momentum=0.9)
        times = []
        with PeakRSS() as mem, EventStorage():  # detectron2's heads log training statistics
            for i in range(args.iters + 1):
                start = time.perf_counter()
                loss = sum(model(batch).values())
                opt.zero_grad()
                loss.backward()
                opt.step()
                if i:  # the first iteration is warm-up
                    times.append(time.perf_counter() - start)
        rows.append((name, statistics.median(times), min(times), max(times), mem.mib, loss.item()))
        print(f"{name}: {rows[-1][1]:.2f} s/iter", flush=True)
    print(f"\nbatch {args.batch} x {h}x{w}, torch {torch.__version__}, {args.threads} threads, "
          f"{args.iters} iterations after 1 warm-up\n")
    print("| model | s/iter (median) | spread | peak MiB | last loss |\n|---|---:|---:|---:|---:|")
    for name, med, lo, hi, mib, loss in rows:
        print(f"| {name} | {med:.2f} | {lo:.2f}-{hi:.2f} | {mib:.0f} | {loss:.3f} |")
    base = dict((r[0], r[1]) for r in rows)
    print(f"\nBlendMask / Mask R-CNN: {base['BlendMask R_50'] / base['Mask R-CNN R50-FPN']:.2f}; "
          f"BlendMask / FCOS: {base['BlendMask R_50'] / base['FCOS R_50']:.2f}")


if __name__ == "__main__":
    main()
