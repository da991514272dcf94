"""Evaluation: detectron2's COCO evaluator, with segm AP ranked by ``mask_scores`` when a model has them."""

from .coco import MaskScoringCOCOEvaluator

__all__ = ["MaskScoringCOCOEvaluator"]
