"""A training run killed with SIGKILL resumes where its last complete checkpoint left off."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from test_train_net import CONFIG, TINY, TINY_OPTS, train_net

from blendmask.data import build_shapes_dataset
from conftest import REPO_ROOT

CHECKPOINT = re.compile(r"model_\d{7}\.pth")
PERIOD = 3  # a checkpoint after iterations 2, 5, 8, ...
START_TIMEOUT_S = 240  # import, dataset, model and the first checkpoints; normally ~10 s
RUN_TIMEOUT_S = 300


def _tail(path, chars=4000):
    text = path.read_text(errors="replace") if path.exists() else "(no output)"
    return f"\n--- last output of train_net.py ({path}) ---\n{text[-chars:]}"


def _load_complete(path):
    """The checkpoint at ``path``; fails the test when it is not a whole, readable checkpoint."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise AssertionError(f"{path.name} is referenced or kept but cannot be read: {type(e).__name__}: {e}") from e
    assert {"model", "trainer", "iteration"} <= set(checkpoint), f"{path.name} has only {sorted(checkpoint)}"
    return checkpoint


def _named_checkpoint(out):
    """The file name in ``last_checkpoint``, or None before the first checkpoint."""
    try:
        name = (out / "last_checkpoint").read_text().strip()
    except FileNotFoundError:
        return None
    assert CHECKPOINT.fullmatch(name) or name == "model_final.pth", f"last_checkpoint names {name!r}"
    return name


def _train_net_command(data, out, *opts, resume=False):
    return [
        sys.executable, str(REPO_ROOT / "train_net.py"), "--config-file", CONFIG, *(["--resume"] if resume else []),
        "--coco-dataset", "crash_train", str(data["train"]), str(data["train"].parent / "train"),
        *TINY_OPTS, "SOLVER.WARMUP_ITERS", "40",  # the learning rate changes every iteration
        "DATASETS.TRAIN", "('crash_train',)", "DATASETS.TEST", "()",
        "SOLVER.CHECKPOINT_PERIOD", str(PERIOD), "OUTPUT_DIR", str(out), *opts,
    ]


def _kill_after_a_checkpoint(command, out, log):
    """Start train_net.py; once two checkpoints exist, SIGKILL it as soon as it starts writing
    another one (a ``.tmp`` file appears) or, failing that, after a fourth. Every checkpoint that
    ``last_checkpoint`` names along the way must load completely."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "2"}
    seen = []
    with open(log, "wb") as log_file:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log_file, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                if process.poll() is not None:
                    raise AssertionError(f"train_net.py exited (code {process.returncode}) before it was killed"
                                         + _tail(log))
                if time.monotonic() > deadline:
                    raise AssertionError(f"no checkpoint to kill after within {START_TIMEOUT_S} s" + _tail(log))
                name = _named_checkpoint(out)
                if name and name not in seen:
                    _load_complete(out / name)  # a complete file, never a torn one
                    seen.append(name)
                writing = any(p.name.endswith(".pth.tmp") for p in out.iterdir()) if out.exists() else False
                if len(seen) >= 4 or (len(seen) >= 2 and writing):
                    break
                time.sleep(0.005)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
            process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, f"train_net.py ended with {process.returncode}" + _tail(log)


def _optimizer_state(checkpoint):
    assert "_trainer" in checkpoint["trainer"], "the checkpoint holds no optimizer state (momentum, learning rates)"
    return checkpoint["trainer"]["_trainer"]["optimizer"]


def _scheduler_state(checkpoint):
    return checkpoint["trainer"]["hooks"]["LRScheduler"]


def test_sigkilled_training_resumes_from_its_last_complete_checkpoint(tmp_path):
    data = build_shapes_dataset(tmp_path / "data", TINY)
    out = tmp_path / "out"
    first_log, resume_log = tmp_path / "first.log", tmp_path / "resume.log"
    first_run = ("SOLVER.MAX_ITER", "1000")  # never ends by itself: it is killed
    _kill_after_a_checkpoint(_train_net_command(data, out, *first_run), out, first_log)

    # after the kill: last_checkpoint names a complete checkpoint, the newest whole one; every
    # kept .pth file is whole; a checkpoint being written at the kill is only a .tmp, never named
    name = _named_checkpoint(out)
    checkpoint = _load_complete(out / name)
    saved_iter = checkpoint["iteration"]
    assert saved_iter >= 2 * PERIOD - 1 and (saved_iter + 1) % PERIOD == 0, saved_iter
    assert name == f"model_{saved_iter:07d}.pth"
    next_name = f"model_{saved_iter + PERIOD:07d}.pth"  # the one being written when killed, if any
    kept = sorted(p.name for p in out.glob("model_*.pth"))
    # (next_name only when the kill fell between its rename and the update of last_checkpoint)
    assert kept[-1] in (name, next_name), kept
    for kept_name in kept:
        _load_complete(out / kept_name)
    torn = sorted(p.name for p in out.glob("*.tmp"))
    assert set(torn) <= {f"{next_name}.tmp", "last_checkpoint.tmp"}, torn
    before = {n: ((out / n).stat().st_mtime_ns, (out / n).stat().st_size) for n in kept if n <= name}

    # the optimizer (momentum buffers, learning rates) and the scheduler are in the checkpoint ...
    saved_optimizer, saved_scheduler = _optimizer_state(checkpoint), _scheduler_state(checkpoint)
    saved_lrs = [g["lr"] for g in saved_optimizer["param_groups"]]
    momenta = {i: s["momentum_buffer"] for i, s in saved_optimizer["state"].items()}
    assert momenta and all(m.abs().sum() > 0 for m in momenta.values()), "SGD momentum is missing or zero"
    assert saved_scheduler["last_epoch"] == saved_iter + 1

    # ... and --resume restores exactly them (what train_net.main does before trainer.train())
    args = train_net.argument_parser().parse_args(_train_net_command(data, out, *first_run, resume=True)[2:])
    trainer = train_net.Trainer(train_net.setup(args))
    fresh_lrs = [g["lr"] for g in trainer.optimizer.param_groups]
    trainer.resume_or_load(resume=args.resume)
    assert trainer.start_iter == saved_iter + 1
    restored = trainer.optimizer.state_dict()
    assert restored["state"].keys() == momenta.keys()
    for i, momentum in momenta.items():
        assert torch.equal(restored["state"][i]["momentum_buffer"], momentum), f"momentum buffer {i} differs"
    assert [g["lr"] for g in restored["param_groups"]] == saved_lrs
    assert saved_lrs != fresh_lrs  # in warmup: not the rate of iteration 0
    assert trainer.scheduler.state_dict() == saved_scheduler
    assert trainer.scheduler.get_lr() == pytest.approx(saved_lrs, rel=1e-12)  # the schedule is where it was
    model_state = trainer.model.state_dict()
    for key, value in checkpoint["model"].items():
        assert torch.equal(model_state[key], value), f"model weight {key} differs from the checkpoint"
    del trainer

    # the real re-run: a new `train_net.py --resume` process continues at saved_iter + 1
    command = _train_net_command(data, out, "SOLVER.MAX_ITER", str(saved_iter + 4), resume=True)
    with open(resume_log, "wb") as log_file:
        try:
            result = subprocess.run(command, cwd=REPO_ROOT, stdout=log_file, stderr=subprocess.STDOUT,
                                    timeout=RUN_TIMEOUT_S, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        except subprocess.TimeoutExpired:
            raise AssertionError(f"train_net.py --resume took over {RUN_TIMEOUT_S} s" + _tail(resume_log)) from None
    assert result.returncode == 0, f"train_net.py --resume failed ({result.returncode})" + _tail(resume_log)
    started = re.findall(r"Starting training from iteration (\d+)", resume_log.read_text())
    assert started == [str(saved_iter + 1)], f"started from {started}" + _tail(resume_log)
    for kept_name, stamp in before.items():  # iterations up to saved_iter were not run again
        path = out / kept_name
        assert (path.stat().st_mtime_ns, path.stat().st_size) == stamp, f"{kept_name} was rewritten"
    assert _named_checkpoint(out) == "model_final.pth"
    final = _load_complete(out / "model_final.pth")
    assert final["iteration"] == saved_iter + 3
    assert _scheduler_state(final)["last_epoch"] == saved_iter + 4
    assert _optimizer_state(final)["state"].keys() == momenta.keys()
