"""COCO evaluation where instance masks are ranked by their own score.

CenterMask with MaskIoU keeps FCOS's ``scores`` for boxes and adds ``mask_scores`` (score x
predicted mask IoU) for masks: bbox AP must use ``scores``, segm AP ``mask_scores``. This wraps
detectron2's ``COCOEvaluator``: predictions are converted and evaluated by it, once for the box
tasks with ``scores`` and once for "segm" with ``mask_scores`` in the COCO results' "score".
Models without ``mask_scores`` are evaluated exactly as by ``COCOEvaluator``.
"""

import json
import os

from detectron2.evaluation import COCOEvaluator

MASK_SCORES = "mask_scores"


class MaskScoringCOCOEvaluator(COCOEvaluator):
    """``COCOEvaluator`` that ranks segm results by ``Instances.mask_scores`` when present."""

    def process(self, inputs, outputs):
        for input, output in zip(inputs, outputs):
            before = len(self._predictions)
            super().process([input], [output])
            instances = output.get("instances")
            if len(self._predictions) > before and instances is not None and instances.has(MASK_SCORES):
                self._predictions[-1][MASK_SCORES] = instances.mask_scores.detach().cpu().tolist()

    def _eval_predictions(self, predictions, img_ids=None):
        if not any(MASK_SCORES in p for p in predictions):
            return super()._eval_predictions(predictions, img_ids=img_ids)
        # COCO results of the masks with mask_scores as their score (copies: the parent rewrites
        # category ids in place)
        segm_predictions = [
            dict(p, instances=[dict(r, score=s) for r, s in zip(p["instances"], p.get(MASK_SCORES, []))])
            if MASK_SCORES in p else dict(p, instances=[dict(r) for r in p["instances"]])
            for p in predictions
        ]
        results = [r for p in predictions for r in p["instances"]]
        tasks = list(self._tasks or self._tasks_from_predictions(results))
        saved_tasks, saved_dir = self._tasks, self._output_dir
        try:
            box_tasks = [t for t in tasks if t != "segm"]
            if box_tasks:
                self._tasks = box_tasks
                super()._eval_predictions(predictions, img_ids=img_ids)
            if "segm" in tasks:
                self._tasks, self._output_dir = ["segm"], None
                super()._eval_predictions(segm_predictions, img_ids=img_ids)
                if saved_dir:
                    path = os.path.join(saved_dir, "coco_instances_results_segm.json")
                    with open(path, "w") as f:
                        json.dump([r for p in segm_predictions for r in p["instances"]], f)
        finally:
            self._tasks, self._output_dir = saved_tasks, saved_dir
