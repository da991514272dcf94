"""Training for a wall-clock budget (blendmask.engine.budget, tools/main_job.py --minutes)."""


import pytest
import torch

import blendmask
from blendmask.data import ShapesSpec, register_shapes, set_num_classes
from blendmask.engine.budget import BudgetSpent, BudgetTrainer, TimeBudgetHook, TrainingClock, budget_lr_factor
from conftest import REPO_ROOT, import_script

CONFIG = REPO_ROOT / "configs" / "Shapes" / "BlendMask_R18.yaml"
TINY = ShapesSpec(image_size=64, num_train=4, num_val=2, min_shape_size=12, max_shape_size=32)
TINY_OPTS = [
    "MODEL.DEVICE", "cpu", "MODEL.FPN.OUT_CHANNELS", "32", "MODEL.BASIS_MODULE.CONVS_DIM", "16",
    "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64", "INPUT.MIN_SIZE_TEST", "64",
    "INPUT.MAX_SIZE_TEST", "64", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.BASE_LR", "0.01",
    "SOLVER.WARMUP_ITERS", "2", "SOLVER.STEPS", "(50, 75)", "SOLVER.MAX_ITER", "100",
    "SOLVER.CHECKPOINT_PERIOD", "1000", "DATALOADER.NUM_WORKERS", "0", "SEED", "1",
]


class FakeTime:
    """Each call returns the previous value plus ``step`` seconds."""

    def __init__(self, step):
        self.t, self.step = 0.0, step

    def __call__(self):
        self.t += self.step
        return self.t


def test_learning_rate_follows_the_config_schedule_in_time():
    cfg = blendmask.load_config(CONFIG, TINY_OPTS)  # warm-up 2 of 100 iterations, steps at 50 and 75
    clock = TrainingClock(100.0)
    factor = budget_lr_factor(cfg, clock)
    assert factor(0) == pytest.approx(cfg.SOLVER.WARMUP_FACTOR)
    clock.spent_s = 1.0  # half the warm-up's time, and its iterations passed: time governs
    assert factor(50) == pytest.approx(cfg.SOLVER.WARMUP_FACTOR * 0.5 + 0.5)
    for spent, expected in ((2.0, 1.0), (49.9, 1.0), (50.0, 0.1), (74.9, 0.1), (75.0, 0.01), (99.0, 0.01)):
        clock.spent_s = spent
        assert factor(10) == pytest.approx(expected), spent


def test_a_short_budget_still_warms_up_over_the_configs_warmup_iterations():
    """4 minutes of a 1400-iteration config with 100 warm-up iterations: 7% of the time is 17 s,
    19 iterations of a 0.9 s/iter model (Mask R-CNN diverged so). The warm-up goes on until the
    100th iteration, or half the budget at the latest."""
    cfg = blendmask.load_config(CONFIG, TINY_OPTS + ["SOLVER.MAX_ITER", "1400", "SOLVER.WARMUP_ITERS", "100",
                                                     "SOLVER.STEPS", "(1000, 1250)"])
    clock = TrainingClock(240.0)
    factor = budget_lr_factor(cfg, clock)
    clock.spent_s = 17.1
    assert factor(19) == pytest.approx(cfg.SOLVER.WARMUP_FACTOR * 0.81 + 0.19)  # iterations govern
    clock.spent_s = 17.2
    assert factor(100) == 1.0  # a fast model: its 100 iterations done, the time fraction passed
    clock.spent_s = 120.0
    assert factor(50) == 1.0  # half the budget: the warm-up ends whatever the iterations
    clock.spent_s = 60.0
    assert factor(10) == pytest.approx(cfg.SOLVER.WARMUP_FACTOR * 0.5 + 0.5)  # a quarter of the budget: half way


def test_clock_counts_only_the_timed_steps_and_the_hook_stops_training():
    clock = TrainingClock(3.0, now=FakeTime(1.0))
    hook = TimeBudgetHook(clock)
    hook.before_step()
    hook.after_step()  # 1 s
    clock.now()  # time outside a step (an evaluation) is not counted
    hook.before_step()
    hook.after_step()  # 2 s
    assert clock.spent_s == 2.0 and hook.iterations == 2
    hook.before_step()
    with pytest.raises(BudgetSpent):
        hook.after_step()
    with pytest.raises(ValueError, match="positive"):
        TrainingClock(0)


def test_budget_trainer_stops_on_time_saves_and_records_a_curve(tmp_path):
    names = register_shapes(tmp_path / "data", TINY, prefix="budget_shapes")
    cfg = blendmask.load_config(CONFIG, [*TINY_OPTS, "OUTPUT_DIR", str(tmp_path / "out"),
                                         "DATASETS.TRAIN", f"('{names['train']}',)", "DATASETS.TEST", "()"])
    set_num_classes(cfg)
    cfg.freeze()
    torch.manual_seed(0)
    evaluated = []

    def evaluate(model):
        evaluated.append(model.training)
        return {"segm AP": float(len(evaluated))}

    # each timed step lasts 1 fake second: a 6 s budget is 6 iterations; learning-rate steps at
    # 50% and 75% of it; curve points at 1/3 and 2/3
    trainer = BudgetTrainer(cfg, 6.0, evaluate, curve_points=3, clock=TrainingClock(6.0, now=FakeTime(1.0)))
    trainer.resume_or_load(resume=False)
    trainer.train()
    assert trainer.iterations == 6 and trainer.clock.spent_s == pytest.approx(6.0)
    assert (tmp_path / "out" / "model_final.pth").exists()
    assert [r["iteration"] for r in trainer.curve.rows] == [2, 4] and len(evaluated) == 2
    lr = trainer.optimizer.param_groups[0]["lr"]
    assert lr == pytest.approx(cfg.SOLVER.BASE_LR * cfg.SOLVER.GAMMA**2)


def test_main_job_parses_models_and_builds_every_existing_config(tmp_path):
    main_job = import_script("tools/main_job.py")

    args = main_job.parse_args(["--models", "BlendMask,mask_rcnn", "SOLOv2", "--minutes", "2"])
    assert args.models == ["blendmask", "mask_rcnn", "solov2"] and args.minutes == 2
    with pytest.raises(SystemExit):
        main_job.parse_args(["--models", "blendmask,nonsense"])
    with pytest.raises(SystemExit):
        main_job.parse_args(["--minutes", "2", "--iters", "10"])
    for key, (name, path) in main_job.MODEL_CONFIGS.items():
        if not path.exists():
            continue
        cfg = main_job.model_cfg(main_job.parse_args(["--iters", "10"]), tmp_path, key)
        assert cfg.SOLVER.MAX_ITER == 10 and cfg.OUTPUT_DIR == str(tmp_path / key), name
        assert cfg.SOLVER.IMS_PER_BATCH == 8 and cfg.INPUT.MIN_SIZE_TEST == 128, name  # same data and batch
        expected_arch = {"mask_rcnn": "GeneralizedRCNN", "centermask": "CenterMask", "solov2": "SOLOv2",
                         "aggmask": "AggMask", "blendmask": "BlendMask"}[key]
        assert cfg.MODEL.META_ARCHITECTURE == expected_arch, name


def test_main_job_gives_the_loader_no_process_when_the_threads_take_every_core(tmp_path, monkeypatch):
    main_job = import_script("tools/main_job.py")
    monkeypatch.setattr(main_job.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    args = main_job.parse_args(["--iters", "10"])
    cfg = main_job.model_cfg(args, tmp_path, "blendmask")
    assert cfg.DATALOADER.NUM_WORKERS == 1  # the config's
    main_job.fit_loader_workers(cfg, threads=1, opts=args.opts)
    assert cfg.DATALOADER.NUM_WORKERS == 1  # a core is left for it
    main_job.fit_loader_workers(cfg, threads=2, opts=args.opts)
    assert cfg.DATALOADER.NUM_WORKERS == 0
    args = main_job.parse_args(["--iters", "10", "DATALOADER.NUM_WORKERS", "1"])
    cfg = main_job.model_cfg(args, tmp_path, "blendmask")
    main_job.fit_loader_workers(cfg, threads=2, opts=args.opts)
    assert cfg.DATALOADER.NUM_WORKERS == 1  # the command line decides


def test_iteration_training_gets_a_clock_and_a_curve(tmp_path):
    from blendmask.engine import Trainer
    from blendmask.engine.budget import time_and_curve

    names = register_shapes(tmp_path / "data", TINY, prefix="curve_shapes")
    cfg = blendmask.load_config(CONFIG, [*TINY_OPTS, "OUTPUT_DIR", str(tmp_path / "out"), "SOLVER.MAX_ITER", "4",
                                         "DATASETS.TRAIN", f"('{names['train']}',)", "DATASETS.TEST", "()"])
    set_num_classes(cfg)
    cfg.freeze()
    trainer = Trainer(cfg)
    clock, curve = time_and_curve(trainer, lambda model: {"segm AP": 1.0}, curve_points=2)
    trainer.resume_or_load(resume=False)
    trainer.train()
    assert [r["iteration"] for r in curve.rows] == [2]  # half way; the last point is the caller's
    assert 0 < clock.spent_s and curve.rows[0]["minutes"] * 60 <= clock.spent_s


def test_main_job_gives_a_failing_model_its_row_and_runs_the_others(tmp_path):
    from main_job_fakes import load_main_job, train_one_or_fail

    main_job = load_main_job()
    args = main_job.parse_args(["--models", "mask_rcnn,solov2,centermask", "--minutes", "4"])
    runs = {key: main_job.model_cfg(args, tmp_path, key) for key in args.models}
    results = main_job.run_models(runs, args, 1, str(tmp_path / "log.txt"), target=train_one_or_fail)
    assert list(results) == ["mask_rcnn", "solov2", "centermask"]
    assert results["mask_rcnn"]["error"] == "FloatingPointError: Loss became infinite or NaN at iteration=39!"
    assert "exit code 3" in results["solov2"]["error"]
    assert results["centermask"]["iterations"] == 5 and "error" not in results["centermask"]  # ran after both
    rows = main_job.summary_table(results).splitlines()
    assert rows[0].endswith("| failure |") and len(rows) == 5
    assert rows[2].startswith("| Mask R-CNN |") and rows[2].endswith("FloatingPointError: Loss became infinite or "
                                                                      "NaN at iteration=39! |")
    assert rows[4].startswith("| CenterMask-Lite | 5 |") and rows[4].endswith("|  |")


def test_main_job_evaluates_the_final_model_in_each_listed_precision(tmp_path, monkeypatch):
    """``--eval-precisions fp32,bf16``: one full evaluation per precision, each with the model
    switched to that precision while it runs, then a table of both and their difference."""
    main_job = import_script("tools/main_job.py")
    args = main_job.parse_args(["--eval-precisions", "fp32,BF16", "SOLVER.AMP.ENABLED", "True"])
    assert args.eval_precisions == ["fp32", "bf16"] and args.opts == ["SOLVER.AMP.ENABLED", "True"]
    with pytest.raises(SystemExit):
        main_job.parse_args(["--eval-precisions", "fp32,fp8"])
    seen = []

    def fake_test(cfg, model):
        seen.append((cfg.TEST.PRECISION, model.inference_precision, cfg.OUTPUT_DIR))
        ap = {"fp32": 50.0, "bf16": 49.75}[cfg.TEST.PRECISION]
        return {"bbox": {"AP": ap + 10}, "segm": {"AP": ap, "AP50": 80.0, "AP75": 55.0}}

    monkeypatch.setattr(main_job.Trainer, "test", staticmethod(fake_test))
    model = torch.nn.Conv2d(1, 1, 1)
    cfg = main_job.model_cfg(main_job.parse_args([]), tmp_path, "blendmask")
    by = main_job.evaluate_in_precisions(model, cfg, ["fp32", "bf16"])
    assert [s[:2] for s in seen] == [("fp32", "fp32"), ("bf16", "bf16")]
    assert seen[0][2] != seen[1][2]  # each evaluation's files in a folder of its own
    assert by["bf16"]["segm AP"] == 49.75 and by["fp32"]["bbox AP"] == 60.0
    table = main_job.precision_table({"blendmask": {"model": "BlendMask", "precisions": by},
                                      "solov2": {"model": "SOLOv2", "error": "diverged"}}, ["fp32", "bf16"])
    lines = table.splitlines()
    assert lines[0] == ("| model | bbox AP fp32 | segm AP fp32 | bbox AP bf16 | segm AP bf16 | bbox diff bf16 | "
                        "segm diff bf16 |")
    assert lines[2] == "| BlendMask | 60.00 | 50.00 | 59.75 | 49.75 | -0.25 | -0.25 |"
    assert len(lines) == 3  # the failed model has no row
