"""The basis-module ("bottom") registry: modules that predict K full-image bases from FPN features."""

from typing import Dict

from detectron2.layers import ShapeSpec
from detectron2.utils.registry import Registry
from torch import nn

BASIS_MODULE_REGISTRY = Registry("BASIS_MODULE")
BASIS_MODULE_REGISTRY.__doc__ = """
Registry for basis modules: they take FPN features and return {"bases": [(N, K, H/4, W/4)]}.
The registered object is called with ``(cfg, input_shape: Dict[str, ShapeSpec])``.
"""


def build_basis_module(cfg, input_shape: Dict[str, ShapeSpec]) -> nn.Module:
    """The basis module named by MODEL.BASIS_MODULE.NAME."""
    return BASIS_MODULE_REGISTRY.get(cfg.MODEL.BASIS_MODULE.NAME)(cfg, input_shape)
