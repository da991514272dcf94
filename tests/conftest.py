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
