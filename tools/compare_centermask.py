#!/usr/bin/env python
"""Print how far our CenterMask is from centermask2 on its reference fixture.

    python tools/compare_centermask.py [--nchw]

Loads ../shared/reference/centermask2's narrowed V-39 CenterMask as a user would (slim yaml,
registered VoVNet spec, weights through MODEL.WEIGHTS), runs its three images one per forward and
its training forward, and prints the largest differences (tests/test_centermask_equivalence.py
checks the same quantities against tolerances; this tool exits 1 beyond the box, score, mask IoU
and loss ones). ``--nchw``: TEST.CHANNELS_LAST_ON_CPU False.
"""

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nchw", action="store_true", help="TEST.CHANNELS_LAST_ON_CPU False")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO / "tests"))
    import numpy as np
    import torch
    from centermask_fixtures import (
        BOX_ATOL,
        LOSS_RTOL,
        MIN_MASK_IOU,
        SCORE_ATOL,
        centermask_file,
        load_tiny_model,
        match_detections,
        run_with_intermediates,
        training_inputs,
    )
    from detectron2.utils.events import EventStorage

    torch.set_num_threads(args.threads)
    model = load_tiny_model(["TEST.CHANNELS_LAST_ON_CPU", "False"] if args.nchw else [])
    ref = np.load(centermask_file("cm_tiny_outputs.npz"))
    worst = dict.fromkeys(("pred_boxes", "prepost_boxes", "scores", "mask_scores", "maskiou", "mask_logits",
                           "sam_attention"), 0.0)
    flipped = foreground = 0
    min_iou = 1.0
    failures = []
    for i in range(3):
        h, w = (int(v) for v in ref[f"img{i}_orig_hw"])
        result, captured = run_with_intermediates(model, ref[f"img{i}_input_bgr_chw_u8"], h, w)
        match = match_detections(ref[f"img{i}_pred_boxes"], ref[f"img{i}_pred_classes"],
                                 result.pred_boxes.tensor.numpy(), result.pred_classes.numpy())
        if len(result) != len(match) or (match < 0).any():
            print(f"image {i}: {len(result)} detections, reference {len(match)}; unmatched {np.sum(match < 0)}")
            failures.append(f"image {i} detections")
            continue
        ours = {"pred_boxes": result.pred_boxes.tensor, "prepost_boxes": captured["boxes"], "scores": result.scores,
                "mask_scores": result.mask_scores, "maskiou": captured["maskiou"],
                "mask_logits": captured["mask_logits"][:, None], "sam_attention": captured["attention"]}
        for key, value in ours.items():
            worst[key] = max(worst[key], float(np.abs(value.numpy()[match] - ref[f"img{i}_{key}"]).max()))
        o, t = result.pred_masks.numpy()[match], ref[f"img{i}_pred_masks"].astype(bool)
        union = np.maximum((o | t).sum(axis=(1, 2)), 1)
        min_iou = min(min_iou, float(((o & t).sum(axis=(1, 2)) / union).min()))
        flipped += int((o != t).sum())
        foreground += int(t.sum())
        print(f"image {i}: {len(result)} detections, all matched")
    for key, value in worst.items():
        print(f"max |diff| {key}: {value:.3g}")
    print(f"mask pixels flipped: {flipped} of {foreground} reference foreground; smallest mask IoU {min_iou:.4f}")
    model = load_tiny_model(eval_mode=False)
    inputs, record = training_inputs()
    torch.manual_seed(record["train_seed"])
    with EventStorage():
        losses = model([inputs])
    for key, value in losses.items():
        ref_value = record["losses"][key]
        print(f"{key}: {float(value.detach()):.9g} (centermask2 {ref_value:.9g}, {value.dtype})")
        if abs(float(value.detach()) - ref_value) > LOSS_RTOL * abs(ref_value):
            failures.append(key)
    limits = {"pred_boxes": BOX_ATOL, "prepost_boxes": BOX_ATOL, "scores": SCORE_ATOL, "mask_scores": SCORE_ATOL}
    failures += [key for key, limit in limits.items() if worst[key] > limit]
    if min_iou < MIN_MASK_IOU:
        failures.append("mask IoU")
    print("within tolerance" if not failures else "OUT OF TOLERANCE: " + ", ".join(failures))
    return int(bool(failures))


if __name__ == "__main__":
    sys.exit(main())
