"""Datasets: the built-in synthetic shapes dataset and the number-of-classes helper."""

from .classes import set_num_classes, thing_classes_of
from .shapes import SHAPE_CLASSES, ShapesSpec, build_shapes_dataset, generate_image, register_shapes

__all__ = [
    "SHAPE_CLASSES",
    "ShapesSpec",
    "build_shapes_dataset",
    "generate_image",
    "register_shapes",
    "set_num_classes",
    "thing_classes_of",
]
