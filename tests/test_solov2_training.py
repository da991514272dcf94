"""SOLOv2 trains on the synthetic shapes (configs/Shapes/SOLOv2_R18.yaml) through train_net and the
package Trainer, and evaluates with boxes taken from its masks."""


import numpy as np
import torch
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.modeling import build_model
from solov2_tiny import TINY, TINY_OPTS

from blendmask import load_config
from blendmask.data import register_shapes, set_num_classes
from conftest import REPO_ROOT, import_script

train_net = import_script("train_net.py")

CONFIG = REPO_ROOT / "configs" / "Shapes" / "SOLOv2_R18.yaml"


def test_loss_decreases_on_a_fixed_batch(tmp_path):
    cfg = load_config(CONFIG, TINY_OPTS)
    set_num_classes(cfg, 5)
    names = register_shapes(tmp_path, TINY, prefix="solov2_fixed_batch_shapes")
    mapper = DatasetMapper(cfg, is_train=True)
    batch = [mapper(d) for d in DatasetCatalog.get(names["train"])[:2]]
    torch.manual_seed(0)
    model = build_model(cfg).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    history = []
    for _ in range(15):
        losses = model(batch)
        assert set(losses) == {"loss_ins", "loss_cate"}
        assert all(torch.isfinite(v) for v in losses.values()), losses
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        history.append(total.item())
    assert np.mean(history[-3:]) < 0.75 * history[0], history


def test_train_net_trains_and_evaluates_solov2(tmp_path):
    names = register_shapes(tmp_path, TINY, prefix="solov2_tt_shapes")
    opts = [*TINY_OPTS, "DATASETS.TRAIN", f"('{names['train']}',)", "DATASETS.TEST", f"('{names['val']}',)",
            "SOLVER.MAX_ITER", "2", "OUTPUT_DIR", str(tmp_path / "out")]
    train_net.main(train_net.argument_parser().parse_args(["--config-file", str(CONFIG), *opts]))
    weights = tmp_path / "out" / "model_final.pth"
    assert weights.exists()
    results = train_net.main(train_net.argument_parser().parse_args(
        ["--config-file", str(CONFIG), "--eval-only", *opts, "MODEL.WEIGHTS", str(weights)]))
    assert set(results) == {"bbox", "segm"}
    assert np.isfinite(results["bbox"]["AP"]) and np.isfinite(results["segm"]["AP"])  # boxes from the masks


def test_main_job_runs_solov2_beside_blendmask(tmp_path):
    main_job = import_script("tools/main_job.py")

    args = main_job.parse_args(["--models", "BlendMask", "SOLOv2", "--iters", "10"])
    cfgs = {main_job.MODEL_CONFIGS[key][0]: main_job.model_cfg(args, tmp_path, key) for key in args.models}
    assert {n: c.MODEL.META_ARCHITECTURE for n, c in cfgs.items()} == {"BlendMask": "BlendMask", "SOLOv2": "SOLOv2"}
    assert cfgs["SOLOv2"].OUTPUT_DIR == str(tmp_path / "solov2")
    assert cfgs["SOLOv2"].SOLVER.MAX_ITER == 10 and cfgs["SOLOv2"].MODEL.SOLOV2.NUM_CLASSES == 5
