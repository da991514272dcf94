"""COCO evaluation where instance masks are ranked by their own score.

CenterMask with MaskIoU keeps FCOS's ``scores`` for boxes and adds ``mask_scores`` (score x
predicted mask IoU) for masks: bbox AP must use ``scores``, segm AP ``mask_scores``. This combines
two of detectron2's ``COCOEvaluator`` through their public interface: one sees the boxes (and the
keypoints) with ``scores``, the other the masks with ``mask_scores`` as their score. Models without
``mask_scores`` are evaluated by one ``COCOEvaluator``, exactly as detectron2 does.
"""

import os
import shutil
from collections import OrderedDict

from detectron2.evaluation import COCOEvaluator, DatasetEvaluator
from detectron2.utils import comm

MASK_SCORES = "mask_scores"
SEGM_RESULTS = "coco_instances_results_segm.json"


def _without_masks(instances):
    fields = {k: v for k, v in instances.get_fields().items() if k != "pred_masks"}
    return type(instances)(instances.image_size, **fields)


def _masks_by_mask_scores(instances):
    fields = {k: v for k, v in instances.get_fields().items() if k in ("pred_boxes", "pred_classes", "pred_masks")}
    return type(instances)(instances.image_size, scores=instances.mask_scores, **fields)


class MaskScoringCOCOEvaluator(DatasetEvaluator):
    """``COCOEvaluator`` (same arguments) that ranks segm results by ``Instances.mask_scores`` when
    the predictions have them. Writes, with an ``output_dir``, detectron2's files for the boxes and
    ``coco_instances_results_segm.json`` for the masks.

    Whether predictions have mask_scores is a property of the model (CenterMask with MaskIoU has
    them on every image, with or without detections): the first prediction decides."""

    def __init__(self, dataset_name, tasks=None, distributed=True, output_dir=None, **kwargs):
        self._args = dict(dataset_name=dataset_name, distributed=distributed, **kwargs)
        self._tasks = tuple(tasks) if tasks else None
        self._output_dir = output_dir
        self._plain = COCOEvaluator(tasks=tasks, output_dir=output_dir, **self._args)
        self._boxes = self._masks = None  # built at the first prediction with mask_scores

    def reset(self):
        self._plain.reset()
        self._boxes = self._masks = None

    def _split_evaluators(self):
        box_tasks = tuple(t for t in (self._tasks or ("bbox", "keypoints")) if t != "segm")
        segm_dir = os.path.join(self._output_dir, "segm_by_mask_scores") if self._output_dir else None
        # the box evaluator infers its tasks from the predictions (no masks given: bbox, keypoints)
        self._boxes = COCOEvaluator(tasks=box_tasks if self._tasks else None, output_dir=self._output_dir,
                                    **self._args)
        self._masks = COCOEvaluator(tasks=("segm",), output_dir=segm_dir, **self._args)
        self._boxes.reset()
        self._masks.reset()

    def process(self, inputs, outputs):
        for input, output in zip(inputs, outputs):
            instances = output.get("instances")
            if instances is None or not instances.has(MASK_SCORES) or not instances.has("pred_masks"):
                (self._boxes or self._plain).process([input], [output])
                continue
            if self._boxes is None:
                self._split_evaluators()
            self._boxes.process([input], [dict(output, instances=_without_masks(instances))])
            self._masks.process([input], [dict(output, instances=_masks_by_mask_scores(instances))])

    def evaluate(self, img_ids=None):
        # every process must take the same path (the evaluators gather across processes): one that
        # saw no prediction with mask_scores (no images) follows the others
        split = any(comm.all_gather(self._boxes is not None)) if self._args["distributed"] else self._boxes is not None
        if not split:
            return self._plain.evaluate(img_ids)
        if self._boxes is None:
            self._split_evaluators()
        results = OrderedDict(self._boxes.evaluate(img_ids) or {})
        segm = self._masks.evaluate(img_ids) or {}
        results.update(segm)
        if self._output_dir:
            segm_dir = os.path.join(self._output_dir, "segm_by_mask_scores")
            written = os.path.join(segm_dir, "coco_instances_results.json")
            if os.path.exists(written):
                shutil.move(written, os.path.join(self._output_dir, SEGM_RESULTS))
            shutil.rmtree(segm_dir, ignore_errors=True)
        return results
