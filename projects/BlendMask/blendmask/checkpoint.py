"""AdelaiDet checkpoints -> our model.

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
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np
import torch

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
