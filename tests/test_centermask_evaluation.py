"""COCO evaluation ranks masks by mask_scores (CenterMask with MaskIoU) and boxes by scores."""

import json

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.evaluation import coco_evaluation
from detectron2.structures import Boxes, Instances

from blendmask.evaluation import MaskScoringCOCOEvaluator


@pytest.fixture
def toy_dataset(tmp_path):
    """One 20x20 image with one 10x10 square of category id 7."""
    name = f"cm_eval_toy_{tmp_path.name}"
    ann = {
        "images": [{"id": 1, "file_name": "a.png", "height": 20, "width": 20}],
        "categories": [{"id": 7, "name": "square"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [5, 5, 10, 10], "area": 100,
                         "iscrowd": 0, "segmentation": [[5, 5, 15, 5, 15, 15, 5, 15]]}],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(ann))
    register_coco_instances(name, {}, str(path), str(tmp_path))
    DatasetCatalog.get(name)  # sets the metadata (thing classes, id mapping)
    yield name
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def _outputs(with_mask_scores=True):
    inst = Instances((20, 20))
    inst.pred_boxes = Boxes(torch.tensor([[5.0, 5.0, 15.0, 15.0], [0.0, 0.0, 8.0, 8.0]]))
    inst.scores = torch.tensor([0.4, 0.9])
    inst.pred_classes = torch.tensor([0, 0])
    masks = torch.zeros(2, 20, 20, dtype=torch.bool)
    masks[0, 5:15, 5:15] = True
    masks[1, 0:8, 0:8] = True
    inst.pred_masks = masks
    if with_mask_scores:
        inst.mask_scores = torch.tensor([0.8, 0.1])
    return [{"instances": inst}]


def _spy(monkeypatch):
    calls = []
    original = coco_evaluation._evaluate_predictions_on_coco

    def spy(coco_gt, coco_results, iou_type, **kwargs):
        calls.append((iou_type, sorted((r["score"] for r in coco_results), reverse=True),
                      {r["category_id"] for r in coco_results}))
        return original(coco_gt, coco_results, iou_type, **kwargs)

    monkeypatch.setattr(coco_evaluation, "_evaluate_predictions_on_coco", spy)
    return calls


def test_segm_uses_mask_scores_and_bbox_uses_scores(toy_dataset, monkeypatch, tmp_path):
    calls = _spy(monkeypatch)
    evaluator = MaskScoringCOCOEvaluator(toy_dataset, output_dir=str(tmp_path / "eval"), use_fast_impl=False)
    evaluator.reset()
    evaluator.process([{"image_id": 1, "height": 20, "width": 20}], _outputs())
    results = evaluator.evaluate()
    by_task = {task: (scores, cats) for task, scores, cats in calls}
    assert by_task["bbox"][0] == pytest.approx([0.9, 0.4])
    assert by_task["segm"][0] == pytest.approx([0.8, 0.1])
    assert by_task["bbox"][1] == by_task["segm"][1] == {7}  # category ids mapped once for each task
    assert set(results) == {"bbox", "segm"}
    # the correct detection ranks first by mask score (perfect segm AP) but second by box score
    # (a false positive first: precision 1/2 at full recall)
    assert results["segm"]["AP"] == pytest.approx(100.0)
    assert results["bbox"]["AP"] == pytest.approx(50.0)
    assert (tmp_path / "eval" / "coco_instances_results_segm.json").exists()


def test_without_mask_scores_it_is_detectron2s_evaluator(toy_dataset, monkeypatch):
    calls = _spy(monkeypatch)
    evaluator = MaskScoringCOCOEvaluator(toy_dataset, use_fast_impl=False)
    evaluator.reset()
    evaluator.process([{"image_id": 1, "height": 20, "width": 20}], _outputs(with_mask_scores=False))
    evaluator.evaluate()
    assert {task: scores for task, scores, _ in calls} == {"bbox": pytest.approx([0.9, 0.4]),
                                                          "segm": pytest.approx([0.9, 0.4])}


def test_the_trainer_builds_it(toy_dataset, tmp_path):
    from blendmask import get_cfg
    from blendmask.engine import Trainer

    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(tmp_path)
    assert isinstance(Trainer.build_evaluator(cfg, toy_dataset), MaskScoringCOCOEvaluator)
