"""Reduced-precision export: ``blendmask-export --precision bf16`` (TorchScript traced under bfloat16
autocast), ``--precision int8`` (onnxruntime's static quantization of the ONNX file) and the
measurement tool ``tools/export_precision.py`` (its ``--tiny`` path).

- the float32 export is what it was: no bfloat16 in its graph, no "precision" in its spec, bit for
  bit the eager float32 model; asking for float32 explicitly writes the same graph;
- the bf16 TorchScript file computes what the eager model computes under bfloat16 autocast
  (``TEST.PRECISION bf16``), bit for bit, on images and detection counts other than the traced
  one, and returns float32 tensors;
- the exporter refuses bf16 for ONNX, int8 for TorchScript and int8 without calibration images (exit
  code 2, the reason named); ``--verify`` passes for bf16;
- the int8 file: every quantized convolution fused into a QLinearConv by onnxruntime (the speed),
  float32 outputs, its precision in the metadata and the spec; ``--verify`` holds it to the float32
  model within ``within_int8_bounds`` and fails (exit 1) on the fixture, whose untrained weights
  amplify int8 rounding far beyond those bounds;
- the tool measures every variant: the float32 TorchScript row is exact, the bf16 row is the eager
  bf16 row, outputs are float32, and the onnxruntime int8 rows, measured only, stay within a sanity
  bound.
"""

import json

import pytest
import torch

import blendmask.export as bx
from adelaidet_fixtures import fixture_cfg
from conftest import import_script, reference_file

TEST_SIZE = 480


@pytest.fixture(scope="module")
def fixture_model():
    """(cfg, eager model, [(name, image, output_size)]) of the tiny AdelaiDet BlendMask: the traced
    image first (img1 at 480), then two of other sizes and detection counts."""
    cfg = fixture_cfg("tiny_blendmask")
    cfg.INPUT.MIN_SIZE_TEST = TEST_SIZE
    model = bx.build_model_from_cfg(cfg)
    inputs = [(f"img{i}", *bx.read_image(reference_file(f"tiny_blendmask_test_img{i}.png"), cfg)) for i in (1, 0)]
    cfg.INPUT.MIN_SIZE_TEST = 320
    inputs.append(("img2@320", *bx.read_image(reference_file("tiny_blendmask_test_img2.png"), cfg)))
    return cfg, model, inputs


BFLOAT16 = 15  # c10::ScalarType::BFloat16, the dtype argument of a cast to bfloat16 in a saved graph


def _graph(path):
    """(the saved file's sequence of operations, its number of casts to bfloat16). The operations,
    unlike the graph's text, do not depend on the class names TorchScript numbers per trace."""
    graph = bx.load_torchscript(path).inlined_graph
    casts = 0
    for node in graph.nodes():
        if node.kind() == "aten::to":
            for arg in list(node.inputs())[1:3]:
                const = arg.node()
                casts += const.kind() == "prim::Constant" and str(arg.type()) == "int" and const.i("value") == BFLOAT16
    return [node.kind() for node in graph.nodes()], casts


def test_float32_export_is_unchanged(fixture_model, tmp_path):
    cfg, model, inputs = fixture_model
    module = bx.ExportableModel(model)
    _, image, size = inputs[0]
    default, run = bx.export_and_load(module, image, size, "torchscript", tmp_path)
    (tmp_path / "explicit").mkdir()
    explicit, _ = bx.export_and_load(module, image, size, "torchscript", tmp_path / "explicit", precision="fp32")
    ops, bf16_casts = _graph(default)
    assert bf16_casts == 0 and ops == _graph(explicit)[0]
    assert "precision" not in bx.io_spec(module, cfg)
    for name, x, s in inputs:
        eager, probs = bx.eager_predict(model, x, s)
        report = bx.compare_outputs(eager, run(x, s), probs)
        assert report["count_export"] == report["count_eager"] and report["unmatched"] == 0, name
        assert report["max_box_diff"] == report["max_score_diff"] == report["max_mask_prob_diff"] == 0, name
        assert report["mask_pixels_differing"] == 0, name


def test_bf16_torchscript_equals_eager_bf16(fixture_model, tmp_path):
    cfg, model, inputs = fixture_model
    module = bx.ExportableModel(model)
    _, image, size = inputs[0]
    path, run = bx.export_and_load(module, image, size, "torchscript", tmp_path, precision="bf16")
    assert _graph(path)[1] > 50  # every convolution's weights and inputs
    assert bx.io_spec(module, cfg, precision="bf16")["precision"].startswith("bf16")
    counts = []
    for name, x, s in inputs:
        with bx.eager_autocast("bf16"):
            eager, probs = bx.eager_predict(model, x, s)
        outputs = run(x, s)
        assert [t.dtype for t in outputs] == [torch.float32, torch.float32, torch.int64, torch.float32, torch.bool]
        report = bx.compare_outputs(eager, outputs, probs)
        where = f"{name}: {report}"
        assert report["count_export"] == report["count_eager"] and report["unmatched"] == 0, where
        assert report["max_box_diff"] == report["max_score_diff"] == report["max_mask_prob_diff"] == 0, where
        assert report["mask_pixels_differing"] == 0, where
        counts.append(len(eager))
    assert len(set(counts)) > 1 and min(counts) > 0  # other detection counts than the traced one


def test_export_cli_precision(tmp_path, capsys):
    cli = import_script("tools/export_model.py")
    common = ["--config-file", str(reference_file("tiny_blendmask.yaml")),
              "--weights", str(reference_file("tiny_blendmask_adet.pth")),
              "--sample-image", str(reference_file("tiny_blendmask_test_img2.png")),
              "--opts", "INPUT.MIN_SIZE_TEST", "320"]
    assert cli.main(["--output", str(tmp_path / "onnx"), "--precision", "bf16"] + common) == 2
    err = capsys.readouterr().err
    assert "--precision bf16 with --format onnx" in err and "offered for torchscript only" in err
    assert "pass --format torchscript" in err
    assert not (tmp_path / "onnx").exists()  # refused before anything is written

    out_dir = tmp_path / "bf16"
    code = cli.main(["--output", str(out_dir), "--format", "torchscript", "--precision", "bf16", "--verify"] + common)
    out = capsys.readouterr().out
    assert code == 0 and "verify: all match" in out, out
    assert {p.name for p in out_dir.iterdir()} == {"model.ts", "export_spec.json"}
    assert json.loads((out_dir / "export_spec.json").read_text())["precision"].startswith("bf16")


def test_measurement_tool_tiny(tmp_path):
    tool = import_script("tools/export_precision.py")
    rows = tool.main(["--tiny", "--count", "10", "--runs", "1", "--threads", "1", "--json", str(tmp_path / "r.json")])
    assert set(rows) == {tool.EAGER_FP32, tool.EAGER_BF16, tool.CONTROL, tool.TS_FP32, tool.TS_BF16, tool.ORT_FP32,
                         tool.ORT_INT8_BACKBONE, tool.ORT_INT8_NETWORK}
    assert json.loads((tmp_path / "r.json").read_text()).keys() == rows.keys()
    for name, row in rows.items():
        assert row["float32_outputs"], name
        assert row["n_ref"] == 10, name  # the forced count
        assert (name in tool.NO_LATENCY) != (row.get("median_ms", 0) > 0), name
    exact = rows[tool.TS_FP32]
    assert exact["matched"] == exact["n_other"] == 10
    assert exact["max_score_diff"] == exact["max_box_diff"] == 0 and exact["min_mask_iou"] == 1
    onnx = rows[tool.ORT_FP32]
    assert onnx["matched"] == 10 and onnx["max_box_diff"] < 1e-2 and onnx["mean_mask_iou"] > 0.99
    measured = ("matched", "n_other", "max_score_diff", "max_box_diff", "mean_mask_iou", "min_mask_iou")
    assert {k: rows[tool.TS_BF16][k] for k in measured} == {k: rows[tool.EAGER_BF16][k] for k in measured}
    # int8: measured, not shipped. A broken quantization (ranges not calibrated, a wrong scale)
    # matches next to nothing; these random weights amplify rounding, so the bound is loose
    for name in (tool.ORT_INT8_BACKBONE, tool.ORT_INT8_NETWORK):
        assert rows[name]["matched"] >= 5 and rows[name]["mean_mask_iou"] >= 0.9, (name, rows[name])


def test_export_cli_int8(tmp_path, capsys):
    import onnx
    import onnxruntime as ort

    cli = import_script("tools/export_model.py")
    common = ["--config-file", str(reference_file("tiny_blendmask.yaml")),
              "--weights", str(reference_file("tiny_blendmask_adet.pth")), "--opts", "INPUT.MIN_SIZE_TEST", "320"]
    images = [str(reference_file(f"tiny_blendmask_test_img{i}.png")) for i in (2, 0)]
    assert cli.main(["--output", str(tmp_path / "a"), "--format", "onnx", "--precision", "int8"] + common) == 2
    assert "needs calibration images" in capsys.readouterr().err
    assert cli.main(["--output", str(tmp_path / "b"), "--precision", "int8", "--sample-image", images[0]] + common) == 2
    assert "pass --format onnx" in capsys.readouterr().err and not (tmp_path / "b").exists()

    out_dir = tmp_path / "int8"
    code = cli.main(["--output", str(out_dir), "--format", "onnx", "--precision", "int8", "--int8-scope", "backbone",
                     "--sample-image", images[0], "--calibration-image", *images, "--verify"] + common)
    out = capsys.readouterr().out
    assert code == 1 and "BELOW the int8 bounds" in out, out  # random weights: far from float32
    path = out_dir / "model.onnx"
    assert {p.name for p in out_dir.iterdir()} == {"model.onnx", "export_spec.json"}
    model = onnx.load(str(path))
    assert {p.key: p.value for p in model.metadata_props}["precision"] == "int8 backbone"
    assert json.loads((out_dir / "export_spec.json").read_text())["precision"].startswith("int8 backbone")
    quantized = sum(n.op_type == "QuantizeLinear" for n in model.graph.node)
    convs = sum(n.op_type == "Conv" and n.name.startswith("/backbone/") for n in model.graph.node)
    assert convs > 20 and quantized > 0

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    fused = sum(n.op_type == "QLinearConv" for n in onnx.load(options.optimized_model_filepath).graph.node)
    assert fused == convs  # every backbone convolution runs in int8 (none dequantizes its weights per call)
    cfg = fixture_cfg("tiny_blendmask")
    cfg.INPUT.MIN_SIZE_TEST = 320
    outputs = bx.run_onnx(session, *bx.read_image(images[1], cfg))
    assert [t.dtype for t in outputs] == [torch.float32, torch.float32, torch.int64, torch.float32, torch.bool]


def test_int8_bounds():
    row = dict(n_ref=100, matched=96, mean_mask_iou=0.97, confident=10, confident_matched=10)
    assert bx.within_int8_bounds(row)
    assert not bx.within_int8_bounds({**row, "confident_matched": 9})  # a confident detection lost
    assert not bx.within_int8_bounds({**row, "matched": 94})
    assert not bx.within_int8_bounds({**row, "mean_mask_iou": 0.94})
    assert bx.within_int8_bounds(dict(n_ref=0, matched=0, mean_mask_iou=1.0, confident=0, confident_matched=0))
