"""Shared test helpers: where the AdelaiDet reference fixtures live, and config builders."""

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = Path(
    os.environ.get("BLENDMASK_REFERENCE_DIR", REPO_ROOT.parent / "shared" / "reference" / "adelaidet")
)

torch.set_num_threads(2)


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
