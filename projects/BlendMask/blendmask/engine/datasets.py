"""Register the datasets a training or evaluation run names."""

from typing import Iterable, Tuple

import detectron2.utils.comm as comm
from detectron2.data import DatasetCatalog
from detectron2.data.datasets import register_coco_instances

from ..data import build_shapes_dataset, build_shapes_panoptic, register_shapes, register_shapes_panoptic


def register_datasets(cfg, coco_datasets: Iterable[Tuple[str, str, str]] = ()) -> None:
    """Register each ``(name, json_file, image_root)`` COCO-format dataset not yet registered and,
    when ``cfg.DATASETS.TRAIN``/``TEST`` name a ``shapes_*`` dataset, the built-in shapes dataset
    (generated once per machine, by the first local process; the others wait for it), and its
    panoptic variant (``shapes_*_panoptic_separated``) when one is named."""
    for name, json_file, image_root in coco_datasets:
        if name not in DatasetCatalog.list():
            register_coco_instances(name, {}, json_file, image_root)
    shapes = [name for name in (*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST) if name.startswith("shapes_")]
    panoptic = any("_panoptic" in name for name in shapes)
    if shapes:
        if comm.get_local_rank() == 0:
            build_shapes_panoptic() if panoptic else build_shapes_dataset()
        comm.synchronize()
        register_shapes()
        if panoptic:
            register_shapes_panoptic()
