import importlib

import pytest

from blendmask.utils.env import detectron2_has_compiled_ops


def test_detectron2_layers_import():
    importlib.import_module("detectron2.layers")
    importlib.import_module("detectron2.evaluation")


def test_placeholder_ops_raise_clear_error():
    from detectron2 import _C

    if detectron2_has_compiled_ops():
        pytest.skip("a compiled detectron2 is installed; the placeholder is not in use")
    assert _C.IS_PLACEHOLDER
    with pytest.raises(NotImplementedError, match=r"detectron2\._C\.nms_rotated is not available"):
        _C.nms_rotated(None, None, 0.5)
    assert isinstance(_C.get_compiler_version(), str)
    assert _C.has_cuda() is False
