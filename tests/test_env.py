import importlib
import os
import subprocess
import sys

import pytest

from blendmask.utils.env import detectron2_has_compiled_ops
from conftest import REPO_ROOT


def test_detectron2_layers_run_on_this_install():
    """The layers our models use work whatever detectron2 this is (python-only or compiled):
    ROIAlign of a constant map is that constant; the evaluation package imports."""
    import torch

    layers = importlib.import_module("detectron2.layers")
    importlib.import_module("detectron2.evaluation")
    features = torch.full((1, 2, 8, 8), 3.0)
    pooled = layers.ROIAlign((2, 2), 1.0, 2, aligned=True)(features, torch.tensor([[0.0, 1.0, 1.0, 5.0, 5.0]]))
    assert pooled.shape == (1, 2, 2, 2) and torch.allclose(pooled, torch.full_like(pooled, 3.0))


def test_placeholder_ops_raise_clear_error():
    from detectron2 import _C

    if detectron2_has_compiled_ops():
        pytest.skip("a compiled detectron2 is installed; the placeholder is not in use")
    assert _C.IS_PLACEHOLDER
    with pytest.raises(NotImplementedError, match=r"detectron2\._C\.nms_rotated is not available"):
        _C.nms_rotated(None, None, 0.5)
    assert isinstance(_C.get_compiler_version(), str)
    assert _C.has_cuda() is False


WHICH = REPO_ROOT / "tools" / "detectron2_pyonly" / "which_detectron2.py"


def _which(tmp_path, files):
    """which_detectron2.py's answer with a fake detectron2 package (``files``: name -> text) first on the path."""
    pkg = tmp_path / "detectron2"
    pkg.mkdir(parents=True)
    for name, text in files.items():
        (pkg / name).write_text(text)
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    return subprocess.run([sys.executable, str(WHICH)], env=env, capture_output=True, text=True, check=True).stdout


def test_setup_keeps_any_installed_detectron2(tmp_path):
    """make setup installs its python-only 0.6 only where which_detectron2.py says "missing": a user's
    python-only build of detectron2's main branch or a compiled one is kept and named."""
    import detectron2

    kind, version, _ = subprocess.run([sys.executable, str(WHICH)], capture_output=True, text=True).stdout.split(" ", 2)
    assert version == detectron2.__version__  # the suite's own install, whichever it is
    assert kind == ("compiled" if detectron2_has_compiled_ops() else "python-only")
    assert _which(tmp_path / "a", {"__init__.py": "__version__ = '0.6.1-main'"}).startswith("python-only 0.6.1-main ")
    assert _which(tmp_path / "b", {"__init__.py": "__version__ = '0.6'", "_C.py": "def nms(): pass"}).startswith(
        "compiled 0.6 ")
    assert _which(tmp_path / "c", {"__init__.py": "raise ImportError('broken')"}).startswith("missing")
    script = (REPO_ROOT / "tools" / "setup_env.sh").read_text()
    assert 'which_detectron2.py' in script and '"$d2_state" != missing*' in script
    assert "BLENDMASK_REPLACE_DETECTRON2" in script
