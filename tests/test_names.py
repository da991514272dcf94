"""Generic names for generic classes; the former names still work, with a DeprecationWarning."""

import pytest


@pytest.mark.parametrize("module,old,new", [
    ("blendmask.checkpoint", "BlendMaskCheckpointer", "SafeCheckpointer"),
    ("blendmask.export.wrapper", "ExportableBlendMask", "ExportableModel"),
    ("blendmask.export", "ExportableBlendMask", "ExportableModel"),
    ("blendmask.utils.visualize", "Predictor", "DrawingPredictor"),
])
def test_former_names_are_deprecated_aliases(module, old, new):
    import importlib

    mod = importlib.import_module(module)
    with pytest.deprecated_call(match=new):
        assert getattr(mod, old) is getattr(mod, new)
    with pytest.raises(AttributeError, match="no_such_name"):
        mod.no_such_name  # noqa: B018


def test_the_package_exports_every_config_function():
    import blendmask

    for name in ("add_fcos_config", "add_blendmask_config", "add_centermask_config", "add_solov2_config",
                 "add_aggmask_config", "get_cfg", "load_config"):
        assert name in blendmask.__all__ and callable(getattr(blendmask, name)), name
