"""Every model on every path a user takes: one matrix of models (tests/matrix_models.py) x paths.

Paths: training through ``train_net.py --coco-dataset`` on polygon, RLE and mixed masks, then
``--resume``; ``--eval-only`` with COCOEvaluator; ``demo/demo.py`` with the class names saved in
the weights; ``tools/export_model.py --verify`` (ONNX, TorchScript); two processes; detectron2's
own ``DefaultTrainer``/``DefaultPredictor``/``COCOEvaluator`` with ``INPUT.MASK_FORMAT bitmask``;
and the reference implementations' own yaml files through detectron2's ``build_model``.
A cell that cannot apply is a skipped cell whose id says why.

The scripts run in this process (their ``main``), each model trains once on the mixed data (the
module fixture ``trained``), and two processes train every model in one launch: the whole matrix
stays within a few minutes.
"""

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog, build_detection_test_loader
from detectron2.data.datasets import register_coco_instances
from detectron2.engine import DefaultPredictor, DefaultTrainer
from detectron2.evaluation import COCOEvaluator, inference_on_dataset
from matrix_models import (
    BLENDMASK,
    CENTERMASK,
    CLASSES,
    COMMON,
    MASK_KINDS,
    MODELS,
    PANOPTIC_SHAPES,
    REPO_ROOT,
    SOLOV2,
    write_coco_dataset,
)

import blendmask
from blendmask.data import set_num_classes
from blendmask.data.shapes_panoptic import register_shapes_panoptic
from conftest import import_script

SHARED_REFERENCE = REPO_ROOT.parent / "shared" / "reference"


train_net = import_script("train_net.py")
demo = import_script("demo/demo.py")
export_model = import_script("tools/export_model.py")


def _cells(path: str, applies=lambda m: None):
    """One pytest param per model; ``applies(model)`` returns why the path does not apply, or None."""
    params = []
    for key, model in MODELS.items():
        why = applies(model)
        if why:
            params.append(pytest.param(key, id=f"{key}-NA:{why.replace(' ', '_')}", marks=pytest.mark.skip(why)))
        else:
            params.append(pytest.param(key, id=key))
    return params


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The three COCO-format datasets (polygon, rle, mixed masks; registered by train_net's
    --coco-dataset or here) and the tiny panoptic shapes (registered here)."""
    root = tmp_path_factory.mktemp("matrix_data")
    files = {kind: write_coco_dataset(root / kind, kind) for kind in MASK_KINDS}
    for kind, (json_file, images) in files.items():
        if f"matrix_{kind}" not in DatasetCatalog.list():
            register_coco_instances(f"matrix_{kind}", {}, str(json_file), str(images))
    panoptic = register_shapes_panoptic(root / "panoptic", PANOPTIC_SHAPES, prefix="matrix_shapes")
    return {"coco": files, "panoptic": panoptic, "root": root}


def _dataset_args(model, data, kind="mixed"):
    """train_net.py arguments: --coco-dataset and DATASETS overrides for ``model`` on ``kind`` masks."""
    if model.no_coco_data:
        names = data["panoptic"]
        return ["DATASETS.TRAIN", f"('{names['train']}',)", "DATASETS.TEST", f"('{names['val']}',)"]
    json_file, images = data["coco"][kind]
    name = f"matrix_{kind}"
    return ["--coco-dataset", name, str(json_file), str(images),
            "DATASETS.TRAIN", f"('{name}',)", "DATASETS.TEST", f"('{name}',)"]


def _train(model, data, out: Path, kind="mixed", extra=()):
    # DATASETS.TEST (): no evaluation after training (test_eval_only_with_coco_evaluator evaluates)
    args = train_net.parse_args(["--config-file", str(model.config), *_dataset_args(model, data, kind),
                                 *model.all_opts, "DATASETS.TEST", "()", "OUTPUT_DIR", str(out), *extra])
    return train_net.main(args)


def _metric_rows(out: Path):
    return [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()
            if "total_loss" in line]


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """``trained(key)``: the output folder of model ``key`` trained 2 iterations on the mixed data
    (the panoptic shapes for panoptic), trained once per module."""
    cache = {}
    root = tmp_path_factory.mktemp("matrix_runs")

    def get(key):
        if key not in cache:
            out = root / key
            _train(MODELS[key], data, out)
            cache[key] = out
        return cache[key]

    return get


def _check_training_run(out: Path, iterations: int, expect_classes=True):
    checkpoint = torch.load(out / "model_final.pth", weights_only=True)
    rows = _metric_rows(out)
    assert [r["iteration"] for r in rows][-1] == iterations - 1
    losses = [v for r in rows for k, v in r.items() if k.startswith("loss")]
    assert losses and all(np.isfinite(losses)), rows
    if expect_classes:
        assert checkpoint["thing_classes"] == list(CLASSES)
    return checkpoint


def _kind_cells():
    params = []
    for key, model in MODELS.items():
        for kind in MASK_KINDS:
            if model.no_coco_data:
                why = model.no_coco_data.split(":")[0]
                params.append(pytest.param(key, kind, id=f"{key}-{kind}-NA:{why.replace(' ', '_')}",
                                           marks=pytest.mark.skip(model.no_coco_data)))
            else:
                params.append(pytest.param(key, kind, id=f"{key}-{kind}"))
    return params


@pytest.mark.parametrize("key,kind", _kind_cells())
def test_train_on_own_coco_data(key, kind, data, trained, tmp_path):
    """train_net.py --coco-dataset on polygon, RLE or mixed masks: finite losses, a checkpoint with
    the data's class names and a class count taken from the data (3, not the config's 5)."""
    out = trained(key) if kind == "mixed" else tmp_path / "out"
    if kind != "mixed":
        _train(MODELS[key], data, out, kind)
    _check_training_run(out, iterations=2)
    cfg = blendmask.load_config(out / "config.yaml")
    assert blendmask.build_model_and_load(cfg, str(out / "model_final.pth")).num_classes == len(CLASSES)


@pytest.mark.parametrize("key", _cells("resume"))
def test_resume_continues_where_training_stopped(key, data, trained, tmp_path):
    """--resume from the 2-iteration run with MAX_ITER 3 runs only iteration 3, from the saved
    optimizer state (momentum buffers present)."""
    out = tmp_path / "resumed"
    shutil.copytree(trained(key), out)
    before = len(_metric_rows(out))
    _train(MODELS[key], data, out, extra=["--resume", "SOLVER.MAX_ITER", "3"])
    rows = _metric_rows(out)
    assert [r["iteration"] for r in rows[before:]] == [2]
    checkpoint = _check_training_run(out, iterations=3, expect_classes=not MODELS[key].no_coco_data)
    optimizer = checkpoint["trainer"]["_trainer"]["optimizer"]
    assert optimizer["state"], "the optimizer state (momentum buffers) is saved"
    assert checkpoint["iteration"] == 2


@pytest.mark.parametrize("key", _cells("eval"))
def test_eval_only_with_coco_evaluator(key, data, trained):
    model = MODELS[key]
    out = trained(key)
    args = train_net.parse_args(["--config-file", str(out / "config.yaml"), *_dataset_args(model, data),
                                 "MODEL.WEIGHTS", str(out / "model_final.pth"), "--eval-only"])
    results = train_net.main(args)
    tasks = {"bbox"} | ({"segm"} if key != "fcos" else set()) | ({"panoptic_seg"} if key == "panoptic" else set())
    assert tasks <= set(results), results.keys()
    for task in tasks:
        values = [v for v in results[task].values() if isinstance(v, float)]
        assert values and all(np.isnan(v) or -1 <= v <= 100 for v in values), (task, results[task])
    if "segm" in tasks:
        folder = out / "inference"
        segm = json.loads(next(folder.rglob("coco_instances_results_segm.json")).read_text()) \
            if any(folder.rglob("coco_instances_results_segm.json")) else None
        bbox = json.loads(next(folder.rglob("coco_instances_results.json")).read_text())
        if segm is not None:
            # CenterMask's segm results are ranked by mask_scores (scores * maskiou), the others by scores
            differs = any(abs(s["score"] - b["score"]) > 1e-6 for s, b in zip(segm, bbox))
            assert differs == key.startswith("centermask"), key


@pytest.mark.parametrize("key", _cells("demo"))
def test_demo_draws_with_the_class_names_from_the_weights(key, data, trained, tmp_path):
    from blendmask.utils.visualize import DrawingPredictor as Predictor

    out = trained(key)
    image = next((data["root"] / "mixed" / "images").glob("*.png"))
    drawn = tmp_path / "drawn.png"
    code = demo.main(["--config-file", str(out / "config.yaml"), "--input", str(image), "--output", str(drawn),
                      "--confidence-threshold", "0.0", "--opts", "MODEL.WEIGHTS", str(out / "model_final.pth")])
    assert code == 0 and cv2.imread(str(drawn)) is not None
    # no dataset named: the class names can only come from the weights
    cfg = blendmask.load_config(out / "config.yaml", ["MODEL.WEIGHTS", str(out / "model_final.pth"),
                                                       "DATASETS.TRAIN", "()", "DATASETS.TEST", "()"])
    expected = list(CLASSES) if not MODELS[key].no_coco_data else \
        list(MetadataCatalog.get(data["panoptic"]["train"]).thing_classes)
    assert list(Predictor(cfg).metadata.thing_classes) == expected


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("key", _cells("export"))
def test_export_verifies_against_eager(key, fmt, data, trained, tmp_path):
    out = trained(key)
    image = next((data["root"] / "mixed" / "images").glob("*.png"))
    code = export_model.main(["--config-file", str(out / "config.yaml"), "--weights", str(out / "model_final.pth"),
                              "--output", str(tmp_path / "export"), "--format", fmt, "--sample-image", str(image),
                              "--verify", "--threads", "2"])
    assert code == 0
    assert (tmp_path / "export" / ("model.onnx" if fmt == "onnx" else "model.ts")).exists()


def _box_free(model):
    return "box-free_masks:_no_boxes_to_replace" if model.key in ("solov2", "aggmask") else (
        "no_mask_branch" if model.key == "fcos" else None)


@pytest.mark.parametrize("key", _cells("diagnose", _box_free))
def test_diagnose_oracles_run(key, data, trained):
    """tools/diagnose_blendmask.py replaces boxes and classes before the mask branch: every model
    with box masks runs the two oracles that feed it ground-truth boxes (the other two edit
    classes or evaluate as trained only)."""
    diagnose = import_script("tools/diagnose_blendmask.py")
    out = trained(key)
    dataset = data["panoptic"]["val"] if MODELS[key].no_coco_data else "matrix_mixed"
    code = diagnose.main(["--config-file", str(out / "config.yaml"), "--weights", str(out / "model_final.pth"),
                          "--dataset", dataset, "--threads", "2", "--modes", "GT boxes + classes", "one per object"])
    assert code == 0


@pytest.mark.parametrize("key", ["solov2", "fcos"])
def test_diagnose_refuses_models_without_box_masks(key, trained, capsys):
    diagnose = import_script("tools/diagnose_blendmask.py")
    out = trained(key)
    code = diagnose.main(["--config-file", str(out / "config.yaml"), "--weights", str(out / "model_final.pth"),
                          "--dataset", "matrix_mixed"])
    assert code == 2 and "masks inside detected boxes" in capsys.readouterr().err


@pytest.fixture(scope="module")
def two_process_runs(data, tmp_path_factory):
    """Every model trained 2 iterations by two processes (one launch for all models)."""
    from matrix_models import train_models_in_processes

    from blendmask.engine.launch import launch

    root = tmp_path_factory.mktemp("matrix_ddp")
    launch(train_models_in_processes, 2, args=(list(MODELS), str(root), {k: [str(p) for p in v] for k, v in
                                                                          data["coco"].items()},
                                               str(data["root"] / "panoptic")))
    return root


@pytest.mark.parametrize("key", _cells("two_processes"))
def test_two_processes_train_one_model(key, two_process_runs):
    """Both processes ran both iterations and hold the same weights afterwards (DDP synchronises
    the gradients; an unsynchronised model drifts apart at the first update)."""
    out = two_process_runs / key
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0]["world_size"] == ranks[1]["world_size"] == 2
    assert ranks[0]["state"].keys() == ranks[1]["state"].keys()
    for name, value in ranks[0]["state"].items():
        if value.is_floating_point() and "running_" not in name:  # BN statistics are per process
            torch.testing.assert_close(ranks[1]["state"][name], value, rtol=0, atol=1e-6, msg=name)
    assert (out / "model_final.pth").exists()


@pytest.mark.parametrize("key", _cells("detectron2"))
def test_detectron2_default_trainer_predictor_and_evaluator(key, data, tmp_path):
    """detectron2's tutorial, word for word but for our get_cfg(): DefaultTrainer trains on
    bitmask ground truth, DefaultPredictor predicts, COCOEvaluator + build_detection_test_loader
    + inference_on_dataset evaluate."""
    model = MODELS[key]
    cfg = blendmask.get_cfg()
    cfg.merge_from_file(str(model.config))
    cfg.merge_from_list(model.all_opts)
    cfg.INPUT.MASK_FORMAT = "bitmask"
    if model.no_coco_data:
        train, test = data["panoptic"]["train"], data["panoptic"]["val"]
    else:
        train = test = "matrix_rle"
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = (train,), (test,)
    set_num_classes(cfg)
    cfg.OUTPUT_DIR = str(tmp_path / "out")
    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    assert (tmp_path / "out" / "model_final.pth").exists()

    cfg.MODEL.WEIGHTS = str(tmp_path / "out" / "model_final.pth")
    predictor = DefaultPredictor(cfg)
    record = DatasetCatalog.get(test)[0]
    instances = predictor(cv2.imread(record["file_name"]))["instances"]
    assert instances.image_size == (record["height"], record["width"])
    if key != "fcos":
        assert instances.has("pred_masks") and instances.pred_masks.shape[1:] == instances.image_size

    evaluator = COCOEvaluator(test, output_dir=str(tmp_path / "eval"))
    results = inference_on_dataset(predictor.model, build_detection_test_loader(cfg, test), evaluator)
    assert "bbox" in results and (key == "fcos" or "segm" in results), results.keys()


PHOTO_CONFIGS = sorted((REPO_ROOT / "configs" / "Custom").glob("*_photos.yaml"))
R18 = ["MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64"]
NARROW = {  # the family's narrow layers, so a CPU test trains each in seconds
    "BlendMask": BLENDMASK + R18, "CenterMask": CENTERMASK + ["MODEL.VOVNET.CONV_BODY", "V-19-slim-dw-eSE"],
    "SOLOv2": SOLOV2 + R18,
}


@pytest.mark.parametrize("config", PHOTO_CONFIGS, ids=[p.stem for p in PHOTO_CONFIGS])
def test_photo_starting_configs_train_on_own_data(config, data, tmp_path):
    """Each configs/Custom starting config, with the own-data guide's command (its datasets are
    my_train/my_val), trains on polygon + RLE data; tiny inputs, narrow layers and no downloaded
    weights here."""
    text = config.read_text()
    assert text.startswith("# Fine-tune") and "docs/own-data.md" in text  # a header says what it is for
    json_file, images = data["coco"]["mixed"]
    out = tmp_path / "out"
    args = train_net.parse_args([
        "--config-file", str(config), "--coco-dataset", "my_train", str(json_file), str(images),
        "--coco-dataset", "my_val", str(json_file), str(images), "MODEL.WEIGHTS", "", "DATASETS.TEST", "()",
        *COMMON, *NARROW[config.stem.split("_")[0]], "OUTPUT_DIR", str(out)])
    train_net.main(args)
    _check_training_run(out, iterations=2)
    assert blendmask.load_config(out / "config.yaml").DATASETS.TRAIN == ("my_train",)


# --- the reference implementations' own yaml files through detectron2's build_model ------------

UNSUPPORTED = {  # what a file needs that this package does not implement
    "DLA": "DLA_backbone_not_implemented",
    "_iou": "FCOS_BOX_QUALITY_iou_not_implemented",
}
ADELAIDET_TSV = {
    "BlendMask/R_50_1x.yaml": "blendmask_R50_state_dict.tsv",
    "BlendMask/550_R_50_3x.yaml": "blendmask_550_R50_state_dict.tsv",
    "BlendMask/RT_R_50_4x_bn-head_syncbn_shtw.yaml": "blendmask_RT_R50_bnhead_syncbn_state_dict.tsv",
    "BlendMask/Panoptic/R_50_1x.yaml": "blendmask_panoptic_R50_state_dict.tsv",
    "FCOS-Detection/R_50_1x.yaml": "fcos_R50_state_dict.tsv",
}


def _reference_yaml_cells():
    files = sorted(SHARED_REFERENCE.glob("*/configs/**/*.yaml"))
    if not files:
        return [pytest.param(None, id="NA:no_../shared/reference", marks=pytest.mark.skip(
            f"{SHARED_REFERENCE} is absent (needs ../shared beside the repo)"))]
    params = []
    for path in files:
        rel = path.relative_to(SHARED_REFERENCE)
        why = next((reason for marker, reason in UNSUPPORTED.items() if marker in path.name), None)
        name = str(rel).replace("/configs/", ":")
        params.append(pytest.param(path, id=f"{name}-NA:{why}" if why else name,
                                   marks=[pytest.mark.skip(why)] if why else []))
    return params


def _reference_tsv(path: Path):
    parts = path.relative_to(SHARED_REFERENCE).parts
    if parts[0] == "centermask2":
        tsv = SHARED_REFERENCE / "centermask2" / f"{path.stem}_state_dict.tsv"
    elif parts[0] == "solov2":
        tsv = SHARED_REFERENCE / "solov2" / f"solov2_{path.stem}_state_dict.tsv"
    else:
        tsv = SHARED_REFERENCE / "adelaidet" / ADELAIDET_TSV.get("/".join(parts[2:]), "-")
    return tsv if tsv.is_file() else None


# one file per reference and meta-architecture also runs on an image (building the others' weights
# for real would cost ~1 s each)
RUN_ON_AN_IMAGE = {"BlendMask/R_50_1x.yaml", "BlendMask/Panoptic/R_50_1x.yaml", "FCOS-Detection/R_50_1x.yaml",
                   "centermask/centermask_lite_V_19_eSE_FPN_ms_4x.yaml", "centermask/centermask_R_50_FPN_ms_3x.yaml",
                   "centermask/panoptic_centermask_R_50_FPN_ms_3x.yaml", "SOLOv2/R50_3x.yaml"}


@pytest.mark.parametrize("path", _reference_yaml_cells())
def test_reference_yaml_builds_with_detectron2_build_model(path):
    """A reference user's script, unchanged: detectron2's get_cfg, our add_*_config, their yaml file,
    detectron2's build_model. Where the authors' state-dict key list exists, the keys and shapes
    are theirs; one file per reference and meta-architecture then runs on an image."""
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    from blendmask import add_aggmask_config, add_blendmask_config, add_centermask_config
    from blendmask.config import add_solov2_config

    cfg = add_aggmask_config(add_solov2_config(add_centermask_config(add_blendmask_config(get_cfg()))))
    cfg.merge_from_file(str(path))
    run = "/".join(path.parts[-2:]) in RUN_ON_AN_IMAGE or "/".join(path.parts[-3:]) in RUN_ON_AN_IMAGE
    cfg.MODEL.DEVICE = "cpu" if run else "meta"
    with torch.device(cfg.MODEL.DEVICE):  # meta: names and shapes without memory or init cost
        model = build_model(cfg).eval()
    tsv = _reference_tsv(path)
    if tsv is not None:
        with open(tsv) as f:
            expected = {r["key"]: tuple(int(x) for x in r["shape"].strip("[]").split(",") if x.strip())
                        for r in csv.DictReader(f, delimiter="\t")}
        ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        assert sorted(set(expected) ^ set(ours)) == []
        assert {k: v for k, v in ours.items() if expected[k] != v} == {}
    if run:
        with torch.no_grad():
            out = model([{"image": torch.rand(3, 64, 96) * 255, "height": 64, "width": 96}])[0]
        assert "instances" in out or "sem_seg" in out
