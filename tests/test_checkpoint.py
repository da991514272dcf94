"""AdelaiDet checkpoint compatibility: key/shape lists of the full-size models, conversion."""

import csv
import subprocess
import sys

import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.modeling import build_model

from adelaidet_fixtures import load_fixture_model
from blendmask import add_blendmask_config
from blendmask.checkpoint import convert_adelaidet_state_dict
from conftest import REPO_ROOT, reference_file, tiny_cfg

TSV_TO_CONFIG = {
    "blendmask_R50_state_dict.tsv": "BlendMask/R_50_1x.yaml",
    "blendmask_550_R50_state_dict.tsv": "BlendMask/550_R_50_3x.yaml",
    "blendmask_RT_R50_bnhead_syncbn_state_dict.tsv": "BlendMask/RT_R_50_4x_bn-head_syncbn_shtw.yaml",
    "fcos_R50_state_dict.tsv": "FCOS-Detection/R_50_1x.yaml",
}


def _read_tsv(path):
    with open(path) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return {r["key"]: tuple(int(x) for x in r["shape"].strip("[]").split(",") if x.strip()) for r in rows}


@pytest.mark.parametrize("tsv", sorted(TSV_TO_CONFIG))
def test_full_size_models_have_adelaidet_keys_and_shapes(tsv):
    expected = _read_tsv(reference_file(tsv))
    cfg = add_blendmask_config(get_cfg())
    cfg.merge_from_file(str(REPO_ROOT / "configs" / TSV_TO_CONFIG[tsv]))
    cfg.MODEL.DEVICE = "cpu"
    ours = {k: tuple(v.shape) for k, v in build_model(cfg).state_dict().items()}
    assert sorted(set(expected) - set(ours)) == [], "missing in our model"
    assert sorted(set(ours) - set(expected)) == [], "unexpected in our model"
    assert {k: v for k, v in ours.items() if expected[k] != v} == {}


def test_conversion_drops_old_buffers_and_unused_aux_head():
    state = {"pixel_mean": torch.zeros(3, 1, 1), "a.weight": np.ones((2, 2), dtype=np.float32),
             "basis_module.seg_head.0.weight": torch.zeros(1)}
    converted, notes = convert_adelaidet_state_dict(state, model_keys=["a.weight"])
    assert set(converted) == {"a.weight"}
    assert isinstance(converted["a.weight"], torch.Tensor) and converted["a.weight"].sum() == 4
    assert len(notes) == 2 and "pixel_mean" in notes[0]
    # without model keys the auxiliary head is kept
    assert "basis_module.seg_head.0.weight" in convert_adelaidet_state_dict(state)[0]


def test_old_style_checkpoint_loads_through_model_weights(tmp_path):
    """A checkpoint with persistent pixel_mean/std and an aux head loads into a LOSS_ON False model."""
    cfg = tiny_cfg(**{"MODEL.BASIS_MODULE.LOSS_ON": True})
    source = build_model(cfg)
    state = dict(source.state_dict())
    state["pixel_mean"] = torch.tensor(cfg.MODEL.PIXEL_MEAN).view(3, 1, 1)
    state["pixel_std"] = torch.ones(3, 1, 1)
    path = tmp_path / "old.pth"
    torch.save({"model": state}, path)

    cfg.MODEL.BASIS_MODULE.LOSS_ON = False
    target = build_model(cfg)
    assert not hasattr(target.basis_module, "seg_head")
    result = target.load_state_dict(torch.load(path, weights_only=True)["model"], strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    DetectionCheckpointer(target).load(str(path))  # the MODEL.WEIGHTS path
    torch.testing.assert_close(target.top_layer.weight, source.top_layer.weight)


def test_convert_tool_writes_a_loadable_file(tmp_path):
    src = reference_file("tiny_blendmask_adet.pth")
    out = tmp_path / "converted.pth"
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "convert_adelaidet.py"), str(src), str(out),
         "--config-file", str(reference_file("tiny_blendmask.yaml"))],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout
    converted = torch.load(out, weights_only=True)["model"]
    original = torch.load(src, weights_only=True)["model"]
    assert set(converted) == set(original)
    model = load_fixture_model("tiny_blendmask")
    model.load_state_dict(converted, strict=True)


def test_convert_tool_refuses_pickled_code(tmp_path):
    bad = tmp_path / "pickled.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "extra": argparse_namespace()}, bad)
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "convert_adelaidet.py"), str(bad), str(tmp_path / "o.pth")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    assert "--allow-pickle" in proc.stderr
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "convert_adelaidet.py"), str(bad), str(tmp_path / "o.pth"),
         "--allow-pickle"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr


def argparse_namespace():
    import argparse

    return argparse.Namespace(lr=0.1)
