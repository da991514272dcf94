"""A regular (non-editable) install works outside the repository: the wheel carries the configs and
the three commands, and its declared requirements are met.

The wheel is built from a copy of the package, installed into a fresh virtual environment that sees
this environment's torch and detectron2 through a .pth file (nothing is downloaded), and each command
runs from a folder outside the repository: blendmask-train on a tiny COCO-format dataset, then
blendmask-demo and blendmask-export on the model it saved.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from conftest import REPO_ROOT

pytestmark = pytest.mark.slow

TINY_OPTS = [
    "MODEL.DEVICE", "cpu", "MODEL.FPN.OUT_CHANNELS", "32", "MODEL.BASIS_MODULE.CONVS_DIM", "32",
    "MODEL.FCOS.INFERENCE_TH_TEST", "0.0", "TEST.DETECTIONS_PER_IMAGE", "10",
    "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64", "INPUT.MIN_SIZE_TEST", "64",
    "INPUT.MAX_SIZE_TEST", "64", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "0",
    "SOLVER.STEPS", "()", "DATALOADER.NUM_WORKERS", "0",
]


def _run(args, cwd, env, timeout=240):
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (f"{args[0]} exited {result.returncode}:\n"
                                    f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """(python of the fresh venv, its environment, a folder outside the repository)."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    shutil.copy(REPO_ROOT / "setup.py", src / "setup.py")
    shutil.copytree(REPO_ROOT / "projects" / "BlendMask" / "blendmask", src / "projects" / "BlendMask" / "blendmask",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(root / "dist"), str(src)],
         cwd=root, env=os.environ.copy())
    (wheel,) = (root / "dist").glob("blendmask-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "blendmask/model_zoo/configs/BlendMask/R_50_1x.yaml" in names
    assert "blendmask/model_zoo/configs/Lazy/BlendMask_R_50_1x.py" in names
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert all(f"blendmask-{c} = blendmask.cli.{m}:cli" in entry_points
               for c, m in (("train", "train"), ("demo", "demo"), ("export", "export"), ("lazy-train", "lazy_train")))

    env_dir = root / "venv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    _run([base_python, "-m", "venv", "--without-pip", str(env_dir)], cwd=root, env=os.environ.copy())
    python = env_dir / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.check_output([str(python), "-c", purelib], text=True).strip())
    # torch, detectron2 and the rest from this environment (its own blendmask is an editable install whose
    # path file a plain path entry does not process, so only the wheel's blendmask is importable)
    (site / "_test_base_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", "--ignore-installed", str(wheel)],
         cwd=root, env=os.environ.copy())
    outside = root / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["OMP_NUM_THREADS"] = "2"
    return python, env, outside


def test_the_installed_package_is_the_wheel_and_its_requirements_are_met(venv):
    python, env, outside = venv
    code = r"""
import importlib.metadata as md, json, blendmask
from blendmask import model_zoo
try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement
unmet = []
for line in md.requires("blendmask"):
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    try:
        version = md.version(req.name)
    except md.PackageNotFoundError:
        version = None
    if version is None or (req.specifier and not req.specifier.contains(version, prereleases=True)):
        unmet.append(f"{req} (found {version})")
cfg = model_zoo.get_config("BlendMask/R_50_1x.yaml")
print(json.dumps({"package": blendmask.__file__, "config": model_zoo.get_config_file("BlendMask/R_50_1x.yaml"),
                  "arch": cfg.MODEL.META_ARCHITECTURE, "unmet": unmet}))
"""
    out = json.loads(_run([str(python), "-c", code], cwd=outside, env=env).stdout.strip().splitlines()[-1])
    venv_dir = python.parent.parent
    assert Path(out["package"]).is_relative_to(venv_dir) and Path(out["config"]).is_relative_to(venv_dir)
    assert Path(out["config"]).is_file() and out["arch"] == "BlendMask"
    assert out["unmet"] == []


def test_commands_train_demo_and_export_from_outside_the_repository(venv):
    python, env, outside = venv
    from test_train_net import _write_custom_coco

    data = outside / "data"
    data.mkdir()
    json_file = _write_custom_coco(data, "train", 4)
    out = outside / "out"
    # the repository's config path, resolved to the packaged file
    _run(["blendmask-train", "--config-file", "configs/Shapes/BlendMask_R18.yaml",
          "--coco-dataset", "mine", str(json_file), str(data / "train"),
          "DATASETS.TRAIN", "('mine',)", "DATASETS.TEST", "()", "SOLVER.MAX_ITER", "2", "OUTPUT_DIR", str(out),
          *TINY_OPTS], cwd=outside, env=env)
    assert (out / "model_final.pth").is_file() and (out / "config.yaml").is_file()

    demo = _run(["blendmask-demo", "--config-file", str(out / "config.yaml"), "--input", str(data / "train" / "0.png"),
                 "--output", str(outside / "drawn"), "--confidence-threshold", "0.0",
                 "--opts", "MODEL.WEIGHTS", str(out / "model_final.pth")], cwd=outside, env=env)
    assert (outside / "drawn" / "0.png").is_file(), demo.stdout

    export = _run(["blendmask-export", "--config-file", str(out / "config.yaml"), "--weights",
                   str(out / "model_final.pth"), "--output", str(outside / "exported"), "--format", "torchscript",
                   "--verify", "--sample-image", str(data / "train" / "1.png")], cwd=outside, env=env)
    assert (outside / "exported" / "model.ts").is_file() and "verify: all match" in export.stdout
