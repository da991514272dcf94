"""The panoptic variant of the shapes dataset: files, registration, PQ through COCOPanopticEvaluator."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from blendmask.data import ShapesSpec, build_shapes_dataset, shapes
from blendmask.data.shapes_panoptic import (
    STUFF_CLASSES,
    background_kind,
    build_shapes_panoptic,
    register_shapes_panoptic,
)

TINY = ShapesSpec(image_size=64, num_train=6, num_val=4, min_shape_size=10, max_shape_size=30)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes_panoptic")
    build_shapes_panoptic(root, TINY)
    return root


def test_background_kind_is_the_texture_generate_image_draws(monkeypatch):
    drawn = []
    original = shapes._background

    def recording(rng, size):
        image = original(rng, size)
        drawn.append(image)
        return image

    monkeypatch.setattr(shapes, "_background", recording)
    for i in range(8):
        shapes.generate_image(TINY, "train", i)
        # the same texture: the replayed generator draws the same background, bit for bit
        rng = np.random.default_rng([TINY.seed, 0, i, shapes.GENERATOR_VERSION])
        np.testing.assert_array_equal(original(rng, TINY.image_size), drawn[-1])
    kinds = [background_kind(TINY, "train", i) for i in range(40)]
    assert set(kinds) == set(range(len(STUFF_CLASSES)))


def test_instance_data_is_untouched(tiny_root, tmp_path):
    plain = tmp_path / "plain"
    build_shapes_dataset(plain, TINY)
    for path in sorted(plain.rglob("*")):
        if path.is_file():
            assert (tiny_root / path.relative_to(plain)).read_bytes() == path.read_bytes(), path


def test_panoptic_files_agree_with_the_instances(tiny_root):
    out = tiny_root / "panoptic"
    pan = json.loads((out / "val_panoptic.json").read_text())
    inst = json.loads((tiny_root / "val.json").read_text())
    categories = {c["id"]: c for c in pan["categories"]}
    assert [c["isthing"] for c in pan["categories"]] == [1] * 5 + [0] * 4
    for index, ann in enumerate(pan["annotations"]):
        rgb = np.asarray(Image.open(out / "val_panoptic" / ann["file_name"]), dtype=np.int64)
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
        segments = ann["segments_info"]
        assert sorted(np.unique(ids).tolist()) == sorted(s["id"] for s in segments)  # no void
        for s in segments:
            assert s["area"] == np.count_nonzero(ids == s["id"])
        stuff = [s for s in segments if not categories[s["category_id"]]["isthing"]]
        assert len(stuff) == 1 and stuff[0]["category_id"] == 6 + background_kind(TINY, "val", index)
        things = [s for s in segments if categories[s["category_id"]]["isthing"]]
        n_inst = sum(a["image_id"] == ann["image_id"] for a in inst["annotations"])
        assert 0 < len(things) <= n_inst
        sem = np.asarray(Image.open(out / "val_sem_seg" / ann["file_name"]))
        np.testing.assert_array_equal(sem == 0, ids != stuff[0]["id"])
        assert set(np.unique(sem)) <= {0, stuff[0]["category_id"] - 5}


def test_registered_as_detectron2_registers_coco_panoptic(tiny_root):
    from detectron2.data import DatasetCatalog, MetadataCatalog

    names = register_shapes_panoptic(tiny_root, TINY, prefix="unittest_shapes")
    assert names == {split: f"unittest_shapes_{split}_panoptic_separated" for split in ("train", "val")}
    assert register_shapes_panoptic(tiny_root, TINY, prefix="unittest_shapes") == names  # idempotent
    records = DatasetCatalog.get(names["train"])
    assert len(records) == TINY.num_train and all("sem_seg_file_name" in r and r["annotations"] for r in records)
    image = np.asarray(Image.open(records[0]["file_name"]))
    assert image.shape == (64, 64, 3)
    meta = MetadataCatalog.get(names["val"])
    assert meta.evaluator_type == "coco_panoptic_seg" and meta.stuff_classes[1:] == list(STUFF_CLASSES)
    assert "unittest_shapes_val_panoptic_stuffonly" in DatasetCatalog.list()


def test_coco_panoptic_evaluator_scores_the_ground_truth_100_and_a_missed_shape_less(tiny_root, tmp_path, capsys):
    pytest.importorskip("panopticapi.evaluation", reason="panopticapi missing: run make setup")
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.evaluation import COCOPanopticEvaluator

    name = register_shapes_panoptic(tiny_root, TINY, prefix="unittest_shapes")["val"]
    meta = MetadataCatalog.get(name)
    pan = json.loads((tiny_root / "panoptic" / "val_panoptic.json").read_text())
    pan = {a["image_id"]: a for a in pan["annotations"]}
    stuff_contiguous = meta.stuff_dataset_id_to_contiguous_id

    def evaluate(drop_first_thing):
        evaluator = COCOPanopticEvaluator(name, str(tmp_path / f"eval{int(drop_first_thing)}"))
        evaluator.reset()
        for record in DatasetCatalog.get(name):
            ann = pan[record["image_id"]]
            rgb = np.asarray(Image.open(tiny_root / "panoptic" / "val_panoptic" / ann["file_name"]), dtype=np.int64)
            ids = torch.from_numpy(rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]).int()
            info = []
            for s in ann["segments_info"]:
                thing = s["category_id"] in meta.thing_dataset_id_to_contiguous_id
                if thing and drop_first_thing and not any(x["isthing"] for x in info):
                    ids[ids == s["id"]] = 0
                    drop_first_thing = False
                    continue
                category = (meta.thing_dataset_id_to_contiguous_id if thing else stuff_contiguous)[s["category_id"]]
                info.append({"id": s["id"], "isthing": thing, "category_id": category})
            evaluator.process([record], [{"panoptic_seg": (ids, info)}])
        return evaluator.evaluate()["panoptic_seg"]

    perfect = evaluate(False)
    assert perfect["PQ"] == pytest.approx(100) and perfect["SQ"] == pytest.approx(100)
    missed = evaluate(True)
    capsys.readouterr()
    assert missed["RQ_th"] < 100 and missed["PQ_st"] == pytest.approx(100)


def test_a_training_step_and_the_evaluators_on_panoptic_shapes(tiny_root, tmp_path):
    """The training loader brings "sem_seg", panoptic BlendMask trains on it, Trainer evaluates PQ."""
    from detectron2.evaluation import COCOPanopticEvaluator
    from detectron2.modeling import build_model

    from blendmask.data import build_train_loader
    from blendmask.engine import Trainer
    from conftest import tiny_cfg

    names = register_shapes_panoptic(tiny_root, TINY, prefix="unittest_shapes")
    levels = ["res2", "res3", "res4", "res5"]
    cfg = tiny_cfg(**{"MODEL.RESNETS.OUT_FEATURES": levels, "MODEL.FPN.IN_FEATURES": levels,
                      "MODEL.PANOPTIC_FPN.COMBINE.ENABLED": True, "MODEL.SEM_SEG_HEAD.NUM_CLASSES": 5,
                      "MODEL.SEM_SEG_HEAD.CONVS_DIM": 32, "INPUT.MIN_SIZE_TRAIN": (64,), "INPUT.MAX_SIZE_TRAIN": 64,
                      "SOLVER.IMS_PER_BATCH": 2, "DATALOADER.NUM_WORKERS": 0})
    cfg.DATASETS.TRAIN = (names["train"],)
    batch = next(iter(build_train_loader(cfg)))
    assert len(batch) == 2 and all(x["sem_seg"].shape == x["image"].shape[1:] for x in batch)
    assert set(torch.cat([x["sem_seg"].unique() for x in batch]).tolist()) <= set(range(5))
    torch.manual_seed(0)
    losses = build_model(cfg).train()(batch)
    assert "loss_sem_seg" in losses and all(torch.isfinite(v) for v in losses.values())
    evaluators = Trainer.build_evaluator(cfg, names["val"], str(tmp_path))
    assert any(isinstance(e, COCOPanopticEvaluator) for e in evaluators._evaluators)
