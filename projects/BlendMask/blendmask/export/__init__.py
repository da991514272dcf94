"""Export any model of the package (FCOS, BlendMask, panoptic BlendMask, CenterMask, SOLOv2, AggMask*),
post-processing included, to TorchScript and ONNX.

``ExportableModel(model)`` is the traceable single-image module; ``api`` builds it from a
config, reads images as it expects them, writes and runs the exports; ``compare`` checks exported
outputs against the eager model; ``panoptic_from_outputs`` turns panoptic BlendMask's outputs into
its panoptic map on the host; ``reduced`` traces TorchScript in bfloat16 and ``quantize`` makes the
ONNX file int8. ``tools/export_model.py`` is the command line.
"""

from ..utils.deprecation import deprecated_names
from .api import (
    EXPORT_FILE_NAMES,
    ONNX_OPSET,
    build_model_from_cfg,
    export_and_load,
    export_onnx,
    export_onnx_int8,
    export_torchscript,
    io_spec,
    load_torchscript,
    onnx_session,
    prepare_image,
    read_image,
    run_onnx,
    write_spec,
)
from .compare import (
    CONFIDENT_SCORE,
    INT8_MIN_MASK_IOU,
    INT8_MIN_MATCHED,
    agreement_row,
    compare_outputs,
    eager_predict,
    match_by_box,
    outputs_to_instances,
    within_int8_bounds,
)
from .panoptic import panoptic_from_outputs
from .quantize import INT8_SCOPES, quantize_onnx
from .reduced import (
    EXPORT_PRECISIONS,
    PRECISION_BACKENDS,
    check_export_precision,
    eager_autocast,
    export_torchscript_bf16,
)
from .wrapper import INPUT_NAMES, OUTPUT_NAMES, ExportableModel

__all__ = [
    "CONFIDENT_SCORE",
    "EXPORT_FILE_NAMES",
    "EXPORT_PRECISIONS",
    "ExportableModel",
    "INPUT_NAMES",
    "INT8_MIN_MASK_IOU",
    "INT8_MIN_MATCHED",
    "INT8_SCOPES",
    "ONNX_OPSET",
    "OUTPUT_NAMES",
    "PRECISION_BACKENDS",
    "agreement_row",
    "build_model_from_cfg",
    "check_export_precision",
    "compare_outputs",
    "eager_autocast",
    "eager_predict",
    "export_and_load",
    "export_onnx",
    "export_onnx_int8",
    "export_torchscript",
    "export_torchscript_bf16",
    "io_spec",
    "load_torchscript",
    "match_by_box",
    "onnx_session",
    "outputs_to_instances",
    "panoptic_from_outputs",
    "prepare_image",
    "quantize_onnx",
    "read_image",
    "run_onnx",
    "within_int8_bounds",
    "write_spec",
]


__getattr__ = deprecated_names(__name__, {"ExportableBlendMask": lambda: ExportableModel})
