"""Shared test helpers: where the AdelaiDet reference fixtures live, and config builders."""

import contextlib
import importlib.util
import logging
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.structures import Boxes, Instances, PolygonMasks

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = Path(
    os.environ.get("BLENDMASK_REFERENCE_DIR", REPO_ROOT.parent / "shared" / "reference" / "adelaidet")
)

torch.set_num_threads(2)


def import_script(relative: str):
    """A script of the repository (``train_net.py``, ``tools/main_job.py``, ``benchmarks/x.py``) as
    a module, loaded from its path once per session; ``sys.path`` is left alone."""
    name = "repo_script_" + relative.removesuffix(".py").replace("/", "_")
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO_ROOT / relative)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return sys.modules[name]


@contextlib.contextmanager
def capture_records(name: str = "blendmask", level: int = logging.DEBUG):
    """The log records of logger ``name`` and its children at ``level`` and above, while the block
    runs (whatever handlers and propagation detectron2's setup_logger gave it)."""
    records = []

    class _Collect(logging.Handler):
        def emit(self, record):
            records.append(record)

    logger = logging.getLogger(name)
    handler, saved = _Collect(level), logger.level
    logger.addHandler(handler)
    logger.setLevel(min(level, saved or logging.WARNING))
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved)


def fixed_batch_losses(model, batch, steps: int, lr: float, expected_losses=None):
    """Train ``model`` (training mode) ``steps`` SGD steps (momentum 0.9) on one fixed ``batch``;
    every step's losses must be finite (and, with ``expected_losses``, exactly those keys).
    Returns the total loss of each step."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    history = []
    for _ in range(steps):
        losses = model(batch)
        if expected_losses is not None:
            assert set(losses) == set(expected_losses), sorted(losses)
        assert all(torch.isfinite(v) for v in losses.values()), losses
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        history.append(total.item())
    return history


def reference_file(name: str) -> Path:
    """Path of a file in ../shared/reference/adelaidet; skips the test when it is absent."""
    path = REFERENCE_DIR / name
    if not path.exists():
        pytest.skip(f"AdelaiDet reference fixture {path} is absent (needs ../shared beside the repo)")
    return path


def tiny_cfg(meta_arch: str = "BlendMask", **overrides):
    """A narrow ResNet-50 BlendMask/FCOS config that runs in well under a second per image."""
    from detectron2.config import get_cfg

    from blendmask import add_blendmask_config

    cfg = add_blendmask_config(get_cfg())
    base = "BlendMask/Base-BlendMask.yaml" if meta_arch == "BlendMask" else "FCOS-Detection/Base-FCOS.yaml"
    cfg.merge_from_file(str(REPO_ROOT / "configs" / base))
    cfg.merge_from_list([
        "MODEL.DEVICE", "cpu",
        "MODEL.RESNETS.DEPTH", 50,
        "MODEL.RESNETS.STEM_OUT_CHANNELS", 16,
        "MODEL.RESNETS.RES2_OUT_CHANNELS", 32,
        "MODEL.RESNETS.WIDTH_PER_GROUP", 8,
        "MODEL.FPN.OUT_CHANNELS", 64,
        "MODEL.BASIS_MODULE.CONVS_DIM", 32,
        "MODEL.FCOS.NUM_CLASSES", 5,
        "MODEL.BASIS_MODULE.NUM_CLASSES", 5,
    ])
    for key, value in overrides.items():
        cfg.merge_from_list([key, value])
    return cfg


def square_instances(h, w, boxes, classes):
    inst = Instances((h, w))
    inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    inst.gt_classes = torch.tensor(classes, dtype=torch.long)
    inst.gt_masks = PolygonMasks([[np.array([x0, y0, x1, y0, x1, y1, x0, y1], dtype=np.float64)]
                                  for x0, y0, x1, y1 in boxes])
    return inst


def training_input(h=100, w=132, boxes=((10, 12, 60, 70), (50, 30, 120, 90)), classes=(1, 3)):
    torch.manual_seed(0)
    return {"image": torch.rand(3, h, w) * 255, "instances": square_instances(h, w, boxes, classes)}
