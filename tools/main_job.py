#!/usr/bin/env python
"""The main job: train models from scratch on the built-in shapes dataset, evaluate, compare, draw.

    python tools/main_job.py                       # BlendMask, its config's schedule, fp32
    python tools/main_job.py --iters 2500 SOLVER.AMP.ENABLED True TEST.PRECISION auto   # what `make demo` runs
    python tools/main_job.py --models blendmask,centermask,solov2,aggmask,mask_rcnn --minutes 6
    python tools/main_job.py --iters 300           # a quicker, weaker BlendMask

1. builds the synthetic shapes dataset once (.cache/datasets/shapes) and registers it;
2. trains each model with its ``configs/Shapes`` config (``MODEL_CONFIGS``), one model after the
   other, each in a fresh process (so its peak memory is its own) with the same CPU threads, and
   no data-loader process when those threads take every core (``fit_loader_workers``):
   - without ``--minutes``: for the config's ``SOLVER.MAX_ITER`` iterations (or ``--iters``),
     with ``blendmask.engine.Trainer`` (train_net.py's trainer); the learning curve's
     evaluations (``--curve-points``) are not counted in its training minutes either;
   - with ``--minutes M``: for M minutes of training steps each (equal budget, not equal
     iterations), with ``blendmask.engine.budget.BudgetTrainer``: the config's learning-rate
     steps happen at the same fractions of the minutes as of its iterations; evaluations for the
     learning curve (``--curve-points``) are not counted in the minutes;
3. evaluates each on shapes_val with COCOEvaluator and measures its inference time (ms/image,
   median over ``--timing-images`` val images, after 3 warm-up images) and the peak memory of
   its process;
   with ``--eval-precisions fp32,bf16`` the final model is also evaluated on all of shapes_val in
   each listed ``TEST.PRECISION`` (same weights; a second table, bbox and segm AP per precision and
   their difference to the first listed);
4. prints one table (model, iterations, s/iter, train min, bbox AP, segm AP, segm AP50,
   inference ms/image, peak MB, the machine's mean load average while it trained), writes it to
   <output>/summary.txt and summary.json, and draws
   <output>/curves.png (segm and bbox AP against training minutes, every model in one plot),
   <output>/losses.png and <output>/pictures/ (ground truth | each model, the same val images).
"""

import argparse
import json
import logging
import multiprocessing
import os
import resource
import statistics
import time
from pathlib import Path

import matplotlib
import torch

matplotlib.use("Agg")
# Log-scale tick labels are mathtext, whose fallback font (STIX) this matplotlib wheel lacks: it
# draws them in DejaVu Sans, but would log ~20 "findfont" warnings per run.
logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
import matplotlib.pyplot as plt  # noqa: E402
from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from detectron2.data.detection_utils import read_image  # noqa: E402
from detectron2.utils.env import seed_all_rng  # noqa: E402
from detectron2.utils.logger import setup_logger  # noqa: E402
from detectron2.utils.visualizer import Visualizer  # noqa: E402

import blendmask  # noqa: E402
from blendmask.data import register_shapes, set_num_classes  # noqa: E402
from blendmask.engine import Predictor, Trainer  # noqa: E402
from blendmask.engine.precision import PRECISIONS, set_inference_precision  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHAPES = REPO / "configs" / "Shapes"
# --models key -> (name in tables and pictures, config). Why each config: its file's header.
MODEL_CONFIGS = {
    "blendmask": ("BlendMask", SHAPES / "BlendMask_R18.yaml"),
    "centermask": ("CenterMask-Lite", SHAPES / "CenterMask_Lite_V19.yaml"),
    "solov2": ("SOLOv2", SHAPES / "SOLOv2_R18.yaml"),
    "aggmask": ("AggMask*", SHAPES / "AggMask_R18.yaml"),
    "mask_rcnn": ("Mask R-CNN", SHAPES / "MaskRCNN_R18.yaml"),
}
logger = logging.getLogger("main_job")


def parse_models(values) -> list:
    """``["blendmask,centermask", "SOLOv2"]`` -> ["blendmask", "centermask", "solov2"] (any case,
    commas or spaces, repeats dropped); unknown names raise a ValueError listing the known ones."""
    keys = []
    for value in values:
        for name in filter(None, value.replace(" ", ",").split(",")):
            key = name.lower().replace("-", "_")
            key = {"maskrcnn": "mask_rcnn", "aggmask*": "aggmask"}.get(key, key)
            if key not in MODEL_CONFIGS:
                raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODEL_CONFIGS)}")
            if key not in keys:
                keys.append(key)
    return keys


def model_cfg(args, output_dir: Path, key: str):
    """The shapes config of model ``key`` with the command line's overrides, frozen=False."""
    name, path = MODEL_CONFIGS[key]
    if not path.exists():
        raise FileNotFoundError(f"{name}: its config {path.relative_to(REPO)} does not exist in this version")
    cfg = blendmask.load_config(path, ["OUTPUT_DIR", str(output_dir / key), *args.opts])
    if args.iters:
        scale = args.iters / cfg.SOLVER.MAX_ITER
        cfg.SOLVER.STEPS = tuple(int(s * scale) for s in cfg.SOLVER.STEPS)
        cfg.SOLVER.MAX_ITER = args.iters
        cfg.SOLVER.WARMUP_ITERS = min(cfg.SOLVER.WARMUP_ITERS, args.iters // 2)
    if not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    set_num_classes(cfg)
    return cfg


def coco_summary(results) -> dict:
    b, s = results.get("bbox", {}), results.get("segm", {})
    return {"bbox AP": b.get("AP"), "bbox AP50": b.get("AP50"), "segm AP": s.get("AP"),
            "segm AP50": s.get("AP50"), "segm AP75": s.get("AP75")}


def inference_ms(cfg, dataset_name: str, num_images: int) -> float:
    """Median wall time of Predictor on ``num_images`` val images (3 warm-up images first), ms."""
    predictor = predictor_from_checkpoint(cfg)
    records = DatasetCatalog.get(dataset_name)
    images = [read_image(r["file_name"], format="BGR") for r in records[: num_images + 3]]
    times = []
    with torch.no_grad():
        for i, image in enumerate(images):
            start = time.perf_counter()
            predictor(image)
            if i >= 3:
                times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times) if times else float("nan")


class LoadSampler:
    """The machine's 1-minute load average every ``period`` seconds, in a background thread: how
    much other work shared the CPU while a model trained (a fair comparison needs it low and even)."""

    def __init__(self, period: float = 10.0):
        import threading

        self.samples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(period,), daemon=True)

    def _run(self, period):
        while not self._stop.wait(period):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self):
        self.samples.append(os.getloadavg()[0])
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def mean(self) -> float:
        return statistics.fmean(self.samples)


def register_subset(dataset_name: str, num_images: int) -> str:
    """``<dataset_name>_first<N>``: its first ``num_images`` records, same metadata (COCOEvaluator
    converts them to a COCO json of their own)."""
    name = f"{dataset_name}_first{num_images}"
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: DatasetCatalog.get(dataset_name)[:num_images])
        metadata = MetadataCatalog.get(dataset_name).as_dict()
        for key in ("name", "json_file"):
            metadata.pop(key, None)
        MetadataCatalog.get(name).set(**metadata)
    return name


def train_one(key: str, cfg_yaml: str, minutes: float, curve_points: int, curve_images: int, timing_images: int,
              threads: int, log_path: str, eval_precisions=()) -> dict:
    """Train, evaluate and time one model (run in its own process); also writes <OUTPUT_DIR>/run.json.
    A model that fails (diverges, raises) writes ``{"model", "error"}`` instead, so the job goes on."""
    try:
        return _train_one(key, cfg_yaml, minutes, curve_points, curve_images, timing_images, threads, log_path,
                          eval_precisions)
    except Exception as e:  # noqa: BLE001  (any failure becomes the model's row in the table)
        logger.exception(f"{MODEL_CONFIGS[key][0]} failed")
        output_dir = Path(_output_dir_of(cfg_yaml))
        output_dir.mkdir(parents=True, exist_ok=True)
        run = {"model": MODEL_CONFIGS[key][0], "error": f"{type(e).__name__}: {e}".splitlines()[0][:300]}
        (output_dir / "run.json").write_text(json.dumps(run, indent=1))
        return run


def _output_dir_of(cfg_yaml: str) -> str:
    import yaml

    return yaml.safe_load(cfg_yaml)["OUTPUT_DIR"]


def _train_one(key: str, cfg_yaml: str, minutes: float, curve_points: int, curve_images: int, timing_images: int,
               threads: int, log_path: str, eval_precisions=()) -> dict:
    from blendmask.config import get_cfg
    from blendmask.engine.budget import BudgetTrainer, time_and_curve

    setup_logger(log_path, name="detectron2")
    setup_logger(log_path, name="main_job", abbrev_name="main_job")
    torch.set_num_threads(threads)
    register_shapes()
    cfg = get_cfg()
    cfg.merge_from_other_cfg(type(cfg).load_cfg(cfg_yaml))
    name = MODEL_CONFIGS[key][0]
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    (Path(cfg.OUTPUT_DIR) / "config.yaml").write_text(cfg.dump())
    train_cfg = cfg.clone()
    train_cfg.DATASETS.TEST = ()  # evaluated below (and by the curve hook), not by the trainer
    train_cfg.freeze()
    seed_all_rng(cfg.SEED if cfg.SEED >= 0 else None)

    curve_cfg = cfg.clone()
    curve_cfg.DATASETS.TEST = (register_subset(cfg.DATASETS.TEST[0], curve_images),)
    curve_cfg.OUTPUT_DIR = os.path.join(cfg.OUTPUT_DIR, "curve")

    def evaluate(model, eval_cfg=cfg):
        return coco_summary(Trainer.test(eval_cfg, model))

    def evaluate_curve(model):
        return evaluate(model, curve_cfg)

    start = time.perf_counter()
    with LoadSampler() as load:
        if minutes:
            logger.info(f"Training {name} for {minutes} min of training steps; output in {cfg.OUTPUT_DIR}")
            trainer = BudgetTrainer(train_cfg, minutes * 60, evaluate_curve, curve_points)
            trainer.resume_or_load(resume=False)
            trainer.train()
            iterations, train_s, curve = trainer.iterations, trainer.clock.spent_s, trainer.curve.rows
        else:
            logger.info(f"Training {name} for {cfg.SOLVER.MAX_ITER} iterations; output in {cfg.OUTPUT_DIR}")
            trainer = Trainer(train_cfg)
            clock, curve_hook = time_and_curve(trainer, evaluate_curve, curve_points)
            trainer.resume_or_load(resume=False)
            trainer.train()
            iterations, train_s, curve = cfg.SOLVER.MAX_ITER, clock.spent_s, curve_hook.rows
    wall_s = time.perf_counter() - start
    logger.info(f"{name}: {iterations} iterations, {train_s / 60:.1f} min of training. Evaluating.")
    final = evaluate(trainer.model)
    curve.append({"minutes": train_s / 60, "iteration": iterations, **final})
    by_precision = evaluate_in_precisions(trainer.model, cfg, eval_precisions)
    set_inference_precision(trainer.model, cfg.TEST.PRECISION)
    run = {
        "model": name, "iterations": iterations, "s/iter": train_s / max(iterations, 1),
        "train min": train_s / 60, "wall min": wall_s / 60, **final,
        "inference ms/image": inference_ms(cfg, cfg.DATASETS.TEST[0], timing_images),
        "peak MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load avg": load.mean,
        "curve": curve,
        **({"precisions": by_precision} if by_precision else {}),
    }
    (Path(cfg.OUTPUT_DIR) / "run.json").write_text(json.dumps(run, indent=1))
    return run


def evaluate_in_precisions(model, cfg, precisions) -> dict:
    """``{precision: coco_summary}``: ``model`` evaluated on ``cfg.DATASETS.TEST`` in each
    ``TEST.PRECISION`` value of ``precisions`` (the same weights, one full evaluation each)."""
    results = {}
    for precision in precisions:
        logger.info(f"Evaluating in {precision}")
        eval_cfg = cfg.clone()
        eval_cfg.defrost()
        eval_cfg.TEST.PRECISION = precision
        eval_cfg.OUTPUT_DIR = os.path.join(cfg.OUTPUT_DIR, f"eval_{precision}")
        set_inference_precision(model, precision)
        results[precision] = coco_summary(Trainer.test(eval_cfg, model))
    return results


def precision_table(results, precisions) -> str:
    """A markdown table: bbox and segm AP of each model in each precision, and the difference of
    each later precision to the first (``precisions[0]``)."""
    head = ["model"]
    for i, p in enumerate(precisions):
        head += [f"bbox AP {p}", f"segm AP {p}"] + ([f"bbox diff {p}", f"segm diff {p}"] if i else [])
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for run in results.values():
        if "precisions" not in run:
            continue
        by = run["precisions"]
        first = by[precisions[0]]
        cells = []
        for i, p in enumerate(precisions):
            row = by[p]
            cells += [_fmt(row["bbox AP"]), _fmt(row["segm AP"])]
            if i:
                cells += [_fmt(_diff(row["bbox AP"], first["bbox AP"]), "{:+.2f}"),
                          _fmt(_diff(row["segm AP"], first["segm AP"]), "{:+.2f}")]
        lines.append(f"| {run['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _diff(a, b):
    return None if a is None or b is None else a - b


def _fmt(value, form="{:.2f}"):
    return "nan" if value is None else form.format(value)


def predictor_from_checkpoint(cfg):
    cfg = cfg.clone()
    cfg.MODEL.WEIGHTS = os.path.join(cfg.OUTPUT_DIR, "model_final.pth")
    return Predictor(cfg)  # loads the checkpoint weights-only


def save_pictures(runs, dataset_name: str, out_dir: Path, num_images: int, threshold: float):
    """One png per val image: ground truth, then each model's predictions (score >= threshold)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    metadata = MetadataCatalog.get(dataset_name)
    predictors = {MODEL_CONFIGS[key][0]: predictor_from_checkpoint(cfg) for key, cfg in runs.items()}
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
    for ax, (key, cfg) in zip(axes[0], runs.items()):
        rows = read_metrics(cfg.OUTPUT_DIR)
        keys = sorted({k for r in rows for k in r if k.startswith("loss") or k == "total_loss"})
        for loss in keys:
            points = [(r["iteration"], r[loss]) for r in rows if loss in r]
            ax.plot(*zip(*points), label=loss, linewidth=2.5 if loss == "total_loss" else 1.2)
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_title(f"{MODEL_CONFIGS[key][0]}: training losses (median of 20 iterations)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_curves(results, path: Path, title: str):
    """segm AP (solid) and bbox AP (dashed) against training minutes, one colour per model."""
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for i, run in enumerate(results.values()):
        colour = f"C{i}"
        minutes = [row["minutes"] for row in run["curve"]]
        for metric, style in (("segm AP", "-o"), ("bbox AP", "--")):
            values = [row.get(metric) for row in run["curve"]]
            if any(v is not None for v in values):
                ax.plot(minutes, [float("nan") if v is None else v for v in values], style, color=colour,
                        label=f"{run['model']} {metric}", markersize=4)
    ax.set_xlabel("training minutes (evaluations not counted; the last point of each line on every val image, "
                  "the others on the first --curve-images)", fontsize=8)
    ax.set_ylabel("COCO AP (%) on shapes_val")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def usable_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def fit_loader_workers(cfg, threads: int, opts=()) -> None:
    """No data-loader process when the torch threads take every core (unless the command line sets
    ``DATALOADER.NUM_WORKERS``): a worker then competes with them for the cores. On this 2-core
    machine, shapes BlendMask in bf16 with 2 threads: 0.298 s/iter with 0 workers, 0.339 with 1
    (train_net.py, 120 iterations, two runs each, alternated)."""
    if "DATALOADER.NUM_WORKERS" in list(opts)[::2]:
        return
    cores = usable_cores()
    if cfg.DATALOADER.NUM_WORKERS > 0 and threads >= cores:
        logger.info(f"DATALOADER.NUM_WORKERS {cfg.DATALOADER.NUM_WORKERS} -> 0: {threads} torch threads "
                    f"on {cores} cores leave none for a loader process")
        cfg.DATALOADER.NUM_WORKERS = 0


def busy_cores(cores: int, seconds: float = 1.0) -> float:
    """How many of ``cores`` other work keeps busy now: from /proc/stat over ``seconds`` on Linux (the
    1-minute load average lags by a minute: right after another job it still counts it), else the
    load average."""
    def sample():
        with open("/proc/stat") as f:
            values = [float(v) for v in f.readline().split()[1:]]
        return values[3] + values[4], sum(values)  # idle + iowait, total

    try:
        idle0, total0 = sample()
        time.sleep(seconds)
        idle1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return cores * (1 - (idle1 - idle0) / max(total1 - total0, 1e-9))


def choose_threads(requested: int) -> int:
    """torch threads: the idle cores. Oversubscribed OpenMP threads on a busy CPU are many times
    slower than fewer threads, so a machine shared with other jobs gets fewer."""
    if requested > 0:
        return requested
    cores = usable_cores()
    return max(1, min(cores, round(cores - busy_cores(cores))))


COLUMNS = ("iterations", "s/iter", "train min", "bbox AP", "segm AP", "segm AP50", "inference ms/image", "peak MB",
           "load avg")


def summary_table(results) -> str:
    """A markdown table of the runs (``None`` results print as nan)."""
    failed = any("error" in run for run in results.values())
    lines = ["| model | " + " | ".join(COLUMNS) + " |" + (" failure |" if failed else ""),
             "|---|" + "---:|" * len(COLUMNS) + ("---|" if failed else "")]
    formats = {"iterations": "{:.0f}", "s/iter": "{:.3f}", "peak MB": "{:.0f}", "inference ms/image": "{:.1f}"}
    for run in results.values():
        cells = [formats.get(c, "{:.1f}").format(float("nan") if run.get(c) is None else run[c]) for c in COLUMNS]
        if failed:
            cells.append(run.get("error", "").replace("|", "/"))
        lines.append(f"| {run['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default=str(REPO / "output" / "main_job"))
    parser.add_argument("--models", nargs="+", default=["blendmask"],
                        help=f"comma-separated, any of {', '.join(MODEL_CONFIGS)}")
    parser.add_argument("--minutes", type=float, default=0,
                        help="train each model for this many minutes of training steps (default: iterations)")
    parser.add_argument("--iters", type=int, default=0, help="training iterations without --minutes "
                        "(default: the config's SOLVER.MAX_ITER)")
    parser.add_argument("--curve-points", type=int, default=5,
                        help="evaluations at evenly spaced fractions of the training (the last at the end)")
    parser.add_argument("--curve-images", type=int, default=50,
                        help="val images of the learning curve's evaluations (the final one uses all)")
    parser.add_argument("--compare-mask-rcnn", action="store_true", help="same as adding mask_rcnn to --models")
    parser.add_argument("--num-pictures", type=int, default=8)
    parser.add_argument("--timing-images", type=int, default=50)
    parser.add_argument("--score-threshold", type=float, default=0.4, help="lowest score drawn in the pictures")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: the idle cores)")
    parser.add_argument("--eval-precisions", default="", metavar="P1,P2",
                        help="also evaluate each final model in these comma-separated TEST.PRECISION values "
                             f"({', '.join(PRECISIONS)}), e.g. fp32,bf16: one more table")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides of every model's config")
    args = parser.parse_args(argv)
    try:
        args.models = parse_models(args.models + (["mask_rcnn"] if args.compare_mask_rcnn else []))
    except ValueError as e:
        parser.error(str(e))
    args.eval_precisions = [p.strip().lower() for p in args.eval_precisions.split(",") if p.strip()]
    unknown = [p for p in args.eval_precisions if p not in PRECISIONS]
    if unknown:
        parser.error(f"--eval-precisions: unknown {', '.join(unknown)}; choose from {', '.join(PRECISIONS)}")
    if args.minutes < 0 or (args.minutes and args.iters):
        parser.error("--minutes must be positive and cannot be combined with --iters")
    return args


def run_models(runs: dict, args, threads: int, log_path: str, target=None) -> dict:
    """Train each model of ``runs`` (key -> config) in a fresh process, one after the other, with
    ``target`` (default :func:`train_one`). Returns key -> its run.json; a model whose process
    failed without writing one gets ``{"model", "error"}``, and the next model still runs."""
    spawn = multiprocessing.get_context("spawn")
    results = {}
    for key, cfg in runs.items():
        name = MODEL_CONFIGS[key][0]
        run_json = Path(cfg.OUTPUT_DIR) / "run.json"
        run_json.unlink(missing_ok=True)
        process = spawn.Process(target=target or train_one, args=(
            key, cfg.dump(), args.minutes, args.curve_points, args.curve_images, args.timing_images, threads,
            log_path, tuple(getattr(args, "eval_precisions", ()))))
        process.start()
        process.join()
        if run_json.exists():
            results[key] = json.loads(run_json.read_text())
        else:
            results[key] = {"model": name, "error": f"its process ended with exit code {process.exitcode} "
                                                    "without a result"}
        if "error" in results[key]:
            logger.error(f"{name} failed: {results[key]['error']}; going on with the other models")
    return results


def main(argv=None):
    args = parse_args(argv)
    output_dir = Path(args.output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    log_path = str(output_dir / "log.txt")
    setup_logger(log_path, name="main_job", abbrev_name="main_job")
    threads = choose_threads(args.threads)
    logger.info(f"torch {torch.__version__}: {threads} CPU thread(s); output folder {output_dir}")

    start = time.perf_counter()
    names = register_shapes()  # generated once into .cache/datasets/shapes
    logger.info(f"Dataset ready in {time.perf_counter() - start:.0f}s: {names}")
    runs = {key: model_cfg(args, output_dir, key) for key in args.models}  # fails early on a bad config
    for cfg in runs.values():
        fit_loader_workers(cfg, threads, args.opts)

    results = run_models(runs, args, threads, log_path)
    failed = {key: run["error"] for key, run in results.items() if "error" in run}
    trained = {key: cfg for key, cfg in runs.items() if key not in failed}

    budget = f"{args.minutes:g} min of training each" if args.minutes else "each config's iterations"
    title = f"shapes_val, {budget}, {threads} CPU thread(s)"
    plot_curves({k: r for k, r in results.items() if k in trained}, output_dir / "curves.png", title)
    plot_losses(runs, output_dir / "losses.png")
    pictures = save_pictures(trained, names["val"], output_dir / "pictures", args.num_pictures, args.score_threshold)
    table = summary_table(results)
    if args.eval_precisions:
        table += ("\n\nThe final models on all of shapes_val in each precision (AP in %):\n\n"
                  + precision_table(results, args.eval_precisions))
    (output_dir / "summary.txt").write_text(f"{title}\n\n{table}\n")
    (output_dir / "summary.json").write_text(json.dumps(results, indent=1))
    print(f"\nResults on {names['val']} ({len(DatasetCatalog.get(names['val']))} images), COCO AP in %, {budget}:")
    print(table)
    print(f"\nTotal time {(time.perf_counter() - start) / 60:.1f} min with {threads} CPU thread(s).")
    print(f"Pictures ({len(pictures)}: ground truth | each model): {output_dir / 'pictures'}")
    print(f"AP against minutes: {output_dir / 'curves.png'}; training losses: {output_dir / 'losses.png'}")
    print(f"Output folder: {output_dir}")
    for key, reason in failed.items():
        print(f"{MODEL_CONFIGS[key][0]} failed: {reason} (its log: {log_path})")
    return results


if __name__ == "__main__":
    raise SystemExit(1 if any("error" in run for run in main().values()) else 0)
