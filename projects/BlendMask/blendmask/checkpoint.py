"""Loading checkpoints: AdelaiDet conversion, weights-only reading, atomic saving.

Our module names are AdelaiDet's, so most checkpoints load as they are. What differs is handled
here, on load (a ``load_state_dict`` pre-hook on our meta-architectures, so MODEL.WEIGHTS just
works) and by ``tools/convert_adelaidet.py``:

- ``pixel_mean`` / ``pixel_std``: persistent buffers in older detectron2/AdelaiDet checkpoints;
  ours are configuration, not weights. Dropped.
- numpy arrays (detectron2 ``.pkl``-style files): converted to tensors.
- ``basis_module.seg_head.*`` when the model has no auxiliary head (BASIS_MODULE.LOSS_ON False,
  e.g. for inference): dropped with a note, since only training uses it.
"""

import logging
import os
import pickle
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer

from .utils.deprecation import deprecated_names

logger = logging.getLogger(__name__)

DROPPED_BUFFERS = ("pixel_mean", "pixel_std")
AUX_HEAD_PREFIX = "basis_module.seg_head."


def convert_adelaidet_state_dict(
    state_dict: Dict[str, object], model_keys: Optional[Iterable[str]] = None
) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """Return (converted state dict, notes on what changed). Does not modify its input.

    ``model_keys``: the target model's state-dict keys; when given, auxiliary-head weights the
    model does not have are dropped instead of being reported as unexpected.
    """
    model_keys = set(model_keys) if model_keys is not None else None
    out, notes = {}, []
    for key, value in state_dict.items():
        if key in DROPPED_BUFFERS:
            notes.append(f"dropped {key} (normalisation comes from MODEL.PIXEL_MEAN/PIXEL_STD)")
            continue
        if model_keys is not None and key.startswith(AUX_HEAD_PREFIX) and key not in model_keys:
            notes.append(f"dropped {key} (BASIS_MODULE.LOSS_ON is False: no auxiliary semantic head)")
            continue
        out[key] = torch.from_numpy(np.ascontiguousarray(value)) if isinstance(value, np.ndarray) else value
    return out, notes


def convert_on_load(module: torch.nn.Module) -> None:
    """Make ``module.load_state_dict`` accept AdelaiDet checkpoints (see the module docstring)."""

    def hook(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        if prefix:
            return
        converted, notes = convert_adelaidet_state_dict(state_dict, module.state_dict().keys())
        if notes:
            logger.info("AdelaiDet checkpoint conversion: " + "; ".join(_summarise(notes)))
        state_dict.clear()
        state_dict.update(converted)

    module._register_load_state_dict_pre_hook(hook)


def _summarise(notes: List[str]) -> List[str]:
    aux = [n for n in notes if AUX_HEAD_PREFIX in n]
    rest = [n for n in notes if AUX_HEAD_PREFIX not in n]
    if aux:
        rest.append(f"dropped {len(aux)} {AUX_HEAD_PREFIX}* tensors (BASIS_MODULE.LOSS_ON is False)")
    return rest



ALLOW_PICKLE_ENV = "BLENDMASK_ALLOW_PICKLE"


class CheckpointMismatchError(ValueError):
    """A checkpoint's tensors do not fit the model (e.g. another number of classes) at inference.

    ``mismatched``: the parameter names whose shapes differ; ``class_counts``: (classes in the
    checkpoint, classes in the model) when a class-specific layer is among them, else None."""

    def __init__(self, message: str, mismatched=(), class_counts=None):
        super().__init__(message)
        self.mismatched = list(mismatched)
        self.class_counts = class_counts


def _class_counts(incorrect_shapes, class_layers):
    """(classes in the checkpoint, classes in the model) from a class-specific layer of
    ``class_layers`` ((parameter name, rows beyond the classes), as the model declares them), or None."""
    for key, theirs, ours in incorrect_shapes:
        for name, extra in class_layers:
            if key == name or key.endswith("." + name):
                return theirs[0] - extra, ours[0] - extra
    return None


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint needs pickled Python objects (code could run) and pickle was not allowed."""


def _pickle_allowed() -> bool:
    return os.environ.get(ALLOW_PICKLE_ENV, "") in ("1", "true", "yes")


def _refuse(path: str, error: Exception) -> UnsafeCheckpointError:
    return UnsafeCheckpointError(
        f"{path} holds pickled Python objects, not only tensors, arrays and numbers "
        f"({type(error).__name__}: {str(error).splitlines()[0][:200]}). Loading it could run arbitrary code. "
        f"If you trust the file, set the environment variable {ALLOW_PICKLE_ENV}=1, or convert it once with "
        "tools/convert_adelaidet.py --allow-pickle."
    )


_PKL_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("collections", "OrderedDict"),
}


class _WeightsOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _PKL_ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")


class SafeCheckpointer(DetectionCheckpointer):
    """detectron2's checkpointer, made safer: weights-only loading and atomic saving.

    - ``.pkl`` files load with an unpickler that admits only numpy arrays and plain data; every
      other file (``.pth``, ``.pt``, ``.pyth``...) with ``torch.load(weights_only=True)``. A file
      needing anything else is refused with :class:`UnsafeCheckpointError` (BLENDMASK_ALLOW_PICKLE=1
      allows it).
    - ``save`` writes ``<name>.pth.tmp`` then renames it, so a kill mid-write never leaves a
      half-written checkpoint, nor a ``last_checkpoint`` naming one. ``extra`` (plain data, e.g.
      the training set's ``thing_classes``) is written into every checkpoint.
    - Tensors whose shape differs between the checkpoint and the model: with ``strict_shapes``
      (inference) loading fails with :class:`CheckpointMismatchError` naming them and, for the
      class-specific head, both class counts; otherwise (fine-tuning from weights trained on
      other classes) they keep their fresh initialisation, with one warning listing them.
    """

    def __init__(self, model, save_dir: str = "", *, strict_shapes: bool = False, extra=None, **checkpointables):
        super().__init__(model, save_dir, **checkpointables)
        self.strict_shapes = strict_shapes
        self.extra = dict(extra or {})
        self._loading = None

    def load(self, path: str, *args, **kwargs):
        if path:  # a URL: downloaded into the cache, checked against the model zoo's sha256 when one is known
            from .model_zoo.download import local_checkpoint

            path = local_checkpoint(path)
        self._loading = path
        try:
            return super().load(path, *args, **kwargs)
        finally:
            self._loading = None

    def _load_model(self, checkpoint):
        incompatible = super()._load_model(checkpoint)
        wrong = getattr(incompatible, "incorrect_shapes", None) or []
        if wrong:
            listed = ", ".join(f"{key} {tuple(theirs)} in the checkpoint, {tuple(ours)} in the model"
                               for key, theirs, ours in wrong[:6]) + (" ..." if len(wrong) > 6 else "")
            from .modeling.contract import class_layers_of  # here: modeling imports this module

            classes = _class_counts(wrong, class_layers_of(self.model))
            if self.strict_shapes:
                hint = (f" The checkpoint predicts {classes[0]} classes, the config {classes[1]}." if classes else "")
                raise CheckpointMismatchError(
                    f"{self._loading}: {len(wrong)} tensors do not fit the model this config builds ({listed})."
                    f"{hint} Use the config the weights were trained with: train_net.py saves it as "
                    "OUTPUT_DIR/config.yaml next to the weights.",
                    mismatched=[key for key, _, _ in wrong], class_counts=classes,
                )
            what = (f" (the class-specific layers: {classes[0]} classes in the checkpoint, {classes[1]} in the "
                    "config)" if classes else "")
            logger.warning(f"Fine-tuning from {self._loading}: {len(wrong)} tensors keep their fresh initialisation "
                           f"because their shapes differ{what}: {listed}",
                           extra={"reinitialised": [key for key, _, _ in wrong], "class_counts": classes})
        return incompatible

    def _load_file(self, filename):
        allow = _pickle_allowed()
        is_pkl = filename.endswith(".pkl")
        if allow and is_pkl:
            return super()._load_file(filename)
        try:
            # every other file (.pth, .pt, .pyth, .bin, no extension...) is a torch file
            with self.path_manager.open(filename, "rb") as f:
                if is_pkl:
                    data = _WeightsOnlyUnpickler(f, encoding="latin1").load()
                else:
                    loaded = torch.load(f, map_location=torch.device("cpu"), weights_only=not allow)
        except (pickle.UnpicklingError, RuntimeError, AttributeError) as e:
            raise _refuse(filename, e) from None
        if is_pkl:
            return _pkl_to_checkpoint(data)
        if filename.endswith(".pyth") and isinstance(loaded, dict) and "model_state" in loaded:  # pycls
            state = {k: v for k, v in loaded["model_state"].items() if not k.endswith("num_batches_tracked")}
            return {"model": state, "__author__": "pycls", "matching_heuristics": True}
        return loaded if isinstance(loaded, dict) and "model" in loaded else {"model": loaded}

    def save(self, name: str, **kwargs) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        data.update({key: obj.state_dict() for key, obj in self.checkpointables.items()})
        data.update(self.extra)
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        _atomic_write(save_file, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        path = os.path.join(self.save_dir, "last_checkpoint")
        _atomic_write(path, lambda f: f.write(last_filename_basename.encode()))


def _pkl_to_checkpoint(data):
    """detectron2 model-zoo ``.pkl`` ({"model", "__author__"}) or Detectron ({"blobs"}) layout."""
    if isinstance(data, dict) and "model" in data and "__author__" in data:
        return {"model": data["model"], "__author__": data["__author__"], "matching_heuristics": True}
    if isinstance(data, dict) and "blobs" in data:
        data = data["blobs"]
    data = {k: v for k, v in data.items() if not k.endswith("_momentum")}
    return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}


def _atomic_write(path: str, write) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


__getattr__ = deprecated_names(__name__, {"BlendMaskCheckpointer": lambda: SafeCheckpointer})
