"""Where this package reaches into detectron2 beyond its public API, in one place.

Each function names the detectron2 internal it relies on and what happens when a detectron2
release moves it; tests/test_compat.py checks each one against the installed detectron2.
"""

import logging

logger = logging.getLogger(__name__)


def use_official_coco_eval_without_compiled_ops() -> bool:
    """On a detectron2 without its compiled ops (a python-only build), make ``COCOEvaluator``'s
    default fast path (``use_fast_impl=True``, what detectron2's tutorial uses) run pycocotools'
    official ``COCOeval`` instead of the C++ ``COCOeval_opt``, which would raise at the first
    evaluation. Relies on ``detectron2.evaluation.coco_evaluation`` looking ``COCOeval_opt`` up as
    a module global when it evaluates (0.6 and main). Returns whether it switched; a detectron2
    whose module has no such global is left alone."""
    from .utils.env import detectron2_has_compiled_ops

    if detectron2_has_compiled_ops():
        return False
    try:
        from detectron2.evaluation import coco_evaluation
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        return False
    if not hasattr(coco_evaluation, "COCOeval_opt"):
        return False
    if coco_evaluation.COCOeval_opt is not COCOeval:
        coco_evaluation.COCOeval_opt = COCOeval
        logger.debug("python-only detectron2: COCOEvaluator's fast path runs pycocotools' COCOeval")
    return True
