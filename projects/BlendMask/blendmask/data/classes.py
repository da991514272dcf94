"""One place for the number of classes.

A BlendMask config holds the class count twice (``MODEL.FCOS.NUM_CLASSES`` for the detector and
``MODEL.BASIS_MODULE.NUM_CLASSES`` for the auxiliary semantic head), and detectron2's own models
use ``MODEL.ROI_HEADS.NUM_CLASSES`` / ``MODEL.RETINANET.NUM_CLASSES``. ``set_num_classes`` sets
all of them, by default from the ``thing_classes`` of the training datasets' metadata.
"""

import logging
from typing import Iterable, List, Optional

logger = logging.getLogger(__name__)

_NUM_CLASSES_KEYS = (
    ("FCOS", "NUM_CLASSES"),
    ("BASIS_MODULE", "NUM_CLASSES"),
    ("ROI_HEADS", "NUM_CLASSES"),
    ("RETINANET", "NUM_CLASSES"),
    ("SOLOV2", "NUM_CLASSES"),
)


def thing_classes_of(dataset_names: Iterable[str]) -> Optional[List[str]]:
    """The ``thing_classes`` shared by the named datasets' metadata; None when none has them.

    A dataset registered by ``register_coco_instances`` without ``thing_classes`` gets them
    when its json is loaded, so such a dataset is loaded once here. Raises ValueError when two
    datasets disagree.
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog

    dataset_names = list(dataset_names)
    found = None
    for name in dataset_names:
        classes = MetadataCatalog.get(name).get("thing_classes", None)
        if classes is None and name in DatasetCatalog.list():
            DatasetCatalog.get(name)  # load_coco_json sets thing_classes in the metadata
            classes = MetadataCatalog.get(name).get("thing_classes", None)
        if classes is None:
            continue
        if found is not None and list(classes) != found:
            raise ValueError(f"datasets {dataset_names} have different thing_classes: {found} vs {list(classes)}")
        found = list(classes)
    return found


def set_num_classes(cfg, num_classes: Optional[int] = None) -> int:
    """Set every NUM_CLASSES key of ``cfg`` that exists to one value; returns it.

    With ``num_classes=None`` it is ``len(thing_classes)`` of ``cfg.DATASETS.TRAIN`` (or, when
    those have no metadata, ``cfg.DATASETS.TEST``); when neither has ``thing_classes`` the value of
    key the model's meta-architecture declares (``num_classes_key``: ``MODEL.FCOS.NUM_CLASSES`` for
    FCOS-based models, ``MODEL.SOLOV2.NUM_CLASSES`` for SOLOv2 and AggMask*, detectron2's
    ``MODEL.ROI_HEADS.NUM_CLASSES`` for its own) is kept and copied to the others.
    ``cfg`` must not be frozen.
    """
    if num_classes is None:
        classes = thing_classes_of(cfg.DATASETS.TRAIN) or thing_classes_of(cfg.DATASETS.TEST)
        if classes is not None:
            num_classes = len(classes)
        else:  # the key the model's meta-architecture declares (modeling/contract.py)
            from ..modeling.contract import config_value, num_classes_key_of

            num_classes = config_value(cfg, num_classes_key_of(cfg))
    num_classes = int(num_classes)
    if num_classes < 1:
        raise ValueError(f"the number of classes must be positive, got {num_classes}")
    for node, key in _NUM_CLASSES_KEYS:
        if node in cfg.MODEL and key in cfg.MODEL[node]:
            if cfg.MODEL[node][key] != num_classes:
                old = cfg.MODEL[node][key]
                logger.info(f"MODEL.{node}.{key}: {old} -> {num_classes}",
                            extra={"config_key": f"MODEL.{node}.{key}", "old": old, "new": num_classes})
            cfg.MODEL[node][key] = num_classes
    return num_classes
