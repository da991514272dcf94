#!/usr/bin/env python
"""Peak memory (RSS) of predicting and drawing 100 detections on large photos, each stage in a
fresh process (its high-water mark: /proc/self/status VmHWM, else ``resource.getrusage``).

    python benchmarks/benchmark_memory.py [--megapixels 2 12 48] [--detections 100]
        [--stages build forward predict draw] [--precision fp32]

The model is the tests' narrow BlendMask R-50 (tests/conftest.py ``tiny_cfg``, random weights):
what is measured is the memory that grows with the photo and the detections (masks at the photo's
size, the drawing), not the network's. Detections are forced (score threshold 0, NMS off, boxes of
3 strides around each location, at most ``--detections``). Stages, each in its own process:

- ``build``: the model built, an image of the size made (the baseline);
- ``forward``: ``blendmask.Predictor`` on the photo (``{"instances": ...}``);
- ``predict``: ``blendmask.utils.visualize.DrawingPredictor.predict`` (the demo's: instances on the CPU,
  filtered by score);
- ``draw``: ``predict`` then ``draw`` (the image with masks, boxes and labels, as the demo saves it);
- ``coco``: ``predict`` then the COCO json of the instances (per-instance RLE), as the evaluator does.

Prints a markdown table of peak RSS (MiB) per photo size and stage.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIZES = {2: (1200, 1600), 12: (3000, 4000), 24: (4000, 6000), 48: (6000, 8000)}  # megapixels -> (h, w)
STAGES = ("build", "forward", "predict", "draw", "coco")


def _child(h, w, detections, stage, precision):
    import resource

    import numpy as np
    import torch

    sys.path.insert(0, str(REPO / "tests"))
    from conftest import tiny_cfg

    torch.set_num_threads(2)
    cfg = tiny_cfg(**{"MODEL.FCOS.INFERENCE_TH_TEST": 0.0, "MODEL.FCOS.NMS_TH": 1.0,
                      "MODEL.FCOS.POST_NMS_TOPK_TEST": detections, "TEST.PRECISION": precision})
    torch.manual_seed(0)
    from blendmask.utils.visualize import DrawingPredictor as Predictor

    predictor = Predictor(cfg, confidence_threshold=0.0)
    model = predictor.predictor.model
    torch.nn.init.constant_(model.proposal_generator.fcos_head.bbox_pred.bias, 3.0)
    image = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    count = 0
    if stage == "forward":
        count = len(predictor.predictor(image)["instances"])
    elif stage in ("predict", "draw", "coco"):
        instances = predictor.predict(image)["instances"]
        count = len(instances)
        if stage == "draw":
            drawn = predictor.draw(image, instances)
            assert drawn.shape == image.shape
        elif stage == "coco":
            from detectron2.evaluation.coco_evaluation import instances_to_coco_json

            results = instances_to_coco_json(instances, 0)
            assert len(results) == count
    print(json.dumps({"peak_mib": _peak_kib(resource) / 1024, "detections": count}))


def _peak_kib(resource) -> float:
    """This process's peak RSS in KiB: Linux's VmHWM (this program's memory only), else getrusage.
    ``ru_maxrss`` survives ``execve`` on Linux: a process started by a big parent (a pytest run
    with models loaded) would report the parent's RSS at the fork."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1])
    except OSError:
        pass
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def measure(megapixels, detections, stage, precision="fp32"):
    h, w = SIZES[megapixels]
    code = (f"import sys; sys.path.insert(0, {str(REPO / 'benchmarks')!r}); import benchmark_memory as b; "
            f"b._child({h}, {w}, {detections}, {stage!r}, {precision!r})")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"{stage} at {megapixels} MP failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megapixels", type=int, nargs="+", default=[2, 12, 48], choices=sorted(SIZES))
    parser.add_argument("--detections", type=int, default=100)
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    parser.add_argument("--precision", default="fp32")
    args = parser.parse_args(argv)
    rows = {}
    for mp in args.megapixels:
        for stage in args.stages:
            rows[mp, stage] = measure(mp, args.detections, stage, args.precision)
            print(f"{mp} MP {stage}: {rows[mp, stage]['peak_mib']:.0f} MiB "
                  f"({rows[mp, stage]['detections']} detections)", flush=True)
    print("\n| photo | " + " | ".join(args.stages) + " |\n|---|" + "---:|" * len(args.stages))
    for mp in args.megapixels:
        h, w = SIZES[mp]
        print(f"| {mp} MP ({w}x{h}) | " + " | ".join(f"{rows[mp, s]['peak_mib']:.0f}" for s in args.stages) + " |")


if __name__ == "__main__":
    main()
