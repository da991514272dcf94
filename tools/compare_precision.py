#!/usr/bin/env python
"""Print how far reduced-precision inference is from float32 on every reference fixture.

    python tools/compare_precision.py [FIXTURE ...] [--precision bf16] [--images 0 1 2]

FIXTURE is any of fcos_tiny, tiny_blendmask, rt_bnhead_tiny, pan_tiny, cm_tiny, solov2_tiny,
aggmask_main, aggmask_halfgrid (default: all whose files are in ../shared/reference). Each fixture's
images run through our model in float32, in ``--precision`` (TEST.PRECISION), and in float32 with
the weights rounded to bfloat16 (the control, see tests/precision_fixtures.py); the table gives,
against float32: detections matched (same class, box IoU >= 0.5), the highest score of an
unmatched one, the largest score and box differences over matched ones, and their mask IoUs.
Exits non-zero when a fixture breaks the tolerances the test suite asserts.
"""

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("fixtures", nargs="*", metavar="FIXTURE")
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp16"])
    parser.add_argument("--images", type=int, nargs="+", help="fixture image indices (default all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--emulated", action="store_true",
                        help="run bf16 even where the CPU lacks native bf16 (same numbers, slower)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO / "tests"))
    import pytest
    import torch

    import precision_fixtures as pf
    from blendmask.engine import precision

    torch.set_num_threads(args.threads)
    if args.emulated:
        precision.cpu_has_native_bf16 = lambda: True
    names = args.fixtures or pf.ALL_FIXTURES
    unknown = [n for n in names if n not in pf.ALL_FIXTURES]
    if unknown:
        parser.error(f"unknown fixture(s) {unknown}; choose from {pf.ALL_FIXTURES}")
    header = ("| fixture | model | run | dets fp32 / other | matched | max unmatched score | max score diff | "
              "max box diff px | mask IoU mean / min |\n|---|---|---|---:|---:|---:|---:|---:|---:|")
    lines, failed = [header], False
    for name in names:
        try:
            model, ours, control, problems = pf.measure(name, args.precision, images=args.images)
        except pytest.skip.Exception as skipped:
            print(f"{name}: skipped ({skipped})", flush=True)
            continue
        for label, row in ((args.precision, ours), ("weights rounded (control)", control)):
            lines.append(f"| {name} | {model} | {label} | {row['n_ref']} / {row['n_other']} | {row['matched']} | "
                         f"{row['max_unmatched_score']:.3f} | {row['max_score_diff']:.4f} | "
                         f"{row['max_box_diff']:.1f} | {row['mean_mask_iou']:.3f} / {row['min_mask_iou']:.3f} |")
        print(lines[-2] + "\n" + lines[-1], flush=True)
        if problems:
            failed = True
            print(f"  beyond tolerance: {'; '.join(problems)}", flush=True)
    print("\n" + "\n".join(lines))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
