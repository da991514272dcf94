"""Reduced-precision exports: which export offers which precision, and TorchScript in bfloat16 (the
export module traced under bfloat16 autocast).

Tracing records what autocast does at run time: each convolution and matrix product (backbone,
FPN, heads, basis module, attention) gets its weights and inputs cast to bfloat16, and the
model's inference code casts back to float32 where it leaves autocast (FCOS decoding, NMS, the
top-k, box scaling, pasting; see :mod:`blendmask.engine.precision`). The saved graph holds those
casts, so it runs in that precision without autocast, on any torch, and computes what the eager
model computes with ``TEST.PRECISION bf16``, bit for bit. Inputs and outputs are the float32
export's (:class:`~blendmask.export.wrapper.ExportableModel`).

Where it pays: CPUs with native bfloat16 (AVX512-BF16, AMX); elsewhere the casts are emulated and
the file runs slower than the float32 one. :func:`check_export_precision` says which export offers
which precision (int8 is the ONNX file's, :mod:`blendmask.export.quantize`). docs/export.md ("Export
in reduced precision") has the speed and the agreement measured.
"""

from pathlib import Path

import torch

from .wrapper import ExportableModel

EXPORT_PRECISIONS = ("fp32", "bf16", "int8")
PRECISION_BACKENDS = {"bf16": "torchscript", "int8": "onnx"}  # the one backend offering each reduced precision
_WHY_NOT = {  # why the other backend does not
    "bf16": "the ONNX export offers int8 instead (onnxruntime's CPU provider has no bfloat16 convolutions)",
    "int8": "TorchScript offers bf16 instead (int8 is onnxruntime's static quantization of the ONNX file, "
            "blendmask.export.quantize)",
}


def check_export_precision(precision: str, backend: str) -> None:
    """Refuse a precision that ``backend`` ("torchscript" or "onnx") does not offer, with the reason:
    bf16 is TorchScript's (this module), int8 is ONNX's (:mod:`blendmask.export.quantize`)."""
    if precision not in EXPORT_PRECISIONS:
        raise ValueError(f"export precision must be one of {', '.join(EXPORT_PRECISIONS)}, got {precision!r}")
    offered = PRECISION_BACKENDS.get(precision, backend)
    if backend != offered:
        raise ValueError(f"precision {precision} is offered for {offered} only: {_WHY_NOT[precision]}")


def export_torchscript_bf16(module: ExportableModel, image: torch.Tensor, output_size: torch.Tensor, path) -> Path:
    """Trace ``module`` on one sample under bfloat16 autocast and save it (see the module doc)."""
    from .api import quiet_export_warnings

    path = Path(path)
    with torch.no_grad(), quiet_export_warnings(), torch.autocast("cpu", dtype=torch.bfloat16):
        traced = torch.jit.trace(module.eval(), (image, output_size), check_trace=False)
    torch.jit.save(traced, str(path))
    return path


def eager_autocast(precision: str):
    """The autocast the eager model runs under to compute what an export in ``precision`` computes
    (``--verify`` compares the two): bfloat16 autocast for "bf16"; nothing for "fp32" and "int8"
    (no eager model computes in int8: the int8 file is compared with the float32 model)."""
    import contextlib

    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()
