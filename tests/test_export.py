"""The exported model (TorchScript; ONNX run by onnxruntime on CPU) matches the eager model.

Fixture: the tiny AdelaiDet BlendMask with its weights, on the three fixture images resized to a
short side of 480 (9, 42 and 21 detections), results scaled back to each image's original size as
``DefaultPredictor`` does, plus image 0 at 320 where the model finds nothing. The graph is traced
on image 1 (480 x 480), so the other images also check that sizes and counts stay dynamic.
"""

import numpy as np
import pytest
import torch

import blendmask.export as bx
from adelaidet_fixtures import fixture_cfg
from blendmask.inference import class_aware_nms, paste_probs_grid, paste_probs_separable
from conftest import reference_file

TEST_SIZE = 480
BOX_ATOL = 1e-2  # pixels
MIN_MASK_IOU = 0.99
SCORE_ATOL = 1e-4
MASK_PROB_ATOL = 3e-3  # as tests/adelaidet_fixtures.py allows against AdelaiDet
TRACE_SAMPLE = 1


def _cfg(name, size):
    cfg = fixture_cfg(name)
    cfg.INPUT.MIN_SIZE_TEST = size
    return cfg


@pytest.fixture(scope="module")
def fixture_setup():
    """(cfg, eager model, [(name, image, output_size, eager instances, eager R x R probs)])."""
    cfg = _cfg("tiny_blendmask", TEST_SIZE)
    model = bx.build_model_from_cfg(cfg)
    inputs = [(f"img{i}", *bx.read_image(reference_file(f"tiny_blendmask_test_img{i}.png"), cfg)) for i in range(3)]
    small = _cfg("tiny_blendmask", 320)
    inputs.append(("img0@320", *bx.read_image(reference_file("tiny_blendmask_test_img0.png"), small)))
    samples = [(name, x, size, *bx.eager_predict(model, x, size)) for name, x, size in inputs]
    assert [len(s[3]) for s in samples] == [9, 42, 21, 0]
    return cfg, model, samples


@pytest.fixture(scope="module", params=["torchscript", "onnx"])
def exported(request, fixture_setup, tmp_path_factory):
    """(backend name, [outputs of a freshly exported file on every sample])."""
    _, model, samples = fixture_setup
    module = bx.ExportableModel(model)
    _, image, size, _, _ = samples[TRACE_SAMPLE]
    _, run = bx.export_and_load(module, image, size, request.param, tmp_path_factory.mktemp(request.param),
                                num_threads=2)
    return request.param, [run(x, s) for _, x, s, _, _ in samples]


def test_exported_matches_eager(fixture_setup, exported):
    _, _, samples = fixture_setup
    backend, all_outputs = exported
    for (name, _, _, eager, eager_probs), outputs in zip(samples, all_outputs):
        report = bx.compare_outputs(eager, outputs, eager_probs)
        where = f"{backend} on {name}: {report}"
        assert report["count_export"] == report["count_eager"], where
        assert report["unmatched"] == 0, where
        assert report["max_box_diff"] <= BOX_ATOL, where
        assert report["min_mask_iou"] >= MIN_MASK_IOU, where
        assert report["max_score_diff"] <= SCORE_ATOL, where
        assert report["max_mask_prob_diff"] <= MASK_PROB_ATOL, where
        assert report.get("unexplained_mask_pixels", 0) == 0, where
        if backend == "torchscript":  # the same inference code as eager, traced: bit for bit
            assert report["max_box_diff"] == report["max_score_diff"] == report["max_mask_prob_diff"] == 0, where
            assert report["mask_pixels_differing"] == 0, where


def test_exported_output_spec(fixture_setup, exported):
    cfg, _, samples = fixture_setup
    _, all_outputs = exported
    r = cfg.MODEL.BLENDMASK.BOTTOM_RESOLUTION
    for (name, _, size, eager, _), (boxes, scores, classes, probs, masks) in zip(samples, all_outputs):
        n, (h, w) = len(eager), size.tolist()
        assert boxes.shape == (n, 4) and boxes.dtype == torch.float32, name
        assert scores.shape == (n,) and scores.dtype == torch.float32, name
        assert classes.shape == (n,) and classes.dtype == torch.int64, name
        assert probs.shape == (n, r, r) and probs.dtype == torch.float32, name
        assert masks.shape == (n, h, w) and masks.dtype == torch.bool, name
        assert (scores[:-1] >= scores[1:] - SCORE_ATOL).all(), name
        assert (boxes[:, 0::2] >= 0).all() and (boxes[:, 0::2] <= w).all(), name
        assert (boxes[:, 1::2] >= 0).all() and (boxes[:, 1::2] <= h).all(), name
        assert ((probs >= 0) & (probs <= 1)).all(), name
        assert ((classes >= 0) & (classes < cfg.MODEL.FCOS.NUM_CLASSES)).all(), name


def test_module_without_output_size_equals_eager_at_input_size(fixture_setup):
    """Eager ``ExportableModel`` with no output_size: results at the input size, as the eager
    model without "height"/"width"; also without pasting."""
    _, model, samples = fixture_setup
    name, image, _, _, _ = samples[2]
    input_size = torch.tensor(image.shape[-2:])
    eager, eager_probs = bx.eager_predict(model, image, input_size)
    with torch.no_grad():
        outputs = bx.ExportableModel(model)(image)
        unpasted = bx.ExportableModel(model, paste_masks=False)(image)
    report = bx.compare_outputs(eager, outputs, eager_probs)
    assert report["count_export"] == report["count_eager"] == len(eager) > 0
    assert report["max_box_diff"] <= 1e-5 and report["max_mask_prob_diff"] <= 1e-5, report
    assert report["mask_pixels_differing"] == 0, report
    assert unpasted[4].shape == (len(eager), 0, 0)
    for a, b in zip(outputs[:4], unpasted[:4]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_match_by_box_is_rank_order_independent():
    ref = np.array([[0, 0, 10, 10], [5, 5, 20, 20], [0, 0, 10, 10]], dtype=np.float32)
    ref_classes = np.array([1, 2, 3])
    boxes = ref[[2, 0, 1]] + 1e-3
    match = bx.match_by_box(ref, ref_classes, boxes, ref_classes[[2, 0, 1]])
    np.testing.assert_array_equal(match, [1, 2, 0])
    assert (bx.match_by_box(ref, ref_classes, boxes[:2], ref_classes[[2, 0]]) == [1, -1, 0]).all()


class _NMS(torch.nn.Module):
    def __init__(self, backend):
        super().__init__()
        self.backend = backend

    def forward(self, boxes, scores, classes):
        return class_aware_nms(boxes, scores, classes, 0.6, 5, self.backend)


def _random_detections(n, seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 60
    boxes = torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 40 + 1], dim=1)
    return boxes, torch.rand(n, generator=g), torch.randint(0, 5, (n,), generator=g)


@pytest.mark.parametrize("backend", ["torchscript", "onnx"])
def test_class_aware_nms_matches_torchvision(backend, tmp_path):
    """Exported NMS keeps what torchvision's batched_nms keeps, in the same order, below and above
    the 1000 boxes where torchvision switches from the coordinate-offset trick to per-class NMS."""
    from torchvision.ops import batched_nms

    module = _NMS("onnx" if backend == "onnx" else "torchvision")
    sample = _random_detections(50, 0)
    if backend == "torchscript":
        with torch.no_grad(), bx.api.quiet_export_warnings():
            run = torch.jit.trace(module, sample)
    else:
        path = tmp_path / "nms.onnx"
        with bx.api.quiet_export_warnings():
            torch.onnx.export(module, sample, str(path), dynamo=False, opset_version=bx.ONNX_OPSET,
                              input_names=["boxes", "scores", "classes"], output_names=["keep"],
                              dynamic_axes={"boxes": {0: "n"}, "scores": {0: "n"}, "classes": {0: "n"}})
        session = bx.onnx_session(path)

        def run(boxes, scores, classes):
            feeds = {"boxes": boxes.numpy(), "scores": scores.numpy(), "classes": classes.numpy()}
            return torch.from_numpy(session.run(None, feeds)[0])
    for n, seed in [(0, 1), (300, 2), (1500, 3)]:
        boxes, scores, classes = _random_detections(n, seed)
        expected = batched_nms(boxes, scores, classes, 0.6)
        torch.testing.assert_close(run(boxes, scores, classes), expected, rtol=0, atol=0)
        assert n == 0 or 0 < len(expected) < n


def test_separable_paste_equals_grid_sample_paste():
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(20, 56, 56, generator=g)
    probs[:5] = 1.0  # saturated masks: edge pixels land on the 0.5 threshold
    xy = torch.rand(20, 2, generator=g) * 120 - 20
    boxes = torch.cat([xy, xy + torch.rand(20, 2, generator=g) * 100 + 0.5], dim=1)
    grid = paste_probs_grid(probs, boxes, 90, 130)
    separable = paste_probs_separable(probs, boxes, 90, 130)
    torch.testing.assert_close(separable, grid, rtol=0, atol=1e-5)
    flipped = (separable >= 0.5) != (grid >= 0.5)
    assert ((grid - 0.5).abs()[flipped] <= 1e-5).all()


def test_the_export_runs_the_models_own_inference(fixture_setup):
    """The export module is glue: eager ExportableModel equals model.inference bit for bit."""
    _, model, samples = fixture_setup
    _, image, size, eager, eager_probs = samples[1]
    with torch.no_grad():
        boxes, scores, classes, probs, masks = bx.ExportableModel(model)(image, size)
    assert torch.equal(boxes, eager.pred_boxes.tensor) and torch.equal(scores, eager.scores)
    assert torch.equal(classes, eager.pred_classes) and torch.equal(probs, eager_probs)
    assert torch.equal(masks, eager.pred_masks)


def test_export_cli_box_only_model(tmp_path, capsys):
    """tools/export_model.py on the FCOS-only fixture: writes the ONNX file and the spec, and its
    --verify finds it equal to the eager model on a fixture image."""
    import importlib.util

    from conftest import REPO_ROOT

    spec = importlib.util.spec_from_file_location("export_model", REPO_ROOT / "tools" / "export_model.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    code = cli.main([
        "--config-file", str(reference_file("fcos_tiny.yaml")), "--weights", str(reference_file("fcos_tiny.pth")),
        "--output", str(tmp_path), "--format", "onnx", "--verify",
        "--sample-image", str(reference_file("tiny_blendmask_test_img2.png")),
        "--opts", "INPUT.MIN_SIZE_TEST", "320",
    ])
    out = capsys.readouterr().out
    assert code == 0, out
    assert {p.name for p in tmp_path.iterdir()} == {"model.onnx", "export_spec.json"}
    assert "verify: all match" in out and '"count_export": 0' not in out
    assert '"output_size"' in out and '"mask_probs"' in out
