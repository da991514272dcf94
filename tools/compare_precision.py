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

    python tools/compare_precision.py --config-file CONFIG --weights MODEL.pth --dataset NAME [--limit 100]

compares instead a trained model's float32 and ``--precision`` predictions on the first ``--limit``
images of a registered dataset (``shapes_*`` and COCO-format datasets as train_net.py registers
them; ``--coco-dataset NAME JSON IMAGES`` adds one), through ``blendmask.Predictor``.
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
    parser.add_argument("--config-file", help="a trained model's config (with --weights and --dataset)")
    parser.add_argument("--weights")
    parser.add_argument("--dataset")
    parser.add_argument("--coco-dataset", nargs=3, action="append", default=[], metavar=("NAME", "JSON", "IMAGES"))
    parser.add_argument("--limit", type=int, default=100)
    args = parser.parse_args(argv)
    if args.config_file:
        return compare_on_dataset(args)
    sys.path.insert(0, str(REPO / "tests"))
    import precision_fixtures as pf
    import pytest
    import torch

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


def compare_on_dataset(args) -> int:
    import torch
    from detectron2.data import DatasetCatalog
    from detectron2.data.detection_utils import read_image

    from blendmask import Predictor, load_config
    from blendmask.data import set_num_classes
    from blendmask.engine import register_datasets
    from blendmask.engine.precision import set_inference_precision
    from blendmask.utils.agreement import combine, compare_instances

    torch.set_num_threads(args.threads)
    cfg = load_config(args.config_file, ["MODEL.WEIGHTS", args.weights or "", "MODEL.DEVICE", "cpu",
                                         "DATASETS.TEST", f"('{args.dataset}',)"])
    register_datasets(cfg, args.coco_dataset)
    set_num_classes(cfg)
    predictor = Predictor(cfg)
    records = DatasetCatalog.get(args.dataset)[: args.limit]
    images = [read_image(r["file_name"], format="BGR") for r in records]
    runs = {}
    for precision in ("fp32", args.precision):
        set_inference_precision(predictor.model, precision)
        runs[precision] = [predictor(image)["instances"].to("cpu") for image in images]
    row = combine([compare_instances(a, b) for a, b in zip(runs["fp32"], runs[args.precision])])
    print(f"| {args.dataset} ({len(images)} images) | {Path(args.config_file).stem} | {args.precision} | "
          f"{row['n_ref']} / {row['n_other']} | {row['matched']} | {row['max_unmatched_score']:.3f} | "
          f"{row['max_score_diff']:.4f} | {row['max_box_diff']:.1f} | "
          f"{row['mean_mask_iou']:.3f} / {row['min_mask_iou']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
