"""The README's "Training on your own data" commands, end to end, on a tiny generated COCO dataset
whose masks are RLE (as most annotation tools export them) and polygons, with named classes:
train a few iterations, --eval-only (flag after the overrides), demo and export from the run's
own output folder; and the traps: weights that do not fit the config, class names in pictures."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_util

from conftest import REPO_ROOT

CLASSES = ["apple", "brick", "cup"]
BASE = str(REPO_ROOT / "configs" / "Shapes" / "BlendMask_R18.yaml")
TINY = ["SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "2", "SOLVER.WARMUP_ITERS", "1", "SOLVER.STEPS", "()",
        "SOLVER.CHECKPOINT_PERIOD", "1000", "INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MAX_SIZE_TRAIN", "96",
        "INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "96", "DATALOADER.NUM_WORKERS", "0",
        "MODEL.RESNETS.RES2_OUT_CHANNELS", "64"]


def _write_dataset(root):
    """4 images 96 x 128 with 2-3 objects each; objects alternate RLE and polygon masks."""
    rng = np.random.default_rng(0)
    images, annotations = [], []
    (root / "images").mkdir(parents=True)
    for i in range(4):
        pixels = rng.integers(0, 60, (96, 128, 3), dtype=np.uint8)
        for j in range(2 + i % 2):
            x0, y0 = int(rng.integers(0, 80)), int(rng.integers(0, 50))
            w, h = int(rng.integers(20, 45)), int(rng.integers(20, 45))
            x1, y1 = min(x0 + w, 128), min(y0 + h, 96)
            cls = (i + j) % 3
            mask = np.zeros((96, 128), dtype=np.uint8)
            mask[y0:y1, x0:x1] = 1
            pixels[mask.astype(bool)] = (200, 80 * cls, 255 - 80 * cls)
            if j % 2 == 0:
                rle = mask_util.encode(np.asfortranarray(mask))
                segmentation = {"size": rle["size"], "counts": rle["counts"].decode()}
            else:
                segmentation = [[x0, y0, x1, y0, x1, y1, x0, y1]]
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": cls + 1, "iscrowd": 0,
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": int(mask.sum()),
                                "segmentation": segmentation})
        Image.fromarray(pixels).save(root / "images" / f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.png", "height": 96, "width": 128})
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(CLASSES)]
    (root / "train.json").write_text(json.dumps({"images": images, "annotations": annotations,
                                                 "categories": categories}))
    return root / "train.json", root / "images"


def _run(*args, cwd):
    env = dict(os.environ)
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=600)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(work dir, output dir, dataset args) after the README's training command."""
    work = tmp_path_factory.mktemp("own_data")
    json_file, images = _write_dataset(work / "data")
    data = ["--coco-dataset", "my_train", json_file, images, "--coco-dataset", "my_val", json_file, images]
    out = work / "output" / "mine"
    proc = _run(REPO_ROOT / "train_net.py", "--config-file", BASE, *data,
                "DATASETS.TRAIN", '("my_train",)', "DATASETS.TEST", '("my_val",)', "OUTPUT_DIR", out, *TINY,
                cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work, out, data, proc.stdout + proc.stderr


def test_rle_masks_train_without_a_flag_and_the_changes_are_logged(trained):
    _, out, _, log = trained
    assert (out / "model_final.pth").exists() and (out / "config.yaml").exists()
    assert "has RLE masks" in log and "read as bitmasks" in log
    assert "MODEL.FCOS.NUM_CLASSES: 5 -> 3" in log  # the class count set from the data, said once
    # start-up noise: no deprecation warnings, the config is not printed (it is saved, and log.txt has it)
    assert "is deprecated" not in log and "No CUDA runtime" not in log
    assert "Running with full config" not in log and "Full config saved to" in log
    assert "Running with full config" in (out / "log.txt").read_text()


def test_checkpoints_carry_the_class_names_and_the_config(trained):
    _, out, _, _ = trained
    checkpoint = torch.load(out / "model_final.pth", weights_only=True)
    assert checkpoint["thing_classes"] == CLASSES
    assert "NUM_CLASSES: 3" in checkpoint["config"]


def test_eval_only_with_the_flag_after_the_overrides(trained):
    work, out, data, _ = trained
    proc = _run(REPO_ROOT / "train_net.py", "--config-file", out / "config.yaml", *data,
                "MODEL.WEIGHTS", out / "model_final.pth", "--eval-only", cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert "copypaste: AP,AP50" in log and "No CUDA runtime" not in log


def test_demo_from_the_output_folder_draws_the_class_names(trained):
    work, out, _, _ = trained
    image = work / "data" / "images" / "0.png"
    proc = _run(REPO_ROOT / "demo" / "demo.py", "--config-file", out / "config.yaml", "--input", image,
                "--output", work / "drawn.png", "--confidence-threshold", "0.0",
                "--opts", "MODEL.WEIGHTS", out / "model_final.pth", cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (work / "drawn.png").stat().st_size > 0
    assert "Warning" not in proc.stderr and "No CUDA runtime" not in proc.stderr, proc.stderr

    from blendmask import load_config
    from blendmask.utils.visualize import Predictor

    cfg = load_config(out / "config.yaml", ["MODEL.WEIGHTS", str(out / "model_final.pth")])
    assert Predictor(cfg).metadata.thing_classes == CLASSES  # not registered here: read from the weights


def test_weights_that_do_not_fit_the_config_are_an_error_naming_both_class_counts(trained):
    work, out, _, _ = trained
    proc = _run(REPO_ROOT / "demo" / "demo.py", "--config-file", BASE, "--input", work / "data" / "images" / "0.png",
                "--output", work / "wrong.png", "--opts", "MODEL.WEIGHTS", out / "model_final.pth", cwd=work)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "The checkpoint predicts 3 classes, the config 5." in proc.stderr
    assert "config.yaml" in proc.stderr and "Traceback" not in proc.stderr


def test_fine_tuning_from_weights_with_other_classes_reinitialises_the_head_and_says_so(trained, caplog):
    from blendmask import build_model_and_load, load_config

    _, out, _, _ = trained
    cfg = load_config(BASE, ["MODEL.DEVICE", "cpu"])  # 5 classes
    with caplog.at_level("WARNING"):
        model = build_model_and_load(cfg, str(out / "model_final.pth"), eval_mode=False)
    assert model.proposal_generator.fcos_head.cls_logits.weight.shape[0] == 5
    assert "keep their fresh initialisation" in caplog.text and "3 classes in the checkpoint, 5 in the config" \
        in caplog.text


def test_evaluating_with_other_test_sizes_than_trained_warns(trained, caplog):
    from blendmask import build_model_and_load, load_config

    _, out, _, _ = trained
    cfg = load_config(out / "config.yaml", ["INPUT.MIN_SIZE_TEST", "200", "MODEL.DEVICE", "cpu"])
    with caplog.at_level("WARNING"):
        build_model_and_load(cfg, str(out / "model_final.pth"))
    assert "INPUT.MIN_SIZE_TEST 200 (trained with 96)" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        build_model_and_load(load_config(out / "config.yaml", ["MODEL.DEVICE", "cpu"]), str(out / "model_final.pth"))
    assert "trained with another config" not in caplog.text


def test_export_from_the_output_folder(trained):
    work, out, _, _ = trained
    proc = _run(REPO_ROOT / "tools" / "export_model.py", "--config-file", out / "config.yaml",
                "--weights", out / "model_final.pth", "--output", work / "export", "--format", "torchscript",
                "--sample-image", work / "data" / "images" / "1.png", "--verify", cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "verify: all match" in proc.stdout and (work / "export" / "model.ts").exists()
