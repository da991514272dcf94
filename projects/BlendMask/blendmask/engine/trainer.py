"""The trainer behind ``train_net.py`` and ``tools/main_job.py``."""

import logging
import os
import weakref

from detectron2.data import MetadataCatalog
from detectron2.engine import DefaultTrainer, TrainerBase
from detectron2.evaluation import COCOPanopticEvaluator, DatasetEvaluators

from ..checkpoint import SafeCheckpointer
from ..compat import replace_create_ddp_model, replace_training_loop, training_loop_of
from ..data import build_test_loader, build_train_loader
from ..evaluation import MaskScoringCOCOEvaluator
from ..utils.env import detectron2_has_compiled_ops
from .amp import MixedPrecisionTrainer
from .launch import create_ddp_model
from .precision import set_inference_precision

logger = logging.getLogger(__name__)

# detectron2 0.6's DefaultTrainer leaves the optimizer (momentum buffers, current learning rates)
# out of its checkpoints, so a resumed run would restart SGD momentum from zero and run its first
# iteration at the initial learning rate; later detectron2 saves it under "_trainer".
_D2_SAVES_OPTIMIZER = DefaultTrainer.state_dict is not TrainerBase.state_dict


def checkpoint_metadata(cfg) -> dict:
    """Plain data saved in every training checkpoint: "thing_classes" (the training set's class
    names, when its metadata has them) and "config" (the config as yaml text)."""
    from ..data import thing_classes_of

    classes = thing_classes_of(cfg.DATASETS.TRAIN)
    return {"thing_classes": list(classes) if classes else [], "config": cfg.dump()}


class Trainer(DefaultTrainer):
    """detectron2's ``DefaultTrainer`` (any detectron2 model) with:

    - checkpoints read weights-only and written atomically (``SafeCheckpointer``), for
      ``resume_or_load`` and the periodic checkpoints alike;
    - training and evaluation loaders that skip records whose image cannot be read, with a
      warning naming it;
    - the optimizer state saved under ``"_trainer"`` (the layout of later detectron2), so
      ``--resume`` continues with the same momentum and learning rate;
    - several processes on CPUs (gloo) as well as GPUs: the model is wrapped by
      :func:`blendmask.engine.launch.create_ddp_model` (no ``device_ids`` for a CPU model, SyncBN as
      ``NaiveSyncBatchNorm`` there), not by detectron2's;
    - ``SOLVER.AMP.ENABLED`` on CPUs (bfloat16) as well as GPUs (float16 with a gradient scaler, or
      ``SOLVER.AMP.PRECISION bf16``): :class:`~blendmask.engine.amp.MixedPrecisionTrainer`;
    - ``--resume`` from a checkpoint without optimizer state (detectron2 0.6's) on any detectron2;
    - ``COCOEvaluator`` on its fast path only when detectron2's compiled ops are installed, with
      segm results ranked by ``mask_scores`` when the model has them (``MaskScoringCOCOEvaluator``);
      on panoptic datasets (``evaluator_type`` "coco_panoptic_seg") also ``COCOPanopticEvaluator`` (PQ).
    """

    def __init__(self, cfg):
        # DefaultTrainer.__init__ wraps the model with detectron2's create_ddp_model: ours instead
        with replace_create_ddp_model(create_ddp_model):
            super().__init__(cfg)
        if cfg.SOLVER.AMP.ENABLED:  # detectron2's AMPTrainer runs on CUDA only: ours on CPUs too
            d2 = training_loop_of(self)
            replace_training_loop(self, MixedPrecisionTrainer(d2.model, d2.data_loader, d2.optimizer,
                                                              cfg.SOLVER.AMP.get("PRECISION", "auto")))

    def build_hooks(self):
        # DefaultTrainer.__init__ calls this before anything loads, so every load and save uses it.
        # Each checkpoint carries the class names and the config it was trained with, so the weights
        # alone tell the demo, the predictor and the export what the classes are.
        self.checkpointer = SafeCheckpointer(
            self.checkpointer.model, self.cfg.OUTPUT_DIR, trainer=weakref.proxy(self),
            extra=checkpoint_metadata(self.cfg),
        )
        return super().build_hooks()

    @classmethod
    def build_model(cls, cfg):
        # TEST.PRECISION for evaluation (--eval-only, EVAL_PERIOD), any meta-architecture
        model = super().build_model(cfg)
        return set_inference_precision(model, cfg.TEST.get("PRECISION", "fp32"))

    @classmethod
    def build_train_loader(cls, cfg):
        return build_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_test_loader(cfg, dataset_name)

    def state_dict(self):
        state = super().state_dict()
        if "_trainer" not in state:
            state["_trainer"] = training_loop_of(self).state_dict()
        return state

    def load_state_dict(self, state_dict):
        if "_trainer" not in state_dict:  # detectron2 after 0.6 would raise KeyError
            TrainerBase.load_state_dict(self, state_dict)  # the iteration and the hooks' state
            logger.warning("the checkpoint has no optimizer state: SGD momentum restarts from zero")
            return
        super().load_state_dict(state_dict)
        if not _D2_SAVES_OPTIMIZER:
            training_loop_of(self).load_state_dict(state_dict["_trainer"])

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        # segm AP ranks masks by mask_scores when the model predicts them (CenterMask with MaskIoU)
        coco = MaskScoringCOCOEvaluator(dataset_name, output_dir=output_folder,
                                        use_fast_impl=detectron2_has_compiled_ops())
        if MetadataCatalog.get(dataset_name).get("evaluator_type") == "coco_panoptic_seg":
            return DatasetEvaluators([COCOPanopticEvaluator(dataset_name, output_folder), coco])
        return coco


