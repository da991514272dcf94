"""AggMask*'s shapes config (configs/Shapes/AggMask_R18.yaml: SOLOv2_R18's model, data and schedule
plus the aggregation), its losses on a fixed batch, clear errors on bad input, and its diagnosis
tool. Training through train_net.py, evaluation, the demo and export: the models x paths matrix
(tests/test_matrix.py)."""

import numpy as np
import torch
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.modeling import build_model
from solov2_tiny import TINY, TINY_OPTS

from blendmask import load_config
from blendmask.data import register_shapes, set_num_classes
from conftest import REPO_ROOT, fixed_batch_losses, import_script

CONFIG = REPO_ROOT / "configs" / "Shapes" / "AggMask_R18.yaml"


def test_shapes_config_is_solov2_r18_plus_the_aggregation():
    ours = load_config(CONFIG)
    solo = load_config(REPO_ROOT / "configs" / "Shapes" / "SOLOv2_R18.yaml")
    assert ours.MODEL.META_ARCHITECTURE == "AggMask" and solo.MODEL.META_ARCHITECTURE == "SOLOv2"
    for key in ("MODEL.SOLOV2", "MODEL.RESNETS", "MODEL.FPN", "SOLVER", "INPUT", "DATASETS", "SEED"):
        node_a, node_b = ours, solo
        for part in key.split("."):
            node_a, node_b = node_a[part], node_b[part]
        assert node_a == node_b, key


def test_loss_decreases_on_a_fixed_batch(tmp_path):
    cfg = load_config(CONFIG, TINY_OPTS)
    assert set_num_classes(cfg, 5) == 5 and cfg.MODEL.SOLOV2.NUM_CLASSES == 5
    names = register_shapes(tmp_path, TINY, prefix="aggmask_fixed_batch_shapes")
    mapper = DatasetMapper(cfg, is_train=True)
    batch = [mapper(d) for d in DatasetCatalog.get(names["train"])[:2]]
    torch.manual_seed(0)
    model = build_model(cfg).train()
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    history = fixed_batch_losses(model, batch, steps=10, lr=0.01, expected_losses={"loss_ins", "loss_cate"})
    assert np.mean(history[-3:]) < 0.85 * history[0], history  # measured: 3.72 -> 2.81 (mean of the last 3)
    for prefix in ("weight_head.", "context_head.", "ins_head.kernel_pred.", "mask_head."):  # every part learns
        assert any(not torch.equal(before[k], v) for k, v in model.named_parameters() if k.startswith(prefix)), prefix


def test_bad_input_fails_clearly():
    import pytest

    cfg = load_config(CONFIG, [*TINY_OPTS, "MODEL.AGGMASK.NEIGHBOURS", "diagonal"])
    with pytest.raises(ValueError, match="NEIGHBOURS"):
        build_model(cfg)
    cfg = load_config(CONFIG, [*TINY_OPTS, "MODEL.AGGMASK.MASK_GRIDS", "[10, 8]"])
    with pytest.raises(ValueError, match="differ in length"):
        build_model(cfg)
    cfg = load_config(CONFIG, [*TINY_OPTS, "MODEL.AGGMASK.CONTEXT_IN_FEATURES", "['p3', 'p4', 'p5', 'p6']"])
    model = build_model(cfg).eval()
    with pytest.raises(ValueError, match="one size"), torch.no_grad():
        model([{"image": torch.zeros(3, 64, 64)}])
    model = build_model(load_config(CONFIG, TINY_OPTS)).train()
    with pytest.raises(ValueError, match="instances"):
        model([{"image": torch.zeros(3, 64, 64)}])


def test_diagnose_aggmask_reports_the_per_cell_networks(tmp_path, capsys):
    import pytest

    tool = import_script("tools/diagnose_aggmask.py")
    names = register_shapes(tmp_path, TINY, prefix="aggmask_diagnose_shapes")
    rows = tool.main(["--iters", "2", "--config", str(CONFIG), *TINY_OPTS, "DATASETS.TRAIN", f"('{names['train']}',)",
                      "DATASETS.TEST", "()"])
    out = capsys.readouterr().out
    assert len(rows) == out.count("loss_ins") >= 1
    assert all(len(r) == 2 and all(0.0 <= d <= 1.0 for d in r) for r in rows)  # two hidden layers
    with pytest.raises(SystemExit, match="not AggMask"):
        tool.main(["--config", str(REPO_ROOT / "configs" / "Shapes" / "SOLOv2_R18.yaml")])
