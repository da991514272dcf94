"""Reduced-precision inference and training, written once for every model.

Inference (``TEST.PRECISION``): ``fp32`` (default), ``bf16``, ``fp16`` or ``auto``. A model runs
its ``forward`` in eval mode under ``torch.autocast`` with the resolved dtype: convolutions and
matrix products (backbone, heads, basis module, mask heads) run in reduced precision, while the
post-processing that decides what is detected runs in float32 (see ``float32`` and
``autocast_disabled``, called by the shared inference code). Scores, boxes and masks come back
float32 whatever the precision.

``auto`` picks bfloat16 on a CPU with native bfloat16 instructions (AVX512-BF16 or AMX), float16 on
CUDA; a precision the device cannot run natively (bf16 on a CPU without AVX512-BF16/AMX, where
oneDNN emulates it and runs slower than float32; fp16 on a CPU without AMX-FP16) logs a warning and
runs float32.

Training (``SOLVER.AMP.ENABLED``): see :func:`training_autocast` and :class:`blendmask.engine.amp`.
"""

import contextlib
import functools
import logging
from typing import Any, Optional

import torch
from torch import nn

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_NAMES = {dtype: name for name, dtype in _DTYPES.items()}


@functools.cache
def _cpu_flags() -> frozenset:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (x86 AVX512-BF16 or AMX-BF16, Arm BF16)."""
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    if probe is not None and probe():
        return True
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    if amx is not None and amx():
        return True
    flags = _cpu_flags()
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def cpu_has_native_fp16() -> bool:
    """Whether this CPU computes float16 convolutions natively (AMX-FP16)."""
    probe = getattr(torch.cpu, "_is_amx_fp16_supported", None)
    if probe is not None and probe():
        return True
    return "amx_fp16" in _cpu_flags()


def precision_name(dtype: torch.dtype) -> str:
    return _NAMES[dtype]


def resolve_precision(precision: str, device="cpu", warn: bool = True) -> torch.dtype:
    """The dtype ``precision`` (a ``TEST.PRECISION`` value) runs in on ``device``.

    ``auto``: bfloat16 on CPUs with native bfloat16, float16 on CUDA (bfloat16 on other GPU types
    that autocast supports), float32 elsewhere. A reduced precision the device lacks natively
    logs a warning (when ``warn``) and gives float32: emulated bfloat16 is slower than float32.
    """
    name = str(precision).lower()
    if name not in PRECISIONS:
        raise ValueError(f"TEST.PRECISION must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device_type = torch.device(device).type
    if name == "auto":
        if device_type == "cuda":
            return torch.float16
        if device_type == "cpu":
            return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
        return torch.float32
    dtype = _DTYPES[name]
    if device_type == "cpu" and dtype is not torch.float32:
        native = cpu_has_native_bf16() if dtype is torch.bfloat16 else cpu_has_native_fp16()
        if not native:
            if warn:
                logger.warning(f"precision {name} requested, but this CPU has no native {name} instructions "
                               "(it would be emulated, slower than float32): running float32")
            return torch.float32
    return dtype


def autocast(dtype: torch.dtype, device_type: str):
    """``torch.autocast(device_type, dtype)``, or a no-op for float32."""
    if dtype is torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=dtype)


def autocast_disabled(device_type: str = "cpu"):
    """Leave autocast for the enclosed code (a no-op when autocast is off, as in float32 and export).

    Code under it must cast its reduced-precision inputs up itself (:func:`float32`)."""
    if not torch.is_autocast_enabled(device_type):
        return contextlib.nullcontext()
    return torch.autocast(device_type, enabled=False)


def float32(value: Any) -> Any:
    """``value`` with its floating tensors of another dtype cast to float32 (lists, tuples and dicts
    are walked; float32 tensors are returned as they are, so export graphs do not change)."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() and value.dtype != torch.float32 else value
    if isinstance(value, dict):
        return {k: float32(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(float32(v) for v in value)
    return value


def _instances_float32(value: Any) -> Any:
    """Outputs of a model's forward with every floating tensor float32 (Instances fields included)."""
    from detectron2.structures import Boxes, Instances

    if isinstance(value, Instances):
        for name, field in list(value.get_fields().items()):
            if isinstance(field, torch.Tensor) and field.is_floating_point() and field.dtype != torch.float32:
                value.set(name, field.float())
            elif isinstance(field, Boxes) and field.tensor.dtype != torch.float32:
                value.set(name, Boxes(field.tensor.float()))
        return value
    if isinstance(value, torch.Tensor):
        return float32(value)
    if isinstance(value, dict):
        return {k: _instances_float32(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_instances_float32(v) for v in value)
    return value


def _model_device_type(model: nn.Module) -> str:
    for tensor in model.parameters():
        return tensor.device.type
    for tensor in model.buffers():
        return tensor.device.type
    return "cpu"


class _InferencePrecision:
    """Forward hooks of a model: autocast around an eval-mode forward, outputs cast to float32."""

    def __init__(self, precision: str):
        self.precision = precision
        self._resolved = {}  # device type -> dtype (resolved once per device type: one warning)
        self._active = []

    def dtype(self, device_type: str) -> torch.dtype:
        if device_type not in self._resolved:
            self._resolved[device_type] = resolve_precision(self.precision, device_type)
        return self._resolved[device_type]

    def pre_hook(self, module, args):
        if module.training:
            self._active.append(None)
            return
        device_type = _model_device_type(module)
        context = autocast(self.dtype(device_type), device_type)
        context.__enter__()
        self._active.append(context)

    def hook(self, module, args, output):
        context = self._active.pop() if self._active else None
        if context is None:
            return output
        context.__exit__(None, None, None)
        return _instances_float32(output)


def set_inference_precision(model: nn.Module, precision: str = "fp32") -> nn.Module:
    """Make ``model`` (any detectron2 model) run its eval-mode forward in ``precision``
    (a ``TEST.PRECISION`` value); training-mode forwards are left alone. Calling it again replaces
    the previous setting. Returns ``model``.

    The choice is resolved against the model's device at the first forward on that device type,
    with a warning when the device lacks the precision natively (then float32).
    """
    name = str(precision).lower()
    if name not in PRECISIONS:
        raise ValueError(f"TEST.PRECISION must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    for handle in getattr(model, "_precision_handles", ()):
        handle.remove()
    model._precision_handles = ()
    model.inference_precision = name
    if name == "fp32":
        return model
    state = _InferencePrecision(name)
    model._precision_handles = (
        model.register_forward_pre_hook(state.pre_hook),
        model.register_forward_hook(state.hook, always_call=True),
    )
    return model


def inference_dtype(model: nn.Module, device_type: Optional[str] = None) -> torch.dtype:
    """The dtype ``model``'s eval-mode forward runs in (after :func:`set_inference_precision`)."""
    name = getattr(model, "inference_precision", "fp32")
    return resolve_precision(name, device_type or _model_device_type(model), warn=False)
