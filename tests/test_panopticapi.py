"""panopticapi (installed from panopticapi-lite without its numpy<2 pin) computes PQ right under our numpy."""

import json

import numpy as np
import pytest
from PIL import Image


def _save(folder, name, ids):
    """COCO panoptic PNG: id = R + 256 G + 256^2 B."""
    rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)
    Image.fromarray(rgb).save(folder / name)


def test_pq_compute_on_a_hand_made_case(tmp_path, capsys):
    """4 x 8 image. Ground truth: things A (id 1, 2x2 top left) and C (id 2, 2x2 top right), stuff B
    (id 3) elsewhere. Prediction: thing a = A plus one pixel below (IoU 4/5), a thing d (2 px) where
    the ground truth is stuff (false positive), C missed (false negative), stuff b over the rest
    (IoU 21/28 with B). By hand: things PQ = 0.8 / (1 + 1/2 + 1/2) = 0.4, SQ 0.8, RQ 0.5; stuff
    PQ = SQ = 0.75, RQ 1; all: PQ 0.575, SQ 0.775, RQ 0.75."""
    evaluation = pytest.importorskip("panopticapi.evaluation", reason="panopticapi missing: run make setup")
    gt = np.full((4, 8), 3)
    gt[0:2, 0:2] = 1
    gt[0:2, 6:8] = 2
    pred = np.full((4, 8), 30)
    pred[0:2, 0:2] = 10
    pred[2, 0] = 10
    pred[0, 3:5] = 40
    for folder in ("gt", "pred"):
        (tmp_path / folder).mkdir()
    _save(tmp_path / "gt", "im.png", gt)
    _save(tmp_path / "pred", "im.png", pred)
    categories = [{"id": 1, "name": "shape", "isthing": 1}, {"id": 2, "name": "ground", "isthing": 0}]
    image = {"id": 7, "file_name": "im.jpg", "height": 4, "width": 8}

    def write(name, segments):
        path = tmp_path / name
        path.write_text(json.dumps({"images": [image], "categories": categories, "annotations": [
            {"image_id": 7, "file_name": "im.png", "segments_info": segments}]}))
        return str(path)

    gt_json = write("gt.json", [{"id": 1, "category_id": 1, "iscrowd": 0, "area": 4},
                                {"id": 2, "category_id": 1, "iscrowd": 0, "area": 4},
                                {"id": 3, "category_id": 2, "iscrowd": 0, "area": 24}])
    pred_json = write("pred.json", [{"id": 10, "category_id": 1}, {"id": 40, "category_id": 1},
                                    {"id": 30, "category_id": 2}])
    results = evaluation.pq_compute(gt_json, pred_json, str(tmp_path / "gt"), str(tmp_path / "pred"))
    capsys.readouterr()
    expected = {"All": (0.575, 0.775, 0.75), "Things": (0.4, 0.8, 0.5), "Stuff": (0.75, 0.75, 1.0)}
    for group, (pq, sq, rq) in expected.items():
        got = results[group]
        assert (got["pq"], got["sq"], got["rq"]) == pytest.approx((pq, sq, rq), abs=1e-9), group
    assert results["per_class"][1]["pq"] == pytest.approx(0.4) and results["per_class"][2]["pq"] == pytest.approx(0.75)
