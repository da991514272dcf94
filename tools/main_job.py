#!/usr/bin/env python
"""The main job: train BlendMask from scratch on the built-in shapes dataset, evaluate, draw.

    python tools/main_job.py                      # what `make demo` runs
    python tools/main_job.py --compare-mask-rcnn  # also detectron2's Mask R-CNN, same backbone and budget
    python tools/main_job.py --iters 300          # a quicker, weaker run
    python tools/main_job.py --models BlendMask CenterMask  # CenterMask-Lite beside BlendMask
    python tools/main_job.py --models BlendMask SOLOv2      # SOLOv2 beside BlendMask

1. builds the synthetic shapes dataset once (.cache/datasets/shapes) and registers it;
2. trains configs/Shapes/BlendMask_R18.yaml with ``blendmask.engine.Trainer``, train_net.py's
   trainer (detectron2's DefaultTrainer: checkpoints, metrics.json and TensorBoard events in
   <output>/blendmask);
3. evaluates on shapes_val with COCOEvaluator (bbox and segm AP tables);
4. writes into <output>: pictures/ (ground truth beside prediction for val images, detectron2's
   Visualizer) and losses.png (training losses); prints the output folder and a summary.
"""

import argparse
import json
import logging
import os
import time
from pathlib import Path

import matplotlib
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from detectron2 import model_zoo  # noqa: E402
from detectron2.config import get_cfg  # noqa: E402
from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from detectron2.data.detection_utils import read_image  # noqa: E402
from detectron2.utils.env import seed_all_rng  # noqa: E402
from detectron2.utils.logger import setup_logger  # noqa: E402
from detectron2.utils.visualizer import Visualizer  # noqa: E402

import blendmask  # noqa: E402
from blendmask.data import register_shapes, set_num_classes  # noqa: E402
from blendmask.engine import Predictor, Trainer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "Shapes" / "BlendMask_R18.yaml"
MODEL_CONFIGS = {"BlendMask": CONFIG, "CenterMask": REPO / "configs" / "Shapes" / "CenterMask_Lite_V19.yaml",
                 "SOLOv2": REPO / "configs" / "Shapes" / "SOLOv2_R18.yaml"}
MASK_RCNN_BASE = "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml"
# keys Mask R-CNN takes from the BlendMask config, so both get the same backbone, input and budget
SHARED_KEYS = (
    "MODEL.WEIGHTS", "MODEL.DEVICE", "MODEL.PIXEL_MEAN", "MODEL.PIXEL_STD", "MODEL.BACKBONE.FREEZE_AT",
    "MODEL.RESNETS.DEPTH", "MODEL.RESNETS.RES2_OUT_CHANNELS", "MODEL.RESNETS.NORM",
    "MODEL.RESNETS.STEM_OUT_CHANNELS", "MODEL.FPN.OUT_CHANNELS", "INPUT", "DATASETS", "DATALOADER",
    "SOLVER", "TEST.DETECTIONS_PER_IMAGE", "SEED",
)
logger = logging.getLogger("main_job")


def _get(cfg, key):
    for part in key.split("."):
        cfg = cfg[part]
    return cfg


def _set(cfg, key, value):
    *parents, last = key.split(".")
    for part in parents:
        cfg = cfg[part]
    cfg[last] = value


def blendmask_cfg(args, output_dir: Path, model: str = "BlendMask"):
    """The shapes config of ``model`` (a key of MODEL_CONFIGS) with the command line's overrides."""
    cfg = blendmask.load_config(MODEL_CONFIGS[model], ["OUTPUT_DIR", str(output_dir / model.lower()), *args.opts])
    if args.iters:
        scale = args.iters / cfg.SOLVER.MAX_ITER
        cfg.SOLVER.STEPS = tuple(int(s * scale) for s in cfg.SOLVER.STEPS)
        cfg.SOLVER.MAX_ITER = args.iters
        cfg.SOLVER.WARMUP_ITERS = min(cfg.SOLVER.WARMUP_ITERS, args.iters // 2)
    if not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    set_num_classes(cfg)
    return cfg


def mask_rcnn_cfg(bm_cfg, output_dir: Path):
    """detectron2's Mask R-CNN (model zoo R50-FPN config) with BlendMask's backbone, input and solver."""
    cfg = get_cfg()
    cfg.merge_from_file(model_zoo.get_config_file(MASK_RCNN_BASE))
    for key in SHARED_KEYS:
        _set(cfg, key, _get(bm_cfg, key).clone() if hasattr(_get(bm_cfg, key), "clone") else _get(bm_cfg, key))
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[16], [32], [64], [128], [256]]  # the shapes are 14-56 px
    # heads narrowed like BlendMask's: the default 256-channel mask head on 128 RoIs per image costs
    # about 10x the whole R-18 backbone on a CPU
    cfg.MODEL.ROI_MASK_HEAD.CONV_DIM = bm_cfg.MODEL.FPN.OUT_CHANNELS
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 64
    cfg.OUTPUT_DIR = str(output_dir / "mask_rcnn")
    set_num_classes(cfg)
    return cfg


def train_and_evaluate(cfg, name: str):
    """Train with blendmask.engine.Trainer, then evaluate on cfg.DATASETS.TEST. Returns (results, minutes)."""
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    (Path(cfg.OUTPUT_DIR) / "config.yaml").write_text(cfg.dump())
    train_cfg = cfg.clone()
    train_cfg.DATASETS.TEST = ()  # evaluate once, below, rather than in the trainer's hook
    train_cfg.freeze()
    seed_all_rng(cfg.SEED if cfg.SEED >= 0 else None)
    logger.info(f"Training {name} for {cfg.SOLVER.MAX_ITER} iterations; output in {cfg.OUTPUT_DIR}")
    start = time.perf_counter()
    trainer = Trainer(train_cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    minutes = (time.perf_counter() - start) / 60
    logger.info(f"{name}: training took {minutes:.1f} min. Evaluating on {cfg.DATASETS.TEST[0]}")
    results = Trainer.test(cfg, trainer.model)
    (Path(cfg.OUTPUT_DIR) / "results.json").write_text(json.dumps(results, indent=1))
    return results, minutes


def predictor_from_checkpoint(cfg):
    cfg = cfg.clone()
    cfg.MODEL.WEIGHTS = os.path.join(cfg.OUTPUT_DIR, "model_final.pth")
    return Predictor(cfg)  # loads the checkpoint weights-only


def save_pictures(runs, dataset_name: str, out_dir: Path, num_images: int, threshold: float):
    """One png per val image: ground truth, then each model's predictions (score >= threshold)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    metadata = MetadataCatalog.get(dataset_name)
    predictors = {name: predictor_from_checkpoint(cfg) for name, cfg in runs.items()}
    paths = []
    for record in DatasetCatalog.get(dataset_name)[:num_images]:
        image = read_image(record["file_name"], format="BGR")
        rgb = image[:, :, ::-1]
        panels = [("ground truth", Visualizer(rgb, metadata, scale=3.0).draw_dataset_dict(record))]
        for name, predictor in predictors.items():
            instances = predictor(image)["instances"].to("cpu")
            instances = instances[instances.scores >= threshold]
            drawn = Visualizer(rgb, metadata, scale=3.0).draw_instance_predictions(instances)
            panels.append((f"{name} (score >= {threshold})", drawn))
        fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.6))
        for ax, (title, vis) in zip(axes, panels):
            ax.imshow(vis.get_image())
            ax.set_title(title, fontsize=10)
            ax.axis("off")
        fig.suptitle(os.path.basename(record["file_name"]), fontsize=10)
        fig.tight_layout()
        path = out_dir / f"{Path(record['file_name']).stem}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        paths.append(path)
    return paths


def read_metrics(output_dir: str):
    """detectron2's metrics.json: one JSON object per line (keep the lines with losses)."""
    rows = []
    path = Path(output_dir) / "metrics.json"
    for line in path.read_text().splitlines() if path.exists() else []:
        row = json.loads(line)
        if "total_loss" in row:
            rows.append(row)
    return rows


def plot_losses(runs, path: Path):
    fig, axes = plt.subplots(1, len(runs), figsize=(6.5 * len(runs), 4.5), squeeze=False)
    for ax, (name, cfg) in zip(axes[0], runs.items()):
        rows = read_metrics(cfg.OUTPUT_DIR)
        keys = sorted({k for r in rows for k in r if k.startswith("loss") or k == "total_loss"})
        for key in keys:
            points = [(r["iteration"], r[key]) for r in rows if key in r]
            ax.plot(*zip(*points), label=key, linewidth=2.5 if key == "total_loss" else 1.2)
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_title(f"{name}: training losses (median of 20 iterations)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def choose_threads(requested: int) -> int:
    """torch threads: the idle cores. Oversubscribed OpenMP threads on a busy CPU are many times
    slower than fewer threads, so a machine shared with other jobs gets fewer."""
    if requested > 0:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, min(cores, round(cores - busy)))


def summary_table(results, minutes) -> str:
    header = ("model", "train min", "bbox AP", "bbox AP50", "segm AP", "segm AP50", "segm AP75")
    lines = [f"{header[0]:<12} " + " ".join(f"{h:>9}" for h in header[1:])]
    for name, res in results.items():
        b, s = res.get("bbox", {}), res.get("segm", {})
        values = (minutes[name], b.get("AP"), b.get("AP50"), s.get("AP"), s.get("AP50"), s.get("AP75"))
        lines.append(f"{name:<12} " + " ".join(f"{float('nan') if v is None else v:>9.1f}" for v in values))
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default=str(REPO / "output" / "main_job"))
    parser.add_argument("--iters", type=int, default=0, help="training iterations (default: the config's)")
    parser.add_argument("--models", nargs="+", default=["BlendMask"], choices=sorted(MODEL_CONFIGS),
                        help="models to train and evaluate, each with its configs/Shapes config")
    parser.add_argument("--compare-mask-rcnn", action="store_true",
                        help="also train detectron2's Mask R-CNN with the same backbone, input and solver")
    parser.add_argument("--num-pictures", type=int, default=8)
    parser.add_argument("--score-threshold", type=float, default=0.4, help="lowest score drawn in the pictures")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: the idle cores)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides of every model's config")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    output_dir = Path(args.output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    setup_logger(str(output_dir / "log.txt"), name="detectron2")
    setup_logger(str(output_dir / "log.txt"), name="main_job", abbrev_name="main_job")
    threads = choose_threads(args.threads)
    torch.set_num_threads(threads)
    logger.info(f"torch {torch.__version__}: {threads} CPU thread(s); output folder {output_dir}")

    start = time.perf_counter()
    names = register_shapes()  # generated once into .cache/datasets/shapes
    logger.info(f"Dataset ready in {time.perf_counter() - start:.0f}s: {names}")

    runs = {name: blendmask_cfg(args, output_dir, name) for name in dict.fromkeys(args.models)}
    if args.compare_mask_rcnn:
        runs["Mask R-CNN"] = mask_rcnn_cfg(runs.get("BlendMask", next(iter(runs.values()))), output_dir)
    results, minutes = {}, {}
    for name, cfg in runs.items():
        results[name], minutes[name] = train_and_evaluate(cfg, name)

    pictures = save_pictures(runs, names["val"], output_dir / "pictures", args.num_pictures, args.score_threshold)
    plot_losses(runs, output_dir / "losses.png")
    table = summary_table(results, minutes)
    (output_dir / "summary.txt").write_text(table + "\n")
    print(f"\nResults on {names['val']} ({len(DatasetCatalog.get(names['val']))} images), COCO AP in %:")
    print(table)
    print(f"\nTotal time {(time.perf_counter() - start) / 60:.1f} min with {threads} CPU thread(s).")
    print(f"Pictures ({len(pictures)}: ground truth | prediction): {output_dir / 'pictures'}")
    print(f"Training-loss plot: {output_dir / 'losses.png'}")
    print(f"Output folder: {output_dir}")
    return results


if __name__ == "__main__":
    main()
