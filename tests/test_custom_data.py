"""The own-data guide's traps (docs/own-data.md) on BlendMask, in this process: RLE masks read as
bitmasks and the class count taken from the data (each said once), checkpoints that carry the class
names and the config, --eval-only after the overrides, weights that do not fit the config, fine-
tuning from other classes, evaluating at other sizes than trained. Assertions read log records by
logger, level and their structured fields, not console text.

Training, evaluation, the demo and export on polygon, RLE and mixed masks are the models x paths
matrix's (tests/test_matrix.py), for every model.
"""

import logging

import pytest
import torch
import yaml
from matrix_models import CLASSES, MODELS, write_coco_dataset

from blendmask import build_model_and_load, load_config
from blendmask.checkpoint import CheckpointMismatchError
from blendmask.data import SkipUnreadableMapper
from conftest import capture_records, import_script

train_net = import_script("train_net.py")
demo = import_script("demo/demo.py")
BLENDMASK = MODELS["blendmask"]
CONFIG_CLASSES = 5  # configs/Shapes/BlendMask_R18.yaml's


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(output dir, --coco-dataset args, log records of the training run) after the guide's
    command on the mixed (RLE + polygon) data, with a train and a val split."""
    work = tmp_path_factory.mktemp("own_data")
    json_file, images = write_coco_dataset(work / "data", "mixed")
    data = ["--coco-dataset", "my_train", str(json_file), str(images),
            "--coco-dataset", "my_val", str(json_file), str(images)]
    out = work / "output"
    SkipUnreadableMapper._told_rle = False  # said once per process: maybe already said by another test
    with capture_records() as records:
        train_net.main(train_net.parse_args([
            "--config-file", str(BLENDMASK.config), *data, "DATASETS.TRAIN", "('my_train',)", "DATASETS.TEST",
            "('my_val',)", *BLENDMASK.all_opts, "OUTPUT_DIR", str(out)]))
    return out, data, records


def test_rle_masks_and_the_class_count_are_each_logged_once(trained):
    _, _, records = trained
    rle = [r for r in records if r.name == "blendmask.data.mapper" and hasattr(r, "rle_image")]
    assert len(rle) == 1 and rle[0].levelno == logging.INFO
    counts = [(r.config_key, r.old, r.new) for r in records if r.name == "blendmask.data.classes"]
    assert ("MODEL.FCOS.NUM_CLASSES", CONFIG_CLASSES, len(CLASSES)) in counts
    assert len(counts) == len({key for key, _, _ in counts})  # one record per key
    assert not [r for r in records if r.levelno >= logging.WARNING], [r.getMessage() for r in records]


def test_checkpoints_carry_the_class_names_and_the_config(trained):
    out, _, _ = trained
    checkpoint = torch.load(out / "model_final.pth", weights_only=True)
    assert checkpoint["thing_classes"] == list(CLASSES)
    saved = yaml.safe_load(checkpoint["config"])
    assert saved["MODEL"]["FCOS"]["NUM_CLASSES"] == saved["MODEL"]["BASIS_MODULE"]["NUM_CLASSES"] == len(CLASSES)
    assert yaml.safe_load((out / "config.yaml").read_text()) == saved


def test_eval_only_with_the_flag_after_the_overrides(trained):
    out, data, _ = trained
    args = train_net.parse_args(["--config-file", str(out / "config.yaml"), *data,
                                 "MODEL.WEIGHTS", str(out / "model_final.pth"), "--eval-only"])
    assert args.eval_only and args.opts == ["MODEL.WEIGHTS", str(out / "model_final.pth")]
    results = train_net.main(args)
    assert {"bbox", "segm"} <= set(results)


def test_weights_that_do_not_fit_the_config_are_an_error_naming_both_class_counts(trained, capsys):
    out, _, _ = trained
    cfg = load_config(BLENDMASK.config, ["MODEL.DEVICE", "cpu"])  # 5 classes
    with pytest.raises(CheckpointMismatchError) as error:
        build_model_and_load(cfg, str(out / "model_final.pth"))
    assert error.value.class_counts == (len(CLASSES), CONFIG_CLASSES)
    assert "proposal_generator.fcos_head.cls_logits.weight" in error.value.mismatched
    assert "config.yaml" in str(error.value)  # says which config to use
    # the demo exits 2 with that error, not a traceback
    image = next((out.parent / "data" / "images").glob("*.png"))
    code = demo.main(["--config-file", str(BLENDMASK.config), "--input", str(image), "--output",
                      str(out.parent / "wrong.png"), "--opts", "MODEL.WEIGHTS", str(out / "model_final.pth")])
    assert code == 2 and str(error.value) in capsys.readouterr().err


def test_fine_tuning_from_weights_with_other_classes_reinitialises_the_head_and_says_so(trained):
    out, _, _ = trained
    cfg = load_config(BLENDMASK.config, ["MODEL.DEVICE", "cpu"])  # 5 classes
    with capture_records(level=logging.WARNING) as records:
        model = build_model_and_load(cfg, str(out / "model_final.pth"), eval_mode=False)
    assert model.proposal_generator.fcos_head.cls_logits.weight.shape[0] == CONFIG_CLASSES
    (record,) = [r for r in records if r.name == "blendmask.checkpoint"]
    assert record.class_counts == (len(CLASSES), CONFIG_CLASSES)
    assert "proposal_generator.fcos_head.cls_logits.weight" in record.reinitialised


def test_evaluating_with_other_test_sizes_than_trained_warns(trained):
    out, _, _ = trained
    trained_size = yaml.safe_load((out / "config.yaml").read_text())["INPUT"]["MIN_SIZE_TEST"]
    with capture_records(level=logging.WARNING) as records:
        build_model_and_load(load_config(out / "config.yaml", ["INPUT.MIN_SIZE_TEST", "200"]),
                             str(out / "model_final.pth"))
        build_model_and_load(load_config(out / "config.yaml"), str(out / "model_final.pth"))  # as trained: silent
    warned = [r for r in records if r.name == "blendmask.engine.build"]
    assert [r.differing for r in warned] == [[f"INPUT.MIN_SIZE_TEST 200 (trained with {trained_size})"]]
