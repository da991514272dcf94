"""What users run: the training loop, model loading and single-image prediction.

- :class:`Trainer`: detectron2's ``DefaultTrainer`` with weights-only checkpoints, a training
  loader that skips unreadable images and the optimizer state saved for ``--resume``.
- :func:`build_model_and_load`: the model a config describes, with its weights loaded safely.
- :class:`Predictor`: one image in, ``{"instances": ...}`` out (a safe ``DefaultPredictor``).
- :func:`register_datasets`: ``--coco-dataset`` datasets and the built-in shapes dataset.

Every path here reads checkpoints through :class:`blendmask.checkpoint.SafeCheckpointer`:
a file that would need pickled code is refused unless ``BLENDMASK_ALLOW_PICKLE=1`` is set.
"""

from .build import build_model_and_load
from .datasets import register_datasets
from .predictor import Predictor
from .trainer import Trainer

__all__ = ["Predictor", "Trainer", "build_model_and_load", "register_datasets"]
