"""Where this package reaches into detectron2 beyond its public API, in one place.

Each function names the detectron2 internal it relies on and what happens when a detectron2
release moves it; tests/test_compat.py checks each one against the installed detectron2.
"""

import contextlib
import logging
from typing import Callable

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


@contextlib.contextmanager
def replace_create_ddp_model(create_ddp_model: Callable):
    """While the block runs, ``detectron2.engine.defaults.create_ddp_model`` (what
    ``DefaultTrainer.__init__`` wraps the model with, 0.6 and main) is ``create_ddp_model``.
    A detectron2 without that module global raises an AttributeError naming it."""
    import detectron2.engine.defaults as defaults

    if not hasattr(defaults, "create_ddp_model"):
        raise AttributeError("detectron2.engine.defaults.create_ddp_model is gone: blendmask's Trainer "
                             "cannot put its DDP wrapper in place on this detectron2")
    theirs = defaults.create_ddp_model
    defaults.create_ddp_model = create_ddp_model
    try:
        yield
    finally:
        defaults.create_ddp_model = theirs


def set_local_process_group_0_6(group) -> None:
    """detectron2 0.6 has no ``comm.create_local_process_group``: set the group its ``comm`` reads
    (``comm._LOCAL_PROCESS_GROUP``) for this process."""
    from detectron2.utils import comm

    comm._LOCAL_PROCESS_GROUP = group


def insert_first_hook(trainer, hook) -> None:
    """Put ``hook`` before every hook of ``trainer`` (detectron2's ``register_hooks`` appends;
    ``TrainerBase._hooks`` is the list it runs, 0.6 and main)."""
    import weakref

    hook.trainer = weakref.proxy(trainer)
    trainer._hooks.insert(0, hook)


def set_metric_printers_max_iter(trainer, max_iter: int) -> int:
    """Make the ``CommonMetricPrinter`` writers of ``trainer``'s hooks compute their ETA for
    ``max_iter`` iterations (their ``_max_iter``; the writers sit in ``PeriodicWriter._writers``).
    Returns how many printers were changed (0 when detectron2 renamed them: the ETA is then the
    configured iterations', nothing else changes)."""
    from detectron2.utils.events import CommonMetricPrinter

    changed = 0
    for hook in getattr(trainer, "_hooks", ()):
        for writer in getattr(hook, "_writers", ()):
            if isinstance(writer, CommonMetricPrinter) and hasattr(writer, "_max_iter"):
                writer._max_iter = max_iter
                changed += 1
    return changed


def training_loop_of(trainer):
    """The ``SimpleTrainer``-like loop a ``DefaultTrainer`` runs its steps with
    (``DefaultTrainer._trainer``, 0.6 and main; its state is saved under "_trainer")."""
    return trainer._trainer


def replace_training_loop(trainer, loop) -> None:
    """Make ``trainer`` (a ``DefaultTrainer``) run its steps with ``loop`` (e.g. our mixed-precision
    loop in place of the ``SimpleTrainer``/``AMPTrainer`` it built)."""
    trainer._trainer = loop


def next_batch(loop):
    """The next batch of a ``SimpleTrainer``'s data loader (its ``_data_loader_iter``, which
    detectron2's own ``AMPTrainer`` reads too; created on first use on main)."""
    return next(loop._data_loader_iter)


def write_step_metrics(loop, loss_dict, data_time: float) -> None:
    """``SimpleTrainer._write_metrics``: the losses and data time of a step to the event storage
    (reduced across processes), as detectron2's ``AMPTrainer`` writes them."""
    loop._write_metrics(loss_dict, data_time)
