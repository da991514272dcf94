"""The panoptic variant of the built-in shapes dataset: things are the shapes, stuff is the background.

Each scene of ``shapes.py`` is painted on one of four background textures (smooth noise, stripes,
checks, gradient). Here every pixel no shape covers is one stuff segment whose class is that
texture, and every shape is a thing segment (its visible polygons rasterised at the image size,
later shapes on top). The images and the instance annotations are the instance dataset's, unchanged;
the panoptic files are written beside them under ``<root>/panoptic/`` once (a stamp tells whether the
cache matches the spec):

- ``<split>_panoptic/<index>.png`` and ``<split>_panoptic.json``: COCO panoptic ground truth
  (segment id = R + 256 G + 256^2 B; thing categories 1-5, stuff categories 6-9);
- ``<split>_sem_seg/<index>.png``: the semantic target of detectron2's "separated" convention
  (0 for every thing, 1-4 for the textures);
- ``<split>_images/<index>.jpg`` (links to the png images) and ``<split>_instances.json``: detectron2's
  ``register_coco_panoptic_separated`` matches images and semantic maps by ``.jpg`` names.

``register_shapes_panoptic()`` registers ``<prefix>_<split>_panoptic_separated`` (instances + sem_seg,
``evaluator_type`` "coco_panoptic_seg", for training and ``COCOPanopticEvaluator``) and
``<prefix>_<split>_panoptic_stuffonly`` with detectron2's ``register_coco_panoptic_separated``, as
detectron2 registers COCO panoptic.
"""

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from .shapes import (
    GENERATOR_VERSION,
    SHAPE_CLASSES,
    SPLITS,
    ShapesSpec,
    _background,
    build_shapes_dataset,
    default_root,
)

logger = logging.getLogger(__name__)

STUFF_CLASSES = ("smooth noise", "stripes", "checks", "gradient")  # in the order of shapes._background's kinds
PANOPTIC_VERSION = 1
THING_IDS = tuple(range(1, len(SHAPE_CLASSES) + 1))  # the instance dataset's category ids
STUFF_IDS = tuple(range(len(SHAPE_CLASSES) + 1, len(SHAPE_CLASSES) + 1 + len(STUFF_CLASSES)))


class _RecordingRng:
    """A numpy Generator that remembers what ``integers`` returned (``_background`` draws its kind so)."""

    def __init__(self, rng: np.random.Generator):
        self._rng = rng
        self.integers_drawn = []

    def integers(self, *args, **kwargs):
        value = self._rng.integers(*args, **kwargs)
        self.integers_drawn.append(int(value))
        return value

    def __getattr__(self, name):
        return getattr(self._rng, name)


def background_kind(spec: ShapesSpec, split: str, index: int) -> int:
    """Index into STUFF_CLASSES of the texture ``shapes.generate_image`` paints image ``index`` on.

    Replays the image's random generator (seeded as in ``generate_image``) through ``_background``,
    which draws the texture kind as its first integer.
    """
    rng = _RecordingRng(np.random.default_rng([spec.seed, SPLITS.index(split), index, GENERATOR_VERSION]))
    _background(rng, spec.image_size)
    return rng.integers_drawn[0]


def panoptic_annotation(annotations, kind: int, size: int):
    """(segment-id map (size, size) int64, segments_info) of one image from its instance annotations
    (bottom to top, COCO polygons) and its background kind. Shapes whose visible area rasterises
    to nothing get no segment."""
    from detectron2.structures.masks import polygons_to_bitmask

    ids = np.zeros((size, size), np.int64)
    for k, ann in enumerate(annotations):  # later shapes lie on top
        ids[polygons_to_bitmask([np.asarray(p) for p in ann["segmentation"]], size, size)] = k + 1
    stuff_id = len(annotations) + 1
    ids[ids == 0] = stuff_id
    segments = []
    for k, ann in enumerate(annotations):
        area = int(np.count_nonzero(ids == k + 1))
        if area:
            segments.append({"id": k + 1, "category_id": ann["category_id"], "iscrowd": 0, "area": area,
                             "bbox": ann["bbox"]})
    area = int(np.count_nonzero(ids == stuff_id))
    if area:
        ys, xs = np.nonzero(ids == stuff_id)
        bbox = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
        segments.append({"id": stuff_id, "category_id": STUFF_IDS[kind], "iscrowd": 0, "area": area, "bbox": bbox})
    return ids, segments


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.symlink(os.path.relpath(src, dst.parent), dst)
    except OSError:
        shutil.copyfile(src, dst)


def _write_split(spec: ShapesSpec, root: Path, split: str) -> None:
    from PIL import Image

    out = root / "panoptic"
    coco = json.loads((root / f"{split}.json").read_text())
    by_image = {}
    for ann in coco["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    folders = {name: out / f"{split}_{name}" for name in ("panoptic", "sem_seg", "images")}
    for folder in folders.values():
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
    panoptic_anns, images = [], []
    sem_of_category = {i: 0 for i in THING_IDS} | {s: k + 1 for k, s in enumerate(STUFF_IDS)}
    for index, image in enumerate(coco["images"]):
        stem = Path(image["file_name"]).stem
        kind = background_kind(spec, split, index)
        ids, segments = panoptic_annotation(by_image.get(image["id"], []), kind, spec.image_size)
        rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)
        Image.fromarray(rgb).save(folders["panoptic"] / f"{stem}.png")
        sem = np.zeros(ids.shape, np.uint8)
        for s in segments:
            sem[ids == s["id"]] = sem_of_category[s["category_id"]]
        Image.fromarray(sem).save(folders["sem_seg"] / f"{stem}.png")
        _link_or_copy(root / split / image["file_name"], folders["images"] / f"{stem}.jpg")
        images.append(dict(image, file_name=f"{stem}.jpg"))
        panoptic_anns.append({"image_id": image["id"], "file_name": f"{stem}.png", "segments_info": segments})
    categories = [{"id": i, "name": n, "isthing": 1, "supercategory": "shape"}
                  for i, n in zip(THING_IDS, SHAPE_CLASSES)]
    categories += [{"id": i, "name": n, "isthing": 0, "supercategory": "background"}
                   for i, n in zip(STUFF_IDS, STUFF_CLASSES)]
    _write_json(out / f"{split}_panoptic.json",
                {"images": images, "annotations": panoptic_anns, "categories": categories})
    _write_json(out / f"{split}_instances.json", dict(coco, images=images))


def _write_json(path: Path, data) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, separators=(",", ":")))
    tmp.replace(path)


def build_shapes_panoptic(root: Optional[os.PathLike] = None, spec: Optional[ShapesSpec] = None) -> Path:
    """Write the panoptic files under ``root/panoptic`` (building the instance dataset first if
    needed) unless a cache made from the same spec is there. Returns ``root/panoptic``."""
    spec = spec if spec is not None else ShapesSpec()
    root = Path(root) if root is not None else default_root()
    build_shapes_dataset(root, spec)
    out = root / "panoptic"
    stamp_path = out / "spec.json"
    stamp = {"panoptic_version": PANOPTIC_VERSION, **spec.stamp()}
    wanted = [out / f"{split}_{name}.json" for split in SPLITS for name in ("panoptic", "instances")]
    if stamp_path.exists() and json.loads(stamp_path.read_text()) == stamp and all(p.exists() for p in wanted):
        return out
    logger.info(f"Writing the panoptic shapes annotations in {out}")
    out.mkdir(parents=True, exist_ok=True)
    if stamp_path.exists():
        stamp_path.unlink()
    for split in SPLITS:
        _write_split(spec, root, split)
    stamp_path.write_text(json.dumps(stamp, indent=1))
    return out


def shapes_panoptic_metadata() -> Dict:
    """Metadata of detectron2's "separated" convention: contiguous thing ids 0-4, stuff 1-4 (0: things)."""
    return {
        "thing_classes": list(SHAPE_CLASSES),
        "thing_dataset_id_to_contiguous_id": {i: k for k, i in enumerate(THING_IDS)},
        "stuff_classes": ["things", *STUFF_CLASSES],
        "stuff_dataset_id_to_contiguous_id": {0: 0, **{i: k + 1 for k, i in enumerate(STUFF_IDS)}},
    }


def register_shapes_panoptic(
    root: Optional[os.PathLike] = None, spec: Optional[ShapesSpec] = None, prefix: str = "shapes"
) -> Dict[str, str]:
    """Build the panoptic files if needed and register ``<prefix>_<split>_panoptic_separated`` (and
    ``..._stuffonly``) with detectron2's ``register_coco_panoptic_separated``. Calling it again with the
    same root is harmless. Returns {split: name of the separated dataset}."""
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import register_coco_panoptic_separated

    root = (Path(root) if root is not None else default_root()).resolve()
    out = build_shapes_panoptic(root, spec)
    names = {}
    for split in SPLITS:
        name = f"{prefix}_{split}_panoptic"
        names[split] = f"{name}_separated"
        if names[split] in DatasetCatalog.list():
            if MetadataCatalog.get(names[split]).get("panoptic_root") == str(out / f"{split}_panoptic"):
                continue
            for registered in (names[split], f"{name}_stuffonly"):
                DatasetCatalog.remove(registered)
                MetadataCatalog.remove(registered)
        register_coco_panoptic_separated(
            name, shapes_panoptic_metadata(), str(out / f"{split}_images"), str(out / f"{split}_panoptic"),
            str(out / f"{split}_panoptic.json"), str(out / f"{split}_sem_seg"), str(out / f"{split}_instances.json"),
        )
    return names
