#!/usr/bin/env python
"""Print how far our outputs are from AdelaiDet's on the reference fixtures.

    python tools/compare_adelaidet.py [--reference-dir ../shared/reference/adelaidet] [--nchw]

For each fixture and image: detection counts, the largest box and score differences, flipped mask
pixels and the smallest mask IoU (detections matched tie-tolerantly); then each training loss's
relative difference. The test suite checks the same quantities against the same tolerances
(tests/adelaidet_fixtures.py); exits 1 beyond them. ``--nchw``
runs inference in AdelaiDet's NCHW memory format instead of our default channels-last on CPU
(``TEST.CHANNELS_LAST_ON_CPU False``), which moves results by float rounding only.
"""

import argparse
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference-dir", default=str(REPO.parent / "shared" / "reference" / "adelaidet"))
    parser.add_argument("--nchw", action="store_true", help="TEST.CHANNELS_LAST_ON_CPU False")
    args = parser.parse_args(argv)
    os.environ["BLENDMASK_REFERENCE_DIR"] = args.reference_dir
    sys.path.insert(0, str(REPO / "tests"))
    import torch

    from adelaidet_fixtures import (
        BOX_ATOL,
        FIXTURES,
        LOSS_RTOL,
        MIN_MASK_IOU,
        SCORE_ATOL,
        fixture_training_inputs,
        load_fixture_model,
        match_detections,
        run_with_intermediates,
    )
    from conftest import reference_file

    torch.set_num_threads(2)
    failures = []
    for name, fixture in FIXTURES.items():
        model = load_fixture_model(name, ["TEST.CHANNELS_LAST_ON_CPU", not args.nchw])
        ref = np.load(reference_file(fixture.outputs))
        for i in range(3):
            h, w = (int(v) for v in ref[f"img{i}_orig_hw"])
            out, _ = run_with_intermediates(model, ref[f"img{i}_input_bgr_chw_u8"], h, w)
            rb, rs, rc = ref[f"img{i}_pred_boxes"], ref[f"img{i}_scores"], ref[f"img{i}_pred_classes"]
            ob, os_, oc = out.pred_boxes.tensor.numpy(), out.scores.numpy(), out.pred_classes.numpy()
            match = match_detections(rb, rs, rc, ob, os_, oc)
            ok = match >= 0
            box_diff = np.abs(ob[match[ok]] - rb[ok]).max()
            score_diff = np.abs(os_[match[ok]] - rs[ok]).max()
            line = (f"{name} image {i}: {len(out)} detections (AdelaiDet {len(rb)}), {ok.sum()} matched, "
                    f"max |box diff| {box_diff:.2e} px, max |score diff| {score_diff:.2e}")
            if len(out) != len(rb) or not ok.all() or box_diff > BOX_ATOL or score_diff > SCORE_ATOL:
                failures.append(f"{name} image {i} detections")
            if f"img{i}_pred_masks" in ref:
                ours, theirs = out.pred_masks.numpy()[match[ok]], ref[f"img{i}_pred_masks"].astype(bool)[ok]
                iou = (ours & theirs).sum((1, 2)) / np.maximum((ours | theirs).sum((1, 2)), 1)
                line += (f", {(ours != theirs).sum()} mask pixels flipped of {theirs.sum()} foreground, "
                         f"min mask IoU {iou.min():.4f}")
                if iou.min() < MIN_MASK_IOU:
                    failures.append(f"{name} image {i} masks")
            print(line, flush=True)
        if fixture.losses:
            inputs, expected = fixture_training_inputs(fixture.losses)
            losses = model.train()([inputs])
            rel = {k: abs(losses[k].item() - v) / abs(v) for k, v in expected.items() if k in losses}
            print(f"{name} losses, relative difference: " + ", ".join(f"{k} {v:.1e}" for k, v in rel.items()))
            failures += [f"{name} {k}" for k, v in rel.items() if v > LOSS_RTOL]
    print("within tolerance" if not failures else "OUT OF TOLERANCE: " + ", ".join(failures))
    return int(bool(failures))


if __name__ == "__main__":
    sys.exit(main())
