"""Export any model of the package (FCOS, BlendMask, panoptic BlendMask, CenterMask, SOLOv2, AggMask*),
post-processing included, to TorchScript and ONNX.

``ExportableModel(model)`` is the traceable single-image module; ``api`` builds it from a
config, reads images as it expects them, writes and runs the exports; ``compare`` checks exported
outputs against the eager model; ``panoptic_from_outputs`` turns panoptic BlendMask's outputs into
its panoptic map on the host. ``tools/export_model.py`` is the command line.
"""

from ..utils.deprecation import deprecated_names
from .api import (
    EXPORT_FILE_NAMES,
    ONNX_OPSET,
    build_model_from_cfg,
    export_and_load,
    export_onnx,
    export_torchscript,
    io_spec,
    load_torchscript,
    onnx_session,
    prepare_image,
    read_image,
    run_onnx,
    write_spec,
)
from .compare import compare_outputs, eager_predict, match_by_box
from .panoptic import panoptic_from_outputs
from .wrapper import INPUT_NAMES, OUTPUT_NAMES, ExportableModel

__all__ = [
    "EXPORT_FILE_NAMES",
    "ExportableModel",
    "INPUT_NAMES",
    "ONNX_OPSET",
    "OUTPUT_NAMES",
    "build_model_from_cfg",
    "compare_outputs",
    "eager_predict",
    "export_and_load",
    "export_onnx",
    "export_torchscript",
    "io_spec",
    "load_torchscript",
    "match_by_box",
    "onnx_session",
    "panoptic_from_outputs",
    "prepare_image",
    "read_image",
    "run_onnx",
    "write_spec",
]


__getattr__ = deprecated_names(__name__, {"ExportableBlendMask": lambda: ExportableModel})
