"""train_net.py end to end on tiny data: training, checkpoints, --eval-only, --resume, custom data."""

import json
import math

import cv2
import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.modeling import build_model

from blendmask import add_blendmask_config
from blendmask.data import ShapesSpec, register_shapes, set_num_classes
from conftest import REPO_ROOT, fixed_batch_losses, import_script

train_net = import_script("train_net.py")

CONFIG = str(REPO_ROOT / "configs" / "Shapes" / "BlendMask_R18.yaml")
TINY = ShapesSpec(image_size=64, num_train=6, num_val=3, min_shape_size=12, max_shape_size=32)
# a narrow model on 64-pixel inputs; a 0 score threshold so an untrained model still predicts
TINY_OPTS = [
    "MODEL.DEVICE", "cpu", "MODEL.FPN.OUT_CHANNELS", "32", "MODEL.BASIS_MODULE.CONVS_DIM", "32",
    "MODEL.FCOS.INFERENCE_TH_TEST", "0.0", "MODEL.FCOS.PRE_NMS_TOPK_TEST", "50", "TEST.DETECTIONS_PER_IMAGE", "20",
    "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64", "INPUT.MIN_SIZE_TEST", "64",
    "INPUT.MAX_SIZE_TEST", "64", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.BASE_LR", "0.01", "SOLVER.WARMUP_ITERS", "0",
    "SOLVER.STEPS", "()", "DATALOADER.NUM_WORKERS", "0", "SEED", "1",
]


def run_train_net(*flags, opts=()):
    args = train_net.argument_parser().parse_args(["--config-file", CONFIG, *flags, *TINY_OPTS, *opts])
    return train_net.main(args)


def read_metrics(output_dir):
    return [json.loads(line) for line in (output_dir / "metrics.json").read_text().splitlines()]


def test_loss_is_finite_and_decreases_on_a_fixed_batch(tmp_path):
    cfg = add_blendmask_config(get_cfg())
    cfg.merge_from_file(CONFIG)
    cfg.merge_from_list(TINY_OPTS)
    set_num_classes(cfg, 5)
    names = register_shapes(tmp_path, TINY, prefix="fixed_batch_shapes")
    dicts = DatasetCatalog.get(names["train"])
    mapper = DatasetMapper(cfg, is_train=True)
    batch = [mapper(d) for d in dicts[:2]]
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    history = fixed_batch_losses(model, batch, steps=20, lr=0.02, expected_losses={
        "loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr", "loss_mask", "loss_basis_sem"})
    assert np.mean(history[-3:]) < 0.7 * history[0], history


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """4 iterations of train_net on tiny shapes, checkpoint every 2; evaluated at the end."""
    root = tmp_path_factory.mktemp("tiny_shapes")
    names = register_shapes(root, TINY, prefix="tt_shapes")
    out = root / "out"
    run_train_net(opts=[
        "DATASETS.TRAIN", f"('{names['train']}',)", "DATASETS.TEST", f"('{names['val']}',)",
        "SOLVER.MAX_ITER", "4", "SOLVER.CHECKPOINT_PERIOD", "2", "OUTPUT_DIR", str(out),
    ])
    return names, out


def test_training_writes_checkpoints_metrics_and_events(trained):
    _, out = trained
    assert (out / "last_checkpoint").read_text().strip() == "model_final.pth"
    assert (out / "model_0000001.pth").exists()
    assert list(out.glob("events.out.tfevents.*")), "no TensorBoard events"
    # checkpoints hold plain tensors and numbers: torch's weights_only loading accepts them
    checkpoint = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)
    assert checkpoint["iteration"] == 3
    assert "top_layer.weight" in checkpoint["model"] and "trainer" in checkpoint  # scheduler etc.
    rows = read_metrics(out)
    train_rows = [r for r in rows if "total_loss" in r]
    assert train_rows and all(math.isfinite(r["total_loss"]) for r in train_rows)
    assert any("segm/AP" in r for r in rows), "no evaluation at the end of training"


def test_eval_only_reproduces_the_trained_model(trained, tmp_path):
    names, out = trained
    results = run_train_net("--eval-only", opts=[
        "DATASETS.TEST", f"('{names['val']}',)", "MODEL.WEIGHTS", str(out / "model_final.pth"),
        "OUTPUT_DIR", str(tmp_path),
    ])
    assert set(results) == {"bbox", "segm"}
    assert math.isfinite(results["segm"]["AP"]) and math.isfinite(results["bbox"]["AP"])
    # same weights, same images: the same detections as the evaluation that ended training
    name = "coco_instances_results.json"
    after_training = json.loads((out / "inference" / names["val"] / name).read_text())
    from_checkpoint = json.loads((tmp_path / "inference" / names["val"] / name).read_text())
    assert len(from_checkpoint) == len(after_training) > 0
    for a, b in zip(after_training, from_checkpoint):
        assert a["category_id"] == b["category_id"] and a["segmentation"] == b["segmentation"]
        assert a["score"] == pytest.approx(b["score"], abs=1e-5)
        assert a["bbox"] == pytest.approx(b["bbox"], abs=1e-3)


def test_resume_continues_from_the_last_checkpoint(trained):
    names, out = trained
    run_train_net("--resume", opts=[
        "DATASETS.TRAIN", f"('{names['train']}',)", "DATASETS.TEST", "()",
        "SOLVER.MAX_ITER", "6", "SOLVER.CHECKPOINT_PERIOD", "100", "OUTPUT_DIR", str(out),
    ])
    iterations = [r["iteration"] for r in read_metrics(out) if "total_loss" in r]
    assert iterations == [3, 5], iterations  # iterations 0-3 were not run again
    assert torch.load(out / "model_final.pth", weights_only=True)["iteration"] == 5


def _write_custom_coco(root, split, num_images):
    """A tiny COCO dataset of discs and bars, with non-contiguous category ids 3 and 7."""
    rng = np.random.default_rng(len(split))
    (root / split).mkdir(parents=True)
    images, annotations = [], []
    for i in range(num_images):
        image = np.full((64, 64, 3), 90, np.uint8)
        for k in range(2):
            mask = np.zeros((64, 64), np.uint8)
            x, y = int(rng.integers(14, 50)), 16 + 32 * k
            if k == 0:
                cv2.circle(mask, (x, y), int(rng.integers(7, 12)), 1, -1)
            else:
                cv2.rectangle(mask, (x - 12, y - 4), (x + 12, y + 4), 1, -1)
            image[mask > 0] = (40, 200, 230) if k == 0 else (220, 60, 60)
            contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            x0, y0, w, h = cv2.boundingRect(contours[0])
            annotations.append({
                "id": len(annotations) + 1, "image_id": i + 1, "category_id": 3 if k == 0 else 7,
                "segmentation": [contours[0].reshape(-1).astype(float).tolist()],
                "bbox": [x0, y0, w, h], "area": float(mask.sum()), "iscrowd": 0,
            })
        cv2.imwrite(str(root / split / f"{i}.png"), image)
        images.append({"id": i + 1, "file_name": f"{i}.png", "height": 64, "width": 64})
    categories = [{"id": 3, "name": "disc"}, {"id": 7, "name": "bar"}]
    path = root / f"{split}.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def test_custom_coco_data_trains_with_the_basis_loss_and_evaluates(tmp_path):
    for split, n in (("train", 4), ("val", 2)):
        json_file = _write_custom_coco(tmp_path, split, n)
        register_coco_instances(f"custom_{split}", {}, str(json_file), str(tmp_path / split))
    out = tmp_path / "out"
    opts = ["DATASETS.TRAIN", "('custom_train',)", "DATASETS.TEST", "('custom_val',)", "OUTPUT_DIR", str(out)]
    run_train_net(opts=[*opts, "SOLVER.MAX_ITER", "3"])
    assert MetadataCatalog.get("custom_train").thing_classes == ["disc", "bar"]
    cfg = yaml_cfg(out / "config.yaml")
    assert cfg.MODEL.FCOS.NUM_CLASSES == 2 and cfg.MODEL.BASIS_MODULE.NUM_CLASSES == 2
    assert cfg.MODEL.BASIS_MODULE.LOSS_ON
    rows = read_metrics(out)
    assert any(math.isfinite(r.get("loss_basis_sem", float("nan"))) for r in rows)
    checkpoint = torch.load(out / "model_final.pth", weights_only=True)["model"]
    assert checkpoint["proposal_generator.fcos_head.cls_logits.weight"].shape[0] == 2
    assert checkpoint["basis_module.seg_head.6.weight"].shape[0] == 3  # 2 classes + background
    results = run_train_net("--eval-only", opts=[*opts, "MODEL.WEIGHTS", str(out / "model_final.pth")])
    assert set(results) == {"bbox", "segm"} and "AP-disc" in results["segm"] and "AP-bar" in results["segm"]
    predictions = json.loads((out / "inference" / "custom_val" / "coco_instances_results.json").read_text())
    assert predictions and {p["category_id"] for p in predictions} <= {3, 7}  # the json's own ids


def yaml_cfg(path):
    from blendmask import get_cfg as blendmask_get_cfg

    cfg = blendmask_get_cfg()  # every key a dumped config may hold
    cfg.merge_from_file(str(path))
    return cfg


def test_coco_dataset_flag_registers_data_and_sets_the_classes(tmp_path):
    json_file = _write_custom_coco(tmp_path, "train", 1)
    args = train_net.argument_parser().parse_args([
        "--config-file", CONFIG, "--coco-dataset", "flag_train", str(json_file), str(tmp_path / "train"),
        "DATASETS.TRAIN", "('flag_train',)", "DATASETS.TEST", "()", "OUTPUT_DIR", str(tmp_path / "out"),
    ])
    cfg = train_net.setup(args)
    assert MetadataCatalog.get("flag_train").thing_classes == ["disc", "bar"]
    assert cfg.MODEL.FCOS.NUM_CLASSES == cfg.MODEL.BASIS_MODULE.NUM_CLASSES == cfg.MODEL.ROI_HEADS.NUM_CLASSES == 2
