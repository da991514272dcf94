"""int8 ONNX: onnxruntime's static quantization of an exported float32 file's network.

The float32 file (:func:`~blendmask.export.api.export_onnx`) is quantized by
``onnxruntime.quantization.quantize_static`` in the QDQ format: per-channel int8 weights, uint8
activations whose ranges are measured by running the file on calibration images (min/max). The
``scope`` chooses the nodes:

- ``"backbone"``: the backbone and FPN (their convolutions, ReLUs, residual additions and max
  pooling, so that the activations stay int8 from one convolution to the next);
- ``"network"``: those, plus every other convolution with constant weights (FCOS head, basis
  module, attention, mask heads). Convolutions whose weights are computed (SOLOv2's dynamic
  kernels) stay float32.

Decoding, NMS, the top-k, blending and pasting have no such nodes and stay float32, so inputs and
outputs are the float32 export's. onnxruntime fuses each quantized convolution into a QLinearConv
(VNNI instructions where the CPU has them). docs/export.md ("Export in reduced precision") has the
speed and the agreement with the float32 model measured.
"""

from pathlib import Path
from typing import Dict, Iterable, List

import numpy as np

INT8_SCOPES = ("network", "backbone")
BACKBONE_OPS = ("Conv", "Relu", "Add", "MaxPool")  # every op of a ResNet + FPN but the FPN's upsampling


def nodes_to_quantize(graph, scope: str) -> List[str]:
    """Names of the nodes of an exported graph (onnx GraphProto) that ``scope`` quantizes."""
    if scope not in INT8_SCOPES:
        raise ValueError(f"int8 scope must be one of {', '.join(INT8_SCOPES)}, got {scope!r}")
    backbone = [n.name for n in graph.node if n.name.startswith("/backbone/") and n.op_type in BACKBONE_OPS]
    if scope == "backbone":
        return backbone
    constants = {t.name for t in graph.initializer}
    return backbone + [n.name for n in graph.node if n.op_type == "Conv" and not n.name.startswith("/backbone/")
                       and n.input[1] in constants]


def with_shared_initializers_copied(model):
    """``model`` (an onnx ModelProto, changed in place) with every ``Identity`` of an initializer
    replaced by a copy of that initializer.

    The exporter stores equal tensors once and feeds their other uses through Identity nodes (the
    zero biases of an untrained network, a head shared by the FPN levels). onnxruntime's quantizer
    wants a convolution's bias as an initializer; without one it leaves the DequantizeLinear of the
    weights in the graph, to run at every call, instead of fusing a QLinearConv (most of an R-50
    backbone then ran slower than in float32)."""
    import onnx

    initializers = {t.name: t for t in model.graph.initializer}
    kept = []
    for node in model.graph.node:
        if node.op_type == "Identity" and node.input[0] in initializers:
            copy = onnx.TensorProto()
            copy.CopyFrom(initializers[node.input[0]])
            copy.name = node.output[0]
            model.graph.initializer.append(copy)
        else:
            kept.append(node)
    del model.graph.node[:]
    model.graph.node.extend(kept)
    return model


def calibration_feeds(samples: Iterable) -> List[Dict[str, np.ndarray]]:
    """(image, output_size) tensor pairs, as prepared for the export, -> onnxruntime input feeds."""
    return [{"image": image.numpy(), "output_size": size.numpy()} for image, size in samples]


def quantize_onnx(fp32_path, out_path, scope: str = "network", calibration=None) -> Path:
    """Write the int8 copy of the float32 ONNX file ``fp32_path`` to ``out_path`` (see the module
    doc); ``calibration``: input feeds (:func:`calibration_feeds`) of images like the ones the
    model will see. Without them, onnxruntime's dynamic quantization (activation ranges computed
    at run time, ConvInteger) of the convolutions of ``scope``: measured slower than float32 on CPU,
    kept for ``tools/export_precision.py``."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    out_path = Path(out_path)
    model = with_shared_initializers_copied(onnx.load(str(fp32_path)))
    nodes = nodes_to_quantize(model.graph, scope)
    prepared = out_path.with_name(out_path.stem + ".prepared.onnx")
    onnx.save(model, str(prepared))
    try:
        if calibration is None:
            quantize_dynamic(str(prepared), str(out_path), op_types_to_quantize=["Conv"], nodes_to_quantize=nodes,
                             weight_type=QuantType.QInt8)
            return out_path
        if not calibration:
            raise ValueError("static int8 quantization needs at least one calibration image")

        class Feeds(CalibrationDataReader):
            def __init__(self):
                self.feeds = iter(calibration)

            def get_next(self):
                return next(self.feeds, None)

        quantize_static(str(prepared), str(out_path), Feeds(), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(BACKBONE_OPS), nodes_to_quantize=nodes, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    finally:
        prepared.unlink(missing_ok=True)
    return out_path
