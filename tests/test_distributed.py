"""Several processes train as one: blendmask.engine.launch on CPUs (gloo), the Trainer's DDP
wrapper, SyncBN on CPUs, and loss normalisers reduced across processes."""

import distributed_fixtures
import pytest
import torch
from torch import nn

from blendmask.engine.launch import create_ddp_model, launch, set_local_process_group, threads_per_process
from blendmask.modeling.layers.norms import syncbn_to_naive_syncbn

STEPS = 3
# Loss values: float32 sums taken in another order (2 half batches + an all-reduce instead of one
# batch) differ by a few units in the last place (eps 1.2e-7); we see <= 4e-7 relative after 3 steps.
# An unsynchronised BatchNorm or a normaliser left per process shows up at 1e-4..1e-3: 1e-5 tells
# them apart. Weights: gradient differences of ~1e-6 relative, times lr 0.01 and momentum over 3
# steps, move weights by < 1e-5 (7e-6 seen); 1e-4 absolute is 10x that and 100x below one step's update.
LOSS_RTOL = 1e-5
WEIGHT_ATOL = 1e-4


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = {}
    for world in (1, 2):
        folder = tmp_path_factory.mktemp(f"world{world}")
        launch(distributed_fixtures.train_steps, world, args=(("BlendMask", "OneStageDetector"), STEPS, str(folder)))
        out[world] = folder
    return out


@pytest.mark.slow
@pytest.mark.parametrize("meta_arch", ["BlendMask", "OneStageDetector"])
def test_two_processes_of_two_images_train_as_one_process_of_four(runs, meta_arch):
    one = torch.load(runs[1] / f"{meta_arch}.pt")
    two = torch.load(runs[2] / f"{meta_arch}.pt")
    if meta_arch == "BlendMask":  # BASIS_MODULE.NORM SyncBN: really synchronised on CPU processes
        assert "NaiveSyncBatchNorm" in two["norms"] and "BatchNorm2d" not in two["norms"]
    assert len(one["history"]) == len(two["history"]) == STEPS
    for step, (a, b) in enumerate(zip(one["history"], two["history"])):
        assert a.keys() == b.keys()
        for name in a:
            assert b[name] == pytest.approx(a[name], rel=LOSS_RTOL), (step, name)
    assert one["state"].keys() == two["state"].keys()
    moved = 0
    for name, value in one["state"].items():
        if name.endswith(("running_var", "num_batches_tracked")):
            # NaiveSyncBatchNorm keeps the biased variance estimate, BatchNorm2d the unbiased one:
            # the statistics used at inference only, not in training
            continue
        # running means track activations of any magnitude (hundreds at random init): relative
        rtol = LOSS_RTOL * 10 if name.endswith("running_mean") else 0
        torch.testing.assert_close(two["state"][name], value, rtol=rtol, atol=WEIGHT_ATOL, msg=name)
        moved += 1
    assert moved > 50


def test_ddp_wrapper_is_a_no_op_in_one_process():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.SyncBatchNorm(4))
    assert create_ddp_model(model) is model


def test_syncbn_becomes_naive_syncbn_with_the_same_parameters():
    from detectron2.layers import NaiveSyncBatchNorm

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.SyncBatchNorm(4))
    weight, mean = model[1].weight, model[1].running_mean
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    syncbn_to_naive_syncbn(model)
    assert type(model[1]) is NaiveSyncBatchNorm
    assert model[1].weight is weight and model[1].running_mean is mean
    model(torch.rand(2, 3, 8, 8)).sum().backward()
    optimizer.step()  # updates the parameters the new layer uses
    assert model[1].weight is weight


def test_threads_are_shared_between_the_processes_of_a_machine(monkeypatch):
    monkeypatch.delenv("BLENDMASK_THREADS_PER_PROCESS", raising=False)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)))
    assert threads_per_process(1) == 8 and threads_per_process(2) == 4 and threads_per_process(16) == 1
    monkeypatch.setenv("BLENDMASK_THREADS_PER_PROCESS", "3")
    assert threads_per_process(2) == 3


def test_local_process_group_on_detectron2_06_and_later(monkeypatch):
    import detectron2.utils.comm as comm
    import torch.distributed as dist

    created = []
    if hasattr(comm, "create_local_process_group"):
        monkeypatch.setattr(comm, "create_local_process_group", created.append)
        set_local_process_group(2)
        assert created == [2]
        return
    monkeypatch.setattr(dist, "get_world_size", lambda: 4)
    monkeypatch.setattr(dist, "get_rank", lambda: 3)
    monkeypatch.setattr(dist, "new_group", lambda ranks: tuple(ranks))
    monkeypatch.setattr(comm, "_LOCAL_PROCESS_GROUP", None)
    set_local_process_group(2)
    assert comm._LOCAL_PROCESS_GROUP == (2, 3)


def test_torchrun_environment_is_honoured(monkeypatch):
    for name, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"}.items():
        monkeypatch.setenv(name, value)
    threads = torch.get_num_threads()
    try:
        assert launch(lambda x: x + 1, 4, args=(1,)) == 2  # torchrun's world (1) wins over 4
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("later_detectron2", [False, True])
def test_resume_from_a_checkpoint_without_optimizer_state(monkeypatch, caplog, later_detectron2):
    """detectron2 0.6 writes no "_trainer"; detectron2 after 0.6 reads it unconditionally."""
    from unittest import mock

    from detectron2.engine import DefaultTrainer, TrainerBase

    from blendmask.engine import Trainer

    if later_detectron2:
        def reads_trainer_unconditionally(self, state_dict):
            TrainerBase.load_state_dict(self, state_dict)
            self._trainer.load_state_dict(state_dict["_trainer"])

        monkeypatch.setattr(DefaultTrainer, "load_state_dict", reads_trainer_unconditionally)
        monkeypatch.setattr("blendmask.engine.trainer._D2_SAVES_OPTIMIZER", True)
    trainer = Trainer.__new__(Trainer)  # only what load_state_dict touches
    trainer.iter, trainer._hooks, trainer._trainer = 0, [], mock.Mock()
    with caplog.at_level("WARNING"):
        trainer.load_state_dict({"iteration": 41, "hooks": {}})
    assert trainer.iter == 41 and not trainer._trainer.load_state_dict.called
    assert "no optimizer state" in caplog.text
    trainer.load_state_dict({"iteration": 7, "hooks": {}, "_trainer": {"optimizer": {}}})
    assert trainer.iter == 7
    trainer._trainer.load_state_dict.assert_called_once_with({"optimizer": {}})


def test_a_cpu_model_uses_gloo_even_where_gpus_exist(monkeypatch):
    from blendmask.engine.launch import choose_backend

    monkeypatch.delenv("BLENDMASK_DIST_BACKEND", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    assert choose_backend(2) == "nccl" and choose_backend(2, "cuda") == "nccl"
    assert choose_backend(2, "cpu") == "gloo"
    assert choose_backend(16, "cuda") == "gloo"  # fewer GPUs than processes
    monkeypatch.setenv("BLENDMASK_DIST_BACKEND", "mpi")
    assert choose_backend(2, "cpu") == "mpi"


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["torchrun", "--num-gpus"])
def test_train_net_trains_and_evaluates_in_two_cpu_processes(tmp_path, launcher):
    """``torchrun --nproc-per-node 2 train_net.py`` and ``train_net.py --num-gpus 2`` on a CPU
    machine: 2 iterations of 1 image per process, then evaluation on 2 processes."""
    import json
    import os
    import subprocess
    import sys

    from test_train_net import CONFIG, TINY_OPTS, _write_custom_coco

    from conftest import REPO_ROOT

    data = []
    for split, n in (("train", 4), ("val", 2)):
        data += ["--coco-dataset", f"two_{split}", str(_write_custom_coco(tmp_path, split, n)), str(tmp_path / split)]
    opts = [*TINY_OPTS, "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "2", "DATASETS.TRAIN", "('two_train',)",
            "DATASETS.TEST", "('two_val',)", "OUTPUT_DIR", str(tmp_path / "out")]
    train_net = str(REPO_ROOT / "train_net.py")
    if launcher == "torchrun":
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                   str(__import__("blendmask.engine.launch", fromlist=["x"]).free_local_port()), train_net]
    else:
        command = [sys.executable, train_net, "--num-gpus", "2"]
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    done = subprocess.run([*command, "--config-file", CONFIG, *data, *opts], env=env, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    # detectron2's logger writes the second process's log beside the first's: two processes ran
    assert (tmp_path / "out" / "log.txt").exists() and (tmp_path / "out" / "log.txt.rank1").exists()
    rows = [json.loads(line) for line in (tmp_path / "out" / "metrics.json").read_text().splitlines()]
    assert max(r["iteration"] for r in rows if "total_loss" in r) == 1  # iterations 0 and 1
    assert (tmp_path / "out" / "model_final.pth").exists()
    # the evaluation gathered both val images' predictions (one per process) on rank 0
    predictions = torch.load(tmp_path / "out" / "inference" / "two_val" / "instances_predictions.pth",
                             weights_only=True)
    assert sorted(p["image_id"] for p in predictions) == [1, 2]
