"""Python (LazyConfig) configs build the same models as their yaml twins, and train in detectron2's
lazy flow (blendmask-lazy-train)."""

import cv2
import numpy as np
import pytest
import torch
from detectron2.config import LazyConfig, instantiate
from detectron2.modeling import build_model

from blendmask import load_config
from blendmask.config.keys import UnknownConfigKeyError
from blendmask.lazy import config
from conftest import REPO_ROOT

LAZY = REPO_ROOT / "configs" / "Lazy"
PAIRS = [
    ("BlendMask_R_50_1x.py", "BlendMask/R_50_1x.yaml"),
    ("CenterMask_Lite_V_19_eSE_FPN_ms_4x.py", "CenterMask/centermask_lite_V_19_eSE_FPN_ms_4x.yaml"),
    ("SOLOv2_R50_3x.py", "SOLOv2/R50_3x.yaml"),
]


def _image():
    image = np.full((96, 128, 3), 100, np.uint8)
    cv2.circle(image, (40, 48), 22, (30, 200, 220), -1)
    cv2.rectangle(image, (70, 20), (120, 80), (200, 40, 60), -1)
    return {"image": torch.from_numpy(image).permute(2, 0, 1).float(), "height": 96, "width": 128}


@pytest.mark.parametrize("lazy,yaml", PAIRS, ids=[p[0] for p in PAIRS])
def test_lazy_config_builds_the_yaml_model(lazy, yaml):
    cfg = LazyConfig.load(str(LAZY / lazy))
    assert cfg.zoo.yaml_twin == yaml
    keys = instantiate(cfg.model.cfg)
    reference_cfg = load_config(REPO_ROOT / "configs" / yaml, ["MODEL.DEVICE", "cpu"])
    for section in ("INPUT", "DATASETS"):
        assert keys[section] == reference_cfg[section], section
    keys.MODEL.WEIGHTS, keys.MODEL.DEVICE = reference_cfg.MODEL.WEIGHTS, "cpu"  # train.init_checkpoint holds them
    assert keys.MODEL == reference_cfg.MODEL

    torch.manual_seed(0)
    reference = build_model(reference_cfg).eval()
    model = instantiate(cfg.model).eval()
    assert type(model) is type(reference)
    state = reference.state_dict()
    assert list(model.state_dict()) == list(state)
    for key in state:
        if key.endswith(("cls_logits.bias", "cate_pred.bias")):  # an untrained model that still predicts
            state[key] = torch.zeros_like(state[key])
        elif key.endswith("bbox_pred.bias"):  # boxes of some size
            state[key] = torch.full_like(state[key], 2.0)
    reference.load_state_dict(state)
    model.load_state_dict(state)
    with torch.no_grad():
        ours, theirs = model([_image()])[0]["instances"], reference([_image()])[0]["instances"]
    assert len(theirs) > 0 and len(ours) == len(theirs)
    for field in ("pred_boxes", "scores", "pred_classes", "pred_masks"):
        a, b = ours.get(field), theirs.get(field)
        a, b = (a.tensor, b.tensor) if hasattr(a, "tensor") else (a, b)
        assert torch.equal(a, b), field


def test_unknown_keys_are_named():
    with pytest.raises(UnknownConfigKeyError, match="NUM_CLASSES"):
        config(MODEL={"FCOS": {"NUM_CLASSE": 3}})
    assert config(MODEL={"FCOS": {"NUM_CLASSES": 3}}, INPUT={"MIN_SIZE_TRAIN": [64]}).INPUT.MIN_SIZE_TRAIN == (64,)


def test_lazy_training_flow_on_tiny_data(tmp_path):
    from test_train_net import _write_custom_coco

    from blendmask.cli import lazy_train

    json_file = _write_custom_coco(tmp_path, "train", 4)
    out = tmp_path / "out"
    small = {"MIN_SIZE_TRAIN": "[64]", "MAX_SIZE_TRAIN": "64"}
    args = lazy_train.argument_parser().parse_args([
        "--config-file", "configs/Lazy/BlendMask_R_50_1x.py",
        "--coco-dataset", "lazy_tiny", str(json_file), str(tmp_path / "train"),
        "model.cfg.MODEL.FCOS.NUM_CLASSES=2", "model.cfg.MODEL.BASIS_MODULE.NUM_CLASSES=2",
        "model.cfg.MODEL.RESNETS.DEPTH=18", "model.cfg.MODEL.RESNETS.RES2_OUT_CHANNELS=64",
        "model.cfg.MODEL.FPN.OUT_CHANNELS=32", "model.cfg.MODEL.BASIS_MODULE.CONVS_DIM=32",
        "dataloader.train.cfg.DATASETS.TRAIN=['lazy_tiny']", "dataloader.train.cfg.SOLVER.IMS_PER_BATCH=2",
        "dataloader.train.cfg.DATALOADER.NUM_WORKERS=0",
        *[f"dataloader.train.cfg.INPUT.{k}={v}" for k, v in small.items()],
        "train.max_iter=2", "train.init_checkpoint=", f"train.output_dir={out}", "train.device=cpu",
        "lr_multiplier.warmup_length=0.0",
    ])
    lazy_train.main(args)
    assert (out / "model_final.pth").is_file() and (out / "config.yaml").is_file()
    saved = torch.load(out / "model_final.pth", weights_only=True)["model"]
    assert saved["proposal_generator.fcos_head.cls_logits.weight"].shape[0] == 2
