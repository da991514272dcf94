"""Bad input, bad numbers, untrusted files: clear errors or correct results (issue: reliability)."""

import os
import pickle

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model

from adelaidet_fixtures import fixture_training_inputs, load_fixture_model
from blendmask import load_config
from blendmask.checkpoint import BlendMaskCheckpointer, UnsafeCheckpointError
from conftest import REPO_ROOT, tiny_cfg, training_input


def test_unknown_config_key_names_the_closest_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text('_BASE_: "{}"\nMODEL:\n  FCOS:\n    NUM_CLASS: 3\n'.format(
        REPO_ROOT / "configs" / "BlendMask" / "Base-BlendMask.yaml"))
    with pytest.raises(KeyError, match=r"MODEL\.FCOS\.NUM_CLASS\. Did you mean MODEL\.FCOS\.NUM_CLASSES"):
        load_config(bad)
    with pytest.raises(KeyError, match=r"MODEL\.BLENDMASK\.ATTN_SZE\. Did you mean MODEL\.BLENDMASK\.ATTN_SIZE"):
        load_config(opts=["MODEL.BLENDMASK.ATTN_SZE", "8"])
    cfg = load_config(REPO_ROOT / "configs" / "BlendMask" / "R_50_1x.yaml", ["MODEL.FCOS.NUM_CLASSES", "3"])
    assert cfg.MODEL.FCOS.NUM_CLASSES == 3


def test_class_ids_out_of_range_are_reported():
    model = build_model(tiny_cfg()).train()
    with pytest.raises(ValueError, match=r"class ids must lie in \[0, 5\).*\[1, 7\]"):
        model([training_input(classes=(1, 7))])


def test_mismatched_class_counts_are_reported():
    with pytest.raises(ValueError, match="set_num_classes"):
        build_model(tiny_cfg(**{"MODEL.BASIS_MODULE.NUM_CLASSES": 80}))


def test_degenerate_boxes_and_polygons_outside_the_image():
    model = build_model(tiny_cfg()).train()
    boxes = ((10, 10, 10, 40), (20, 30, 60, 30), (100, 70, 160, 120), (5, 5, 50, 50))  # zero w, zero h, outside
    losses = model([training_input(100, 132, boxes=boxes, classes=(0, 1, 2, 3))])
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()


def test_very_large_output_size():
    cfg = tiny_cfg(**{"MODEL.FCOS.INFERENCE_TH_TEST": 0.0, "MODEL.FCOS.POST_NMS_TOPK_TEST": 2})
    model = build_model(cfg).eval()
    torch.nn.init.constant_(model.proposal_generator.fcos_head.bbox_pred.bias, 2.0)
    with torch.no_grad():
        out = model([{"image": torch.rand(3, 80, 120) * 255, "height": 4000, "width": 6000}])[0]["instances"]
    assert out.pred_masks.shape == (len(out), 4000, 6000)
    assert out.pred_boxes.tensor[:, 2].max() <= 6000


def test_bfloat16_autocast_keeps_losses_finite_on_the_fixture_batch():
    model = load_fixture_model("tiny_blendmask").train()
    inputs, expected = fixture_training_inputs("tiny_blendmask_adet_losses.json")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model([inputs])
    for key, value in losses.items():
        assert torch.isfinite(value), key
        # bfloat16 has ~3 significant digits; the losses stay close to the float32 reference
        assert value.item() == pytest.approx(expected[key], rel=0.1), key


def _short_training(seed, steps=3):
    torch.manual_seed(seed)
    model = build_model(tiny_cfg()).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    history = []
    for _ in range(steps):
        losses = model([training_input()])
        total = sum(losses.values())
        opt.zero_grad()
        total.backward()
        opt.step()
        history.append([v.item() for v in losses.values()])
    return history


def test_training_is_deterministic_on_cpu_with_a_fixed_seed():
    first, second = _short_training(7), _short_training(7)
    assert first == second
    assert first != _short_training(8)


def test_checkpointer_refuses_pickled_code_and_explains(tmp_path, monkeypatch):
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "note": _NotATensor()}, path)
    model = torch.nn.Linear(1, 1)
    with pytest.raises(UnsafeCheckpointError, match="BLENDMASK_ALLOW_PICKLE=1"):
        BlendMaskCheckpointer(model).load(str(path))
    monkeypatch.setenv("BLENDMASK_ALLOW_PICKLE", "1")
    BlendMaskCheckpointer(model).load(str(path))  # explicitly allowed: loads (key mismatch is only logged)


def test_checkpointer_reads_pkl_weights_without_running_code(tmp_path):
    path = tmp_path / "weights.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": {"weight": np.full((1, 1), 3.0, dtype=np.float32), "bias": np.zeros(1)},
                     "__author__": "test"}, f)
    model = torch.nn.Linear(1, 1)
    BlendMaskCheckpointer(model).load(str(path))
    assert model.weight.item() == 3.0
    evil = tmp_path / "evil.pkl"
    with open(evil, "wb") as f:
        pickle.dump({"model": {}, "x": _NotATensor()}, f)
    with pytest.raises(UnsafeCheckpointError, match="not allowed"):
        BlendMaskCheckpointer(model).load(str(evil))


def test_checkpoint_save_is_atomic(tmp_path, monkeypatch):
    model = torch.nn.Linear(2, 2)
    ckpt = BlendMaskCheckpointer(model, save_dir=str(tmp_path))
    ckpt.save("model_final", iteration=1)
    good = (tmp_path / "model_final.pth").read_bytes()

    def dying_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save("model_final", iteration=2)
    assert (tmp_path / "model_final.pth").read_bytes() == good
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    monkeypatch.undo()
    assert BlendMaskCheckpointer(model, save_dir=str(tmp_path)).resume_or_load("", resume=True)["iteration"] == 1
    assert not any(p.name.endswith(".pth") and p.name != "model_final.pth" for p in tmp_path.iterdir())
    assert os.path.exists(tmp_path / "model_final.pth.tmp")  # the torn write stays aside, never used


class _NotATensor:
    pass
