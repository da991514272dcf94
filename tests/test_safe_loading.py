"""Every entry point that loads weights refuses a checkpoint whose unpickling would run code.

The malicious files hold an object whose ``__reduce__`` calls ``exec`` to create a marker file:
plain ``pickle.load`` / ``torch.load(weights_only=False)`` create it (checked with
BLENDMASK_ALLOW_PICKLE=1), every entry point must refuse the file, naming
BLENDMASK_ALLOW_PICKLE=1, and leave no marker.
"""

import importlib.util
import os
import pickle
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from detectron2.engine import DefaultPredictor

import blendmask
from blendmask.checkpoint import ALLOW_PICKLE_ENV, SafeCheckpointer, UnsafeCheckpointError
from blendmask.engine import Predictor, Trainer, build_model_and_load
from conftest import REPO_ROOT, import_script, tiny_cfg

ALLOW_MESSAGE = "BLENDMASK_ALLOW_PICKLE=1"
FORMATS = ("pkl", "pth")
SMALL_TEST_SIZE = ("INPUT.MIN_SIZE_TEST", 96, "INPUT.MAX_SIZE_TEST", 160)


class RunsCodeWhenLoaded:
    """Unpickling this creates ``marker`` (a stand-in for any command an attacker would run)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


class Malicious:
    def __init__(self, path, marker):
        self.path, self.marker = path, marker

    def __str__(self):
        return str(self.path)


def write_malicious(folder, suffix: str) -> Malicious:
    """A checkpoint in detectron2's layout whose one tensor is the payload; ``.pkl`` is written
    with pickle (the model-zoo format), anything else with ``torch.save``."""
    marker = folder / f"code_ran_{suffix}"
    path = folder / f"malicious.{suffix}"
    payload = {"model": {"backbone.bottom_up.stem.conv1.weight": RunsCodeWhenLoaded(marker)}, "__author__": "x"}
    if suffix == "pkl":
        with open(path, "wb") as f:
            pickle.dump(payload, f)
    else:
        torch.save(payload, path)
    return Malicious(path, marker)


@pytest.fixture(autouse=True)
def pickle_not_allowed(monkeypatch):
    monkeypatch.delenv(ALLOW_PICKLE_ENV, raising=False)


@pytest.fixture(params=FORMATS)
def malicious(request, tmp_path):
    return write_malicious(tmp_path, request.param)


def assert_refused(message: str, bad: Malicious):
    assert ALLOW_MESSAGE in message, message
    assert str(bad.path) in message, message
    assert not bad.marker.exists(), "the checkpoint's code ran"


def cfg_with_weights(path="", *opts):
    cfg = tiny_cfg()
    cfg.merge_from_list(["MODEL.WEIGHTS", str(path), *SMALL_TEST_SIZE, *opts])
    return cfg


def config_file(folder, cfg=None):
    """The tiny config as a yaml file, for the command-line tools."""
    path = folder / "tiny.yaml"
    path.write_text((cfg or cfg_with_weights()).dump())
    return path


def image_file(folder):
    path = folder / "image.png"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8))
    return path


def load_script(relative_path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / relative_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(relative_path: str, *args, cwd):
    env = {k: v for k, v in os.environ.items() if k != ALLOW_PICKLE_ENV}
    return subprocess.run([sys.executable, str(REPO_ROOT / relative_path), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


# --- the payload is real ------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", FORMATS)
def test_the_malicious_files_run_code_when_pickle_is_allowed(tmp_path, monkeypatch, suffix):
    bad = write_malicious(tmp_path, suffix)
    monkeypatch.setenv(ALLOW_PICKLE_ENV, "1")
    SafeCheckpointer(torch.nn.Linear(1, 1))._load_file(str(bad.path))
    assert bad.marker.exists()


# --- library entry points ----------------------------------------------------------------------


def test_build_model_and_load_refuses_pickled_code(malicious):
    with pytest.raises(UnsafeCheckpointError) as error:
        build_model_and_load(cfg_with_weights(), weights=str(malicious))
    assert_refused(str(error.value), malicious)
    with pytest.raises(UnsafeCheckpointError) as error:  # the same through MODEL.WEIGHTS
        blendmask.build_model_and_load(cfg_with_weights(malicious))
    assert_refused(str(error.value), malicious)


@pytest.mark.parametrize("suffix", ["pt", "pyth", "bin", "pth.tar"])
def test_other_file_names_are_read_weights_only_too(tmp_path, suffix):
    bad = write_malicious(tmp_path, suffix)
    with pytest.raises(UnsafeCheckpointError) as error:
        build_model_and_load(cfg_with_weights(bad))
    assert_refused(str(error.value), bad)


def test_engine_predictor_refuses_pickled_code(malicious):
    assert blendmask.Predictor is Predictor
    with pytest.raises(UnsafeCheckpointError) as error:
        Predictor(cfg_with_weights(malicious))
    assert_refused(str(error.value), malicious)


def test_visualize_predictor_refuses_pickled_code(malicious):
    from blendmask.utils.visualize import DrawingPredictor

    with pytest.raises(UnsafeCheckpointError) as error:
        DrawingPredictor(cfg_with_weights(malicious))
    assert_refused(str(error.value), malicious)


@pytest.fixture(scope="module")
def tiny_shapes(tmp_path_factory):
    from blendmask.data import ShapesSpec, register_shapes

    spec = ShapesSpec(image_size=64, num_train=2, num_val=1, min_shape_size=12, max_shape_size=32)
    return register_shapes(tmp_path_factory.mktemp("shapes"), spec, prefix="safe_loading_shapes")


def tiny_trainer(tiny_shapes, output_dir, weights=""):
    output_dir.mkdir(exist_ok=True)
    cfg = cfg_with_weights(
        weights, "DATASETS.TRAIN", f"('{tiny_shapes['train']}',)", "DATASETS.TEST", "()",
        "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", 64, "SOLVER.IMS_PER_BATCH", 1,
        "DATALOADER.NUM_WORKERS", 0, "OUTPUT_DIR", str(output_dir),
    )
    return Trainer(cfg)


def test_trainer_resume_or_load_refuses_pickled_code(malicious, tiny_shapes, tmp_path):
    trainer = tiny_trainer(tiny_shapes, tmp_path / "load", weights=malicious)
    with pytest.raises(UnsafeCheckpointError) as error:
        trainer.resume_or_load(resume=False)  # MODEL.WEIGHTS
    assert_refused(str(error.value), malicious)

    out = tmp_path / "resume"
    out.mkdir()
    resumed = out / f"model_0000009.{malicious.path.suffix[1:]}"
    malicious.path.rename(resumed)
    (out / "last_checkpoint").write_text(resumed.name)
    trainer = tiny_trainer(tiny_shapes, out)
    with pytest.raises(UnsafeCheckpointError) as error:
        trainer.resume_or_load(resume=True)  # the last checkpoint in OUTPUT_DIR
    assert_refused(str(error.value), Malicious(resumed, malicious.marker))


# --- command-line entry points -----------------------------------------------------------------


def test_train_net_eval_only_refuses_pickled_code(malicious, tmp_path):
    train_net = import_script("train_net.py")
    args = train_net.argument_parser().parse_args([
        "--config-file", str(config_file(tmp_path)), "--eval-only", "MODEL.WEIGHTS", str(malicious),
        "DATASETS.TRAIN", "()", "DATASETS.TEST", "()", "OUTPUT_DIR", str(tmp_path / "out"),
    ])
    with pytest.raises(UnsafeCheckpointError) as error:
        train_net.main(args)
    assert_refused(str(error.value), malicious)


def test_demo_refuses_pickled_code(malicious, tmp_path, capsys):
    demo = load_script("demo/demo.py", "safe_loading_demo")
    code = demo.main(["--config-file", str(config_file(tmp_path)), "--input", str(image_file(tmp_path)),
                      "--output", str(tmp_path / "drawn"), "--opts", "MODEL.WEIGHTS", str(malicious)])
    assert code == 2
    assert_refused(capsys.readouterr().err, malicious)
    assert not (tmp_path / "drawn").exists() or not any((tmp_path / "drawn").iterdir())


def test_export_model_refuses_pickled_code(malicious, tmp_path, capsys):
    export_model = load_script("tools/export_model.py", "safe_loading_export_model")
    code = export_model.main(["--config-file", str(config_file(tmp_path)), "--weights", str(malicious),
                              "--output", str(tmp_path / "export"), "--format", "torchscript"])
    assert code == 2
    assert_refused(capsys.readouterr().err, malicious)
    assert not (tmp_path / "export").exists()


@pytest.mark.parametrize(
    "script, suffix",
    [("train_net.py", "pkl"), ("demo/demo.py", "pth"), ("tools/export_model.py", "pkl")],
)
def test_command_line_refusal_is_a_message_and_exit_code_2(script, suffix, tmp_path):
    """As a user runs them: exit code 2 and the message on stderr, no traceback, no marker."""
    bad = write_malicious(tmp_path, suffix)
    cfg_file = config_file(tmp_path)
    args = {
        "train_net.py": ["--config-file", cfg_file, "--eval-only", "MODEL.WEIGHTS", bad, "DATASETS.TRAIN", "()",
                         "DATASETS.TEST", "()", "OUTPUT_DIR", tmp_path / "out"],
        "demo/demo.py": ["--config-file", cfg_file, "--input", image_file(tmp_path), "--output", tmp_path / "drawn",
                         "--opts", "MODEL.WEIGHTS", bad],
        "tools/export_model.py": ["--config-file", cfg_file, "--weights", bad, "--output", tmp_path / "export"],
    }[script]
    result = run_script(script, *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert_refused(result.stderr, bad)


# --- what loads ---------------------------------------------------------------------------------


def test_build_model_and_load_loads_weights_only_files(tmp_path):
    cfg = cfg_with_weights()
    torch.manual_seed(0)
    reference = build_model_and_load(cfg)
    assert not reference.training
    state = reference.state_dict()
    torch.save({"model": state}, tmp_path / "weights.pth")
    with open(tmp_path / "weights.pkl", "wb") as f:  # detectron2's model-zoo layout: numpy arrays
        pickle.dump({"model": {k: v.numpy() for k, v in state.items()}, "__author__": "test"}, f)
    for name in ("weights.pth", "weights.pkl"):
        torch.manual_seed(1)  # different random initialisation: loading must overwrite it
        model = build_model_and_load(cfg, weights=str(tmp_path / name), eval_mode=False)
        assert model.training
        for key, value in model.state_dict().items():
            torch.testing.assert_close(value, state[key], rtol=0, atol=0, msg=f"{name}: {key}")


@pytest.mark.parametrize("input_format", ["BGR", "RGB"])
def test_predictor_predicts_as_detectron2s_default_predictor(tmp_path, input_format):
    torch.manual_seed(0)
    model = build_model_and_load(cfg_with_weights())
    torch.save({"model": model.state_dict()}, tmp_path / "weights.pth")
    cfg = cfg_with_weights(tmp_path / "weights.pth", "INPUT.FORMAT", input_format,
                           "MODEL.FCOS.INFERENCE_TH_TEST", 0.0, "TEST.DETECTIONS_PER_IMAGE", 20)
    image = np.random.default_rng(1).integers(0, 256, (72, 100, 3), dtype=np.uint8)
    ours = Predictor(cfg)(image)["instances"]
    theirs = DefaultPredictor(cfg)(image)["instances"]
    assert len(ours) == len(theirs) > 0 and ours.image_size == theirs.image_size == (72, 100)
    torch.testing.assert_close(ours.pred_boxes.tensor, theirs.pred_boxes.tensor, rtol=0, atol=0)
    torch.testing.assert_close(ours.scores, theirs.scores, rtol=0, atol=0)
    assert torch.equal(ours.pred_masks, theirs.pred_masks)


def test_predictor_rejects_formats_it_cannot_convert():
    with pytest.raises(ValueError, match="INPUT.FORMAT"):
        Predictor(cfg_with_weights("", "INPUT.FORMAT", "L"))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        Predictor(cfg_with_weights())(np.zeros((8, 8), np.uint8))
