import json

import numpy as np
import pytest
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from pycocotools import mask as mask_util
from pycocotools.coco import COCO

from blendmask import add_blendmask_config
from blendmask.data import (
    SHAPE_CLASSES,
    ShapesSpec,
    build_shapes_dataset,
    generate_image,
    register_shapes,
    set_num_classes,
    thing_classes_of,
)

TINY = ShapesSpec(image_size=64, num_train=6, num_val=3, min_shape_size=10, max_shape_size=30)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    build_shapes_dataset(root, TINY)
    return root


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_generation_is_deterministic(tiny_root, tmp_path):
    again = tmp_path / "again"
    build_shapes_dataset(again, TINY)
    first, second = _files(tiny_root), _files(again)
    assert sorted(first) == sorted(second)
    assert first == second  # byte-identical images and json
    assert len([f for f in first if f.endswith(".png")]) == TINY.num_train + TINY.num_val


def test_different_seeds_differ():
    a, _ = generate_image(TINY, "train", 0)
    b, _ = generate_image(ShapesSpec(**{**TINY.__dict__, "seed": 1}), "train", 0)
    c, _ = generate_image(TINY, "train", 1)
    assert not np.array_equal(a, b) and not np.array_equal(a, c)


def test_cache_is_reused_and_rebuilt_when_the_spec_changes(tmp_path):
    spec = ShapesSpec(image_size=48, num_train=2, num_val=1, min_shape_size=10, max_shape_size=24)
    paths = build_shapes_dataset(tmp_path, spec)
    mtime = paths["train"].stat().st_mtime_ns
    assert build_shapes_dataset(tmp_path, spec)["train"].stat().st_mtime_ns == mtime
    bigger = ShapesSpec(**{**spec.__dict__, "num_train": 3})
    build_shapes_dataset(tmp_path, bigger)
    assert len(json.loads(paths["train"].read_text())["images"]) == 3


@pytest.mark.parametrize("split", ["train", "val"])
def test_json_loads_in_pycocotools_and_masks_lie_inside_images(tiny_root, split):
    coco = COCO(str(tiny_root / f"{split}.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(SHAPE_CLASSES)
    assert len(coco.getImgIds()) == TINY.num_images(split)
    num_anns = 0
    for img in coco.loadImgs(coco.getImgIds()):
        h, w = img["height"], img["width"]
        assert (tiny_root / split / img["file_name"]).exists()
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=img["id"])):
            num_anns += 1
            assert ann["iscrowd"] == 0 and ann["segmentation"]
            for poly in ann["segmentation"]:
                xy = np.asarray(poly).reshape(-1, 2)
                assert len(xy) >= 3
                assert xy.min() >= 0 and (xy[:, 0] <= w).all() and (xy[:, 1] <= h).all()
            mask = coco.annToMask(ann)
            assert mask.shape == (h, w) and mask.sum() > 0
            x, y, bw, bh = ann["bbox"]
            assert 0 <= x and 0 <= y and x + bw <= w and y + bh <= h
            # the box and area describe the polygon mask
            rle = mask_util.merge(mask_util.frPyObjects(ann["segmentation"], h, w))
            assert abs(float(mask_util.area(rle)) - ann["area"]) <= 0.15 * ann["area"] + 4
    assert num_anns >= TINY.num_images(split) * TINY.min_objects // 2


def test_polygons_match_the_painted_pixels(tiny_root):
    """Inside a visible mask the image shows the shape's flat colour, not the background."""
    coco = COCO(str(tiny_root / "train.json"))
    image, anns = generate_image(TINY, "train", 0)
    for ann in anns:
        mask = mask_util.decode(mask_util.merge(mask_util.frPyObjects(ann["segmentation"], 64, 64))).astype(bool)
        inner = mask & ~np.roll(mask, 1, 0) & ~np.roll(mask, -1, 0)  # drop boundary rows
        pixels = image[inner].astype(float)
        if len(pixels) > 10:
            assert pixels.std(axis=0).max() < 25  # one shaded colour
    assert len(coco.getAnnIds(imgIds=[1])) == len(anns)


def test_register_and_num_classes_from_metadata(tmp_path):
    names = register_shapes(tmp_path, TINY, prefix="unittest_shapes")
    assert names == {"train": "unittest_shapes_train", "val": "unittest_shapes_val"}
    dicts = DatasetCatalog.get(names["train"])
    assert len(dicts) == TINY.num_train and all(d["annotations"] for d in dicts)
    assert MetadataCatalog.get(names["val"]).thing_classes == list(SHAPE_CLASSES)
    assert register_shapes(tmp_path, TINY, prefix="unittest_shapes") == names  # idempotent

    cfg = add_blendmask_config(get_cfg())
    cfg.DATASETS.TRAIN = (names["train"],)
    assert set_num_classes(cfg) == len(SHAPE_CLASSES)
    for key in (cfg.MODEL.FCOS, cfg.MODEL.BASIS_MODULE, cfg.MODEL.ROI_HEADS, cfg.MODEL.RETINANET):
        assert key.NUM_CLASSES == len(SHAPE_CLASSES)
    assert set_num_classes(cfg, 3) == 3 and cfg.MODEL.BASIS_MODULE.NUM_CLASSES == 3


def test_num_classes_from_a_plain_coco_registration(tmp_path):
    """register_coco_instances with no metadata: the classes come from the json's categories."""
    build_shapes_dataset(tmp_path, TINY)
    register_coco_instances("unittest_plain_coco", {}, str(tmp_path / "val.json"), str(tmp_path / "val"))
    assert thing_classes_of(["unittest_plain_coco"]) == list(SHAPE_CLASSES)
    cfg = get_cfg()  # a detectron2 model without BlendMask keys
    cfg.DATASETS.TRAIN = ("unittest_plain_coco",)
    assert set_num_classes(cfg) == 5 and cfg.MODEL.ROI_HEADS.NUM_CLASSES == 5
    MetadataCatalog.get("unittest_other").set(thing_classes=["a"])
    with pytest.raises(ValueError, match="different thing_classes"):
        thing_classes_of(["unittest_plain_coco", "unittest_other"])
