"""Datasets: the built-in synthetic shapes dataset, the number-of-classes helper and a training
loader that skips unreadable images."""

from .classes import set_num_classes, thing_classes_of
from .mapper import SkipNoneDataset, SkipUnreadableMapper, build_test_loader, build_train_loader, image_read_error
from .shapes import SHAPE_CLASSES, ShapesSpec, build_shapes_dataset, generate_image, register_shapes
from .shapes_panoptic import STUFF_CLASSES, build_shapes_panoptic, register_shapes_panoptic

__all__ = [
    "SHAPE_CLASSES",
    "STUFF_CLASSES",
    "ShapesSpec",
    "SkipNoneDataset",
    "SkipUnreadableMapper",
    "build_shapes_dataset",
    "build_shapes_panoptic",
    "build_test_loader",
    "build_train_loader",
    "generate_image",
    "image_read_error",
    "register_shapes",
    "register_shapes_panoptic",
    "set_num_classes",
    "thing_classes_of",
]
