"""Build the exportable module from a config, read images as the model expects, write and run exports."""

import json
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Tuple, Union

import numpy as np
import torch
from torch import nn

from ..modeling.contract import model_outputs
from .wrapper import INPUT_NAMES, OUTPUT_NAMES, ExportableModel

ONNX_OPSET = 17  # RoiAlign with half_pixel (ROIAlignV2) needs >= 16, GridSample >= 16


def build_model_from_cfg(cfg) -> nn.Module:
    """The model of ``cfg`` on CPU, in eval mode, with MODEL.WEIGHTS loaded weights-only."""
    from ..engine import build_model_and_load

    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.DEVICE = "cpu"
    return build_model_and_load(cfg)


def read_image(path: Union[str, Path], cfg) -> Tuple[torch.Tensor, torch.Tensor]:
    """An image file as the exported model's inputs, prepared as ``DefaultPredictor`` does.

    Returns ``image`` (1, 3, H, W) float32 in ``INPUT.FORMAT``, resized by
    ``ResizeShortestEdge(MIN_SIZE_TEST, MAX_SIZE_TEST)``, and ``output_size`` int64 [h0, w0], the
    file's own size.
    """
    from detectron2.data import detection_utils

    original = detection_utils.read_image(str(path), format=cfg.INPUT.FORMAT)
    return prepare_image(original, cfg)


def prepare_image(original_hwc: np.ndarray, cfg) -> Tuple[torch.Tensor, torch.Tensor]:
    """(H0, W0, 3) uint8 array already in ``INPUT.FORMAT`` -> (image, output_size), see :func:`read_image`."""
    from ..engine.predictor import resized_chw, test_resize

    image = resized_chw(original_hwc, test_resize(cfg))[None]
    return image, torch.tensor(original_hwc.shape[:2], dtype=torch.int64)


@contextmanager
def quiet_export_warnings():
    """Silence the tracer's and the legacy exporter's generic warnings (see ``ExportableModel``:
    nothing data-dependent is turned into a constant; the tests check other sizes and counts)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.(trace|script|save|load)")
        warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export")
        warnings.filterwarnings("ignore", module=r"torch\.onnx")
        yield


def export_torchscript(module: ExportableModel, image: torch.Tensor, output_size: torch.Tensor, path) -> Path:
    """Trace ``module`` on one sample and save it; the file runs with torch + torchvision only."""
    path = Path(path)
    with torch.no_grad(), quiet_export_warnings():
        traced = torch.jit.trace(module.eval(), (image, output_size), check_trace=False)
        torch.jit.save(traced, str(path))
    return path


def load_torchscript(path) -> torch.jit.ScriptModule:
    import torchvision  # noqa: F401  (registers torchvision::nms and torchvision::roi_align)

    with quiet_export_warnings():
        return torch.jit.load(str(path), map_location="cpu")


def export_onnx(
    module: ExportableModel, image: torch.Tensor, output_size: torch.Tensor, path,
    opset: int = ONNX_OPSET, metadata: Dict[str, str] = None,
) -> Path:
    """Export through the TorchScript-based ONNX exporter (``dynamo=False``), dynamic H, W and N."""
    import onnx

    path = Path(path)
    n = "num_detections"
    dynamic_axes = {
        "image": {2: "height", 3: "width"},
        "boxes": {0: n}, "scores": {0: n}, "classes": {0: n}, "mask_probs": {0: n},
        "masks": {0: n, 1: "output_height", 2: "output_width"}, "mask_scores": {0: n},
        "sem_seg": {1: "output_height", 2: "output_width"},
    }
    output_names = list(module.output_names)
    dynamic_axes = {k: v for k, v in dynamic_axes.items() if k in INPUT_NAMES or k in output_names}
    module.for_onnx = True
    try:
        with torch.no_grad(), quiet_export_warnings():
            torch.onnx.export(
                module.eval(), (image, output_size), str(path), dynamo=False, opset_version=opset,
                input_names=list(INPUT_NAMES), output_names=output_names, dynamic_axes=dynamic_axes,
            )
    finally:
        module.for_onnx = False
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    if metadata:
        for key, value in metadata.items():
            model.metadata_props.add(key=key, value=str(value))
        onnx.save(model, str(path))
    return path


def onnx_session(path, num_threads: int = 0):
    """A CPU onnxruntime session (``num_threads`` 0: onnxruntime's default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(session, image: torch.Tensor, output_size: torch.Tensor):
    """Outputs as a tuple of torch tensors, in ``OUTPUT_NAMES`` order (then ``mask_scores``, if any)."""
    feeds = {"image": image.numpy(), "output_size": output_size.numpy()}
    names = [o.name for o in session.get_outputs()]
    names = list(OUTPUT_NAMES) + [n for n in names if n not in OUTPUT_NAMES]
    return tuple(torch.from_numpy(a) for a in session.run(names, feeds))


EXPORT_FILE_NAMES = {"torchscript": "model.ts", "onnx": "model.onnx"}


def export_onnx_int8(module: ExportableModel, image: torch.Tensor, output_size: torch.Tensor, path, calibration,
                     scope: str = "network", **onnx_kwargs) -> Path:
    """The float32 ONNX export (into a temporary folder), quantized into ``path`` with activation
    ranges from ``calibration`` ((image, output_size) pairs); see :mod:`blendmask.export.quantize`.
    The file's metadata says "precision": "int8 <scope>"."""
    import tempfile

    import onnx

    from .quantize import calibration_feeds, quantize_onnx

    if not calibration:
        raise ValueError("int8 export needs calibration images: images like the ones the model will see")
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(module, image, output_size, Path(tmp) / "model_fp32.onnx", **onnx_kwargs)
        quantize_onnx(fp32, path, scope, calibration_feeds(calibration))
    model = onnx.load(str(path))
    model.metadata_props.add(key="precision", value=f"int8 {scope}")
    onnx.save(model, str(path))
    return path


def export_and_load(module: ExportableModel, image: torch.Tensor, output_size: torch.Tensor, backend: str,
                    out_dir, num_threads: int = 0, precision: str = "fp32", calibration=None,
                    int8_scope: str = "network", **onnx_kwargs):
    """Export ``module`` (traced on one sample) as ``backend`` ("torchscript" or "onnx") into
    ``out_dir`` and load it back: (path, a function (image, output_size) -> outputs in
    ``OUTPUT_NAMES`` order). ``onnx_kwargs`` go to :func:`export_onnx` (opset, metadata).

    ``precision``: "fp32" (default); "bf16" traces TorchScript under bfloat16 autocast
    (:mod:`blendmask.export.reduced`); "int8" quantizes the ONNX file's ``int8_scope`` with
    activation ranges from ``calibration``, a list of (image, output_size) pairs
    (:mod:`blendmask.export.quantize`)."""
    from .reduced import check_export_precision, export_torchscript_bf16

    if backend not in EXPORT_FILE_NAMES:
        raise ValueError(f"backend must be one of {sorted(EXPORT_FILE_NAMES)}, got {backend!r}")
    check_export_precision(precision, backend)
    path = Path(out_dir) / EXPORT_FILE_NAMES[backend]
    if backend == "torchscript":
        write = export_torchscript_bf16 if precision == "bf16" else export_torchscript
        traced = load_torchscript(write(module, image, output_size, path))

        def run(x, size):
            with torch.no_grad():
                return traced(x, size)
    elif precision == "int8":
        session = onnx_session(export_onnx_int8(module, image, output_size, path, calibration, int8_scope,
                                                **onnx_kwargs), num_threads=num_threads)

        def run(x, size):
            return run_onnx(session, x, size)
    else:
        session = onnx_session(export_onnx(module, image, output_size, path, **onnx_kwargs), num_threads=num_threads)

        def run(x, size):
            return run_onnx(session, x, size)
    return path, run


def io_spec(module: ExportableModel, cfg, precision: str = "fp32") -> Dict:
    """A JSON-able description of the exported graph's inputs, outputs and pre-processing (with a
    "precision" entry for a reduced-precision export; the float32 spec has none, as before)."""
    model = module.model
    outputs = model_outputs(model)
    r = outputs.mask_resolution
    if outputs.masks == "box":
        mask_probs = f"float32 (N, {r}, {r}) mask probabilities inside each (unclipped) box"
    elif outputs.masks == "image":
        mask_probs = "float32 (N, Hp/4, Wp/4) mask probabilities over the padded input (Hp, Wp: H, W padded)"
    else:
        mask_probs = "float32 (N, 0, 0) (box-only model)"
    spec = {
        "inputs": {
            "image": f"float32 (1, 3, H, W), raw 0..255 pixels in {cfg.INPUT.FORMAT} order, resized so the "
                     f"short side is {cfg.INPUT.MIN_SIZE_TEST} (long side <= {cfg.INPUT.MAX_SIZE_TEST}); "
                     "H, W dynamic, padded to a multiple of "
                     f"{model.backbone.size_divisibility} inside",
            "output_size": "int64 (2,) [height, width] to scale the results to (the original image's size)",
        },
        "outputs": {
            "boxes": "float32 (N, 4) x0, y0, x1, y1 in output_size pixels, clipped; N dynamic, by decreasing score",
            "scores": "float32 (N,)",
            "classes": f"int64 (N,) in 0..{module.num_classes - 1}",
            "mask_probs": mask_probs,
            "masks": "bool (N, output_height, output_width)" if module.paste_masks
                     else "bool (N, 0, 0) (not pasted)",
            **({"mask_scores": "float32 (N,) scores x predicted mask IoU: rank masks (segm) by these"}
               if module.has_mask_scores else {}),
            **({"sem_seg": f"float32 ({outputs.sem_seg_channels}, output_height, output_width) "
                           "semantic logits (class 0: all things); the panoptic map is "
                           "blendmask.export.panoptic_from_outputs on the host"}
               if module.has_sem_seg else {}),
        },
        "post_processing": model.postprocessing_spec() if hasattr(model, "postprocessing_spec") else {},
    }
    if precision == "bf16":
        spec["precision"] = ("bf16: convolutions and matrix products in bfloat16, decoding, NMS and pasting in "
                             "float32 (what TEST.PRECISION bf16 computes); inputs and outputs as above")
    elif precision != "fp32":
        spec["precision"] = (f"{precision}: onnxruntime's static int8 quantization of the network's convolutions "
                             "(blendmask.export.quantize), decoding, NMS and pasting in float32; inputs and "
                             "outputs as above")
    return spec


def write_spec(spec: Dict, path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(spec, indent=2) + "\n")
    return path
