#!/usr/bin/env python
"""Where does a trained model whose mask branch works in boxes (BlendMask, panoptic BlendMask, CenterMask,
any model declaring box masks) lose its mask AP? Oracle evaluations. Box-free models (SOLOv2, AggMask*)
are refused: there is no box to replace before their masks.

    python tools/diagnose_blendmask.py --config-file configs/Shapes/BlendMask_R18.yaml \\
        --weights output/main_job/blendmask/model_final.pth [--dataset shapes_val] [KEY VALUE ...]

Evaluates the checkpoint with COCOEvaluator (bbox and segm AP) as it is, then with parts of its
detections replaced by the ground truth, the mask branch left as trained:

- ``as trained``: the model's own output;
- ``GT classes``: each detection whose box overlaps a ground-truth box with IoU >= 0.5 takes that
  box's class (box, score and mask computed as trained);
- ``GT boxes + classes``: such detections also take the ground-truth box, so the mask branch
  crops its bases (BlendMask) or features (CenterMask) in the right place;
- ``one per object``: the best-overlapping detection of each ground-truth object, with its box and
  class, score 1, everything else dropped: the mask AP of the mask branch alone (objects no
  detection overlaps are missed; the line says how many).

The gap between rows tells which part costs AP: classification, localisation or the mask itself.
"""

import argparse
import logging
import sys
from pathlib import Path

import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import COCOEvaluator, inference_on_dataset
from detectron2.structures import Boxes, BoxMode, pairwise_iou

REPO = Path(__file__).resolve().parents[1]
MODES = ("as trained", "GT classes", "GT boxes + classes", "one per object")


def ground_truth_boxes(records):
    """image_id -> (boxes (n, 4) XYXY in original pixels, classes (n,))."""
    gt = {}
    for r in records:
        anns = [a for a in r.get("annotations", []) if not a.get("iscrowd", 0)]
        boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in anns]
        gt[r["image_id"]] = (torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                             torch.tensor([a["category_id"] for a in anns], dtype=torch.long))
    return gt


def apply_oracle(det, gt_boxes, gt_classes, mode, counter):
    """Edit one image's FCOS detections (a dict of per-detection tensors) in place of the model's."""
    if mode == "as trained" or len(gt_boxes) == 0 or len(det["boxes"]) == 0:
        if mode == "one per object":
            counter["missed"] += len(gt_boxes)
            keep = torch.zeros(len(det["boxes"]), dtype=torch.bool)
            return {k: v[keep] for k, v in det.items()}
        return det
    iou = pairwise_iou(Boxes(det["boxes"]), Boxes(gt_boxes))  # (detections, objects)
    best_iou, best_gt = iou.max(dim=1)
    matched = best_iou >= 0.5
    det = dict(det)
    if mode in ("GT classes", "GT boxes + classes"):
        det["classes"] = torch.where(matched, gt_classes[best_gt], det["classes"])
        if mode == "GT boxes + classes":
            det["boxes"] = torch.where(matched[:, None], gt_boxes[best_gt], det["boxes"])
        return det
    # one per object: the best-overlapping detection of each object
    obj_iou, obj_det = iou.max(dim=0)
    found = obj_iou >= 0.5
    counter["missed"] += int((~found).sum())
    idx = obj_det[found]
    out = {k: v[idx] for k, v in det.items()}
    out["boxes"] = gt_boxes[found].to(out["boxes"].dtype)
    out["classes"] = gt_classes[found]
    out["scores"] = torch.ones_like(out["scores"])
    return out


class OracleHook:
    """Wraps ``model.add_masks`` so the detections are edited before the mask branch runs."""

    def __init__(self, model, gt):
        self.model, self.gt, self.mode = model, gt, "as trained"
        self.batch = []
        self.counter = {"missed": 0}
        self._add_masks = model.add_masks
        model.add_masks = self.add_masks
        self._forward = model.forward
        model.forward = self.forward

    def forward(self, batched_inputs):
        self.batch = batched_inputs
        return self._forward(batched_inputs)

    def add_masks(self, features, fcos, *args, **kwargs):  # CenterMask's also takes the image sizes
        edited = []
        for x, det in zip(self.batch, fcos.detections):
            boxes, classes = self.gt[x["image_id"]]
            h, w = x["image"].shape[-2:]
            scale = torch.tensor([w / x.get("width", w), h / x.get("height", h)] * 2)
            edited.append(apply_oracle(det, (boxes * scale).to(det["boxes"].device),
                                       classes.to(det["classes"].device), self.mode, self.counter))
        fcos.detections = edited
        return self._add_masks(features, fcos, *args, **kwargs)


def diagnose(model, cfg, dataset: str, modes=MODES):
    """Evaluate ``model`` on ``dataset`` in each oracle mode; rows (mode, bbox AP, segm AP, AP50,
    AP75, note). ``model`` must declare box masks (see :func:`main`)."""
    from blendmask.data import build_test_loader
    from blendmask.utils.env import detectron2_has_compiled_ops

    records = DatasetCatalog.get(dataset)
    hook = OracleHook(model, ground_truth_boxes(records))
    loader = build_test_loader(cfg, dataset)
    rows = []
    for mode in modes:
        hook.mode, hook.counter["missed"] = mode, 0
        evaluator = COCOEvaluator(dataset, tasks=("bbox", "segm"), distributed=False,
                                  use_fast_impl=detectron2_has_compiled_ops())
        res = inference_on_dataset(model, loader, evaluator)
        note = f" ({hook.counter['missed']} of {sum(len(r['annotations']) for r in records)} objects missed)" \
            if mode == "one per object" else ""
        rows.append((mode, res["bbox"]["AP"], res["segm"]["AP"], res["segm"]["AP50"], res["segm"]["AP75"], note))
        print(f"{mode}: bbox AP {res['bbox']['AP']:.1f}, segm AP {res['segm']['AP']:.1f}{note}", flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--dataset", default=None, help="default: the config's first DATASETS.TEST")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--coco-dataset", nargs=3, action="append", metavar=("NAME", "JSON", "IMAGE_ROOT"),
                        help="register a COCO-format dataset under NAME (as train_net.py); pass --dataset NAME")
    parser.add_argument("opts", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    from detectron2.utils.logger import setup_logger

    import blendmask
    from blendmask.data import set_num_classes
    from blendmask.engine import build_model_and_load, register_datasets
    from blendmask.modeling.contract import model_outputs

    setup_logger(name="blendmask", abbrev_name="bm")
    logging.getLogger("detectron2").setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    cfg = blendmask.load_config(args.config_file, ["MODEL.DEVICE", "cpu", *args.opts])
    dataset = args.dataset or cfg.DATASETS.TEST[0]
    cfg.DATASETS.TEST = (dataset,)
    register_datasets(cfg, args.coco_dataset or ())  # the built-in shapes when named, else --coco-dataset
    set_num_classes(cfg)
    model = build_model_and_load(cfg, args.weights)
    outputs = model_outputs(model)
    if outputs.masks != "box" or not hasattr(model, "add_masks"):
        print(f"error: {type(model).__name__} predicts {outputs.masks!r} masks, not masks inside detected boxes: "
              "the oracles replace the boxes and classes its mask branch would crop, and it has none",
              file=sys.stderr)
        return 2
    rows = diagnose(model, cfg, dataset, args.modes)
    print(f"\n{MetadataCatalog.get(dataset).name}, {args.weights}")
    print(f"{'evaluation':<20} {'bbox AP':>8} {'segm AP':>8} {'AP50':>6} {'AP75':>6}")
    for mode, bb, sg, s50, s75, note in rows:
        print(f"{mode:<20} {bb:>8.1f} {sg:>8.1f} {s50:>6.1f} {s75:>6.1f}{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
