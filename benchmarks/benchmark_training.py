#!/usr/bin/env python
"""Training throughput of BlendMask vs Mask R-CNN vs FCOS at a fixed batch, in one process
(also CenterMask, SOLOv2 R50 and AggMask* R50 with ``--models``).

    python benchmarks/benchmark_training.py [--batch 2] [--size 512 683] [--iters 5] [--threads 2] [--tiny]
        [--models "BlendMask R_50" ...] [--precision fp32 bf16] [--device cpu]

Random init, the same synthetic batch for every model (random boxes with box-shaped polygon
masks), SGD steps (forward + backward + step) with momentum and learning rate 0: a randomly
initialised Mask R-CNN diverges to Inf boxes after one real step, and the arithmetic of a step is
the same at any rate. Reports the median seconds per iteration after one warm-up iteration and the
peak RSS above the pre-run level. ``--precision`` steps each model in every listed precision, the
precisions interleaved step by step (the same drift hits all): ``bf16``/``fp16`` run the forward and
the losses under ``torch.autocast`` as ``SOLVER.AMP.ENABLED`` training does
(blendmask.engine.amp.MixedPrecisionTrainer; fp16 with a gradient scaler), with a "<precision> /
fp32" ratio per model. ``--device cuda`` runs on a GPU.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its sibling benchmark_inference, however it is loaded
from benchmark_inference import MODELS, REPO, TINY_OPTS, PeakRSS, zero_box_deltas  # noqa: E402
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances, PolygonMasks
from detectron2.utils.events import EventStorage

TRAINED = ["BlendMask R_50", "FCOS R_50", "Mask R-CNN R50-FPN"]
# models benchmark_inference times with its own forced-count code (benchmark_solov2), trained here alike
TRAINING_MODELS = {**MODELS,
                   "SOLOv2 R50": ("ours", "configs/SOLOv2/R50_3x.yaml", None, ()),
                   "AggMask* R50": ("ours", "configs/AggMask/AggMaskStar_R50.yaml", None, ())}


def build_for_training(name, tiny, device="cpu"):
    from detectron2 import model_zoo
    from detectron2.config import get_cfg

    from blendmask import load_config

    kind, config, _, _ = TRAINING_MODELS[name]
    if tiny and name not in MODELS:
        raise ValueError(f"--tiny shrinks the FPN, which {name}'s head does not follow: "
                         "time it at a small --size instead")
    opts = ["MODEL.WEIGHTS", "", "MODEL.DEVICE", device] + (TINY_OPTS if tiny else [])
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


def _step(model, opt, batch, dtype, device_type, scaler):
    with torch.autocast(device_type, dtype=dtype, enabled=dtype is not torch.float32):
        loss = sum(model(batch).values())
    opt.zero_grad()
    if scaler is None:
        loss.backward()
        opt.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    if device_type == "cuda":
        torch.cuda.synchronize()
    return loss


def main(argv=None):
    from blendmask.engine.amp import training_dtype

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, nargs=2, default=[512, 683])
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--models", nargs="+", default=TRAINED, choices=list(TRAINING_MODELS))
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    h, w = (96, 128) if args.tiny else args.size
    device_type = torch.device(args.device).type
    batch = synthetic_batch(args.batch, h, w)
    rows = []
    for name in args.models:
        runs = []
        for precision in args.precision:
            model = build_for_training(name, args.tiny, args.device)
            opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0, momentum=0.9)
            dtype = torch.float32 if precision == "fp32" else training_dtype(precision, device_type)
            scaler = torch.amp.GradScaler(device_type) if dtype is torch.float16 else None
            runs.append((precision, model, opt, dtype, scaler, [], []))
        with PeakRSS() as mem, EventStorage():  # detectron2's heads log training statistics
            for i in range(args.iters + 1):
                for _, model, opt, dtype, scaler, times, losses in runs if i % 2 == 0 else reversed(runs):
                    start = time.perf_counter()
                    losses.append(_step(model, opt, batch, dtype, device_type, scaler).item())
                    if i:  # the first iteration is warm-up
                        times.append(time.perf_counter() - start)
        for precision, _, _, _, _, times, losses in runs:
            label = name if precision == "fp32" else f"{name} {precision}"
            rows.append((label, statistics.median(times), min(times), max(times), mem.mib, losses[-1]))
            print(f"{label}: {rows[-1][1]:.2f} s/iter", flush=True)
    print(f"\nbatch {args.batch} x {h}x{w}, torch {torch.__version__}, {args.threads} threads, "
          f"{args.iters} iterations after 1 warm-up\n")
    print("| model | s/iter (median) | spread | peak MiB (all precisions of the model) | last loss |\n"
          "|---|---:|---:|---:|---:|")
    for name, med, lo, hi, mib, loss in rows:
        print(f"| {name} | {med:.2f} | {lo:.2f}-{hi:.2f} | {mib:.0f} | {loss:.3f} |")
    base = dict((r[0], r[1]) for r in rows)
    fastest = dict((r[0], r[2]) for r in rows)
    if {"BlendMask R_50", "Mask R-CNN R50-FPN", "FCOS R_50"} <= set(base):
        print(f"\nBlendMask / Mask R-CNN: {base['BlendMask R_50'] / base['Mask R-CNN R50-FPN']:.2f}; "
              f"BlendMask / FCOS: {base['BlendMask R_50'] / base['FCOS R_50']:.2f}")
    for label, med, *_ in rows:
        model, _, precision = label.rpartition(" ")
        if precision in ("bf16", "fp16") and model in base:
            print(f"{label} / {model}: {med / base[model]:.2f} (medians), {fastest[label] / fastest[model]:.2f} "
                  "(fastest steps)")
    return rows


if __name__ == "__main__":
    main()
