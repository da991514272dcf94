"""SOLOv2's losses fall on a fixed batch of the synthetic shapes (configs/Shapes/SOLOv2_R18.yaml).
Training through train_net.py, evaluation and the other paths: the models x paths matrix
(tests/test_matrix.py)."""

import numpy as np
import torch
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.modeling import build_model
from solov2_tiny import TINY, TINY_OPTS

from blendmask import load_config
from blendmask.data import register_shapes, set_num_classes
from conftest import REPO_ROOT, fixed_batch_losses

CONFIG = REPO_ROOT / "configs" / "Shapes" / "SOLOv2_R18.yaml"


def test_loss_decreases_on_a_fixed_batch(tmp_path):
    cfg = load_config(CONFIG, TINY_OPTS)
    set_num_classes(cfg, 5)
    names = register_shapes(tmp_path, TINY, prefix="solov2_fixed_batch_shapes")
    mapper = DatasetMapper(cfg, is_train=True)
    batch = [mapper(d) for d in DatasetCatalog.get(names["train"])[:2]]
    torch.manual_seed(0)
    model = build_model(cfg).train()
    history = fixed_batch_losses(model, batch, steps=15, lr=0.01, expected_losses={"loss_ins", "loss_cate"})
    assert np.mean(history[-3:]) < 0.75 * history[0], history
