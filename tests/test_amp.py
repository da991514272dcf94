"""SOLVER.AMP.ENABLED: mixed-precision training on CPUs (bfloat16) and GPUs (float16 + scaler) in
our Trainer (blendmask.engine.amp.MixedPrecisionTrainer): steps, skipped non-finite steps under
the scaler, the scaler state through checkpoints, several processes."""

import pytest
import torch
from torch import nn

from blendmask.engine import amp as A
from blendmask.engine import precision as P

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (fp16 training on CUDA)")


@pytest.fixture
def native(monkeypatch):
    """As on a CPU with native bfloat16 and float16 (only their speed depends on it)."""
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(P, "cpu_has_native_fp16", lambda: True)


class _Scaled(nn.Module):
    """A linear model whose loss is multiplied by the next factor of ``factors`` (inf: a bad step)."""

    def __init__(self, factors):
        super().__init__()
        self.linear = nn.Linear(4, 4)
        self.factors = list(factors)
        self.dtypes = []

    def forward(self, x):
        y = self.linear(x)
        self.dtypes.append(y.dtype)
        return {"loss": (y.float() ** 2).mean() * self.factors.pop(0)}


@pytest.fixture(autouse=True)
def _storage():
    from detectron2.utils.events import EventStorage

    with EventStorage(0):  # where run_step writes its metrics
        yield


def _trainer(model, precision):
    data = iter(lambda: torch.ones(2, 4), None)  # an endless loader
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = A.MixedPrecisionTrainer(model.train(), data, optimizer, precision)
    trainer.iter = 0
    return trainer


def test_training_dtype(native, monkeypatch):
    assert A.training_dtype("auto", "cpu") is torch.bfloat16
    assert A.training_dtype("auto", "cuda") is torch.float16
    assert A.training_dtype("bfloat16", "cuda") is torch.bfloat16
    with pytest.raises(ValueError, match="SOLVER.AMP.PRECISION"):
        A.training_dtype("fp32", "cpu")
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: False)
    assert A.training_dtype("auto", "cpu") is torch.float32  # warned: emulated bf16 is slower


def test_bf16_step_on_cpu_without_scaler(native):
    model = _Scaled([1.0, 1.0])
    trainer = _trainer(model, "auto")
    assert trainer.dtype is torch.bfloat16 and trainer.grad_scaler is None
    before = model.linear.weight.detach().clone()
    trainer.run_step()
    assert model.dtypes == [torch.bfloat16]  # the forward ran under autocast
    assert model.linear.weight.dtype == torch.float32 and not torch.equal(before, model.linear.weight)


def test_bf16_non_finite_loss_stops_training(native):
    trainer = _trainer(_Scaled([float("inf")]), "bf16")
    with pytest.raises(FloatingPointError):
        trainer.run_step()


def test_fp16_scaler_skips_a_non_finite_step_and_its_state_resumes(native):
    model = _Scaled([float("inf"), 1.0])
    trainer = _trainer(model, "fp16")
    assert trainer.grad_scaler is not None
    scale = trainer.grad_scaler.get_scale()
    before = model.linear.weight.detach().clone()
    trainer.run_step()  # inf loss: skipped, not fatal
    assert trainer.skipped_steps == 1 and torch.equal(before, model.linear.weight)
    assert trainer.grad_scaler.get_scale() == scale / 2
    trainer.run_step()
    assert not torch.equal(before, model.linear.weight)
    state = trainer.state_dict()
    assert state["grad_scaler"]["scale"] == scale / 2
    resumed = _trainer(_Scaled([1.0]), "fp16")
    resumed.load_state_dict(state)
    assert resumed.grad_scaler.get_scale() == scale / 2


@needs_cuda
def test_fp16_step_on_cuda_with_scaler():
    model = _Scaled([1.0]).cuda()
    data = iter(lambda: torch.ones(2, 4, device="cuda"), None)
    trainer = A.MixedPrecisionTrainer(model.train(), data, torch.optim.SGD(model.parameters(), lr=0.1), "auto")
    trainer.iter = 0
    assert trainer.dtype is torch.float16 and trainer.grad_scaler is not None
    trainer.run_step()
    assert model.dtypes == [torch.float16]


@pytest.fixture(scope="module")
def tiny_shapes(tmp_path_factory):
    from blendmask.data import ShapesSpec, register_shapes

    spec = ShapesSpec(image_size=64, num_train=2, num_val=1, min_shape_size=12, max_shape_size=32)
    return register_shapes(tmp_path_factory.mktemp("shapes"), spec, prefix="amp_shapes")


def _cfg(tiny_shapes, out, *opts):
    from conftest import tiny_cfg

    cfg = tiny_cfg()
    cfg.merge_from_list(["DATASETS.TRAIN", f"('{tiny_shapes['train']}',)", "DATASETS.TEST", "()",
                         "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", 64, "SOLVER.IMS_PER_BATCH", 1,
                         "DATALOADER.NUM_WORKERS", 0, "OUTPUT_DIR", str(out), "SOLVER.AMP.ENABLED", True,
                         "SOLVER.MAX_ITER", 2, "SOLVER.CHECKPOINT_PERIOD", 1, *opts])
    return cfg


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_trainer_trains_under_amp_on_cpu_and_resumes_the_scaler(native, tiny_shapes, tmp_path, precision):
    from blendmask.engine import Trainer

    trainer = Trainer(_cfg(tiny_shapes, tmp_path, "SOLVER.AMP.PRECISION", precision))
    assert isinstance(trainer._trainer, A.MixedPrecisionTrainer)
    assert trainer._trainer.dtype is {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    trainer.resume_or_load(resume=False)
    trainer.train()
    checkpoint = torch.load(tmp_path / "model_final.pth", map_location="cpu", weights_only=False)
    saved = checkpoint["trainer"]["_trainer"]
    assert ("grad_scaler" in saved) == (precision == "fp16")
    if precision == "fp16":
        saved["grad_scaler"]["scale"] = 1024.0  # resume must restore this, not start at 65536
        torch.save(checkpoint, tmp_path / "model_final.pth")
        resumed = Trainer(_cfg(tiny_shapes, tmp_path, "SOLVER.AMP.PRECISION", precision, "SOLVER.MAX_ITER", 3))
        resumed.resume_or_load(resume=True)
        assert resumed.start_iter == 2 and resumed._trainer.grad_scaler.get_scale() == 1024.0


@pytest.mark.slow
def test_amp_training_in_two_cpu_processes(tmp_path):
    """train_net.py --num-gpus 2 on CPUs with SOLVER.AMP.ENABLED: autocast inside DDP (gloo)."""
    import os
    import subprocess
    import sys

    from test_train_net import CONFIG, TINY_OPTS, _write_custom_coco

    from conftest import REPO_ROOT

    data = ["--coco-dataset", "amp_two_train", str(_write_custom_coco(tmp_path, "train", 4)), str(tmp_path / "train")]
    opts = [*TINY_OPTS, "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "2", "DATASETS.TRAIN", "('amp_two_train',)",
            "DATASETS.TEST", "()", "SOLVER.AMP.ENABLED", "True", "OUTPUT_DIR", str(tmp_path / "out")]
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, str(REPO_ROOT / "train_net.py"), "--num-gpus", "2", "--config-file", CONFIG,
                           *data, *opts], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "out" / "model_final.pth").exists()
