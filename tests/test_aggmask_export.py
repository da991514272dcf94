"""AggMask* exports through the shared ExportableModel (ONNX and TorchScript) and the exports
match the eager model.

Model: the halfgrid fixture head (the authors' weights) on a random ResNet-18 FPN, at a short side
of 128, at most 20 detections (both images reach 20). Traced on image 1 (128 x 128); image 0
(128 x 171) checks that sizes and counts stay dynamic. A trace cannot keep a data-dependent
number of convolution groups, so the per-cell networks run as im2col and batched matrix products
in the exports (grouped convolutions in eager PyTorch): the same sums, other rounding, so
TorchScript is held to 1e-5 on scores and ONNX (onnxruntime's own kernels) to 1e-4, masks to
IoU >= 0.99 (measured at 192 px, 40 detections: TorchScript 1.5e-8 and <= 1 pixel, ONNX 1.6e-5 and <= 23
pixels).
"""

import pytest
import torch
from aggmask_fixtures import aggmask_file, fixture_cfg, load_fixture_model

import blendmask.export as bx
from conftest import REPO_ROOT

OPTS = ["INPUT.MIN_SIZE_TEST", 128, "MODEL.SOLOV2.MAX_PER_IMG", 20, "MODEL.SOLOV2.NMS_PRE", 40]
IMAGES = REPO_ROOT.parent / "shared" / "reference" / "solov2"
SCORE_ATOL = {"torchscript": 1e-5, "onnx": 1e-4}
MIN_MASK_IOU = 0.99
TRACE_SAMPLE = 1


@pytest.fixture(scope="module")
def setup():
    aggmask_file("aggmask_head_tiny_halfgrid.pth")
    cfg = fixture_cfg("halfgrid", OPTS)
    model = load_fixture_model("halfgrid", opts=OPTS)
    samples = []
    for i in range(2):
        path = IMAGES / f"tiny_blendmask_test_img{i}.png"
        if not path.exists():
            pytest.skip(f"{path} is absent (needs ../shared beside the repo)")
        image, size = bx.read_image(path, cfg)
        samples.append((f"img{i}", image, size, bx.eager_predict(model, image, size)[0]))
    assert [len(s[3]) for s in samples] == [20, 20]
    return cfg, model, samples


@pytest.fixture(scope="module", params=["torchscript", "onnx"])
def exported(request, setup, tmp_path_factory):
    _, model, samples = setup
    module = bx.ExportableModel(model)
    _, image, size, _ = samples[TRACE_SAMPLE]
    _, run = bx.export_and_load(module, image, size, request.param, tmp_path_factory.mktemp(f"aggmask_{request.param}"),
                                num_threads=2)
    return request.param, [run(x, s) for _, x, s, _ in samples]


def test_exported_aggmask_matches_eager(setup, exported):
    _, _, samples = setup
    backend, all_outputs = exported
    for (name, _, size, eager), outputs in zip(samples, all_outputs):
        report = bx.compare_outputs(eager, outputs)
        where = f"{backend} on {name}: {report}"
        assert report["count_export"] == report["count_eager"] and report["unmatched"] == 0, where
        assert report["max_score_diff"] <= SCORE_ATOL[backend], where
        assert report["min_mask_iou"] >= MIN_MASK_IOU, where
        boxes, scores, classes, probs, masks = outputs
        assert masks.shape == (len(eager), *size.tolist()) and masks.dtype == torch.bool, where
        assert probs.shape[0] == len(eager) and probs.dim() == 3, where


def test_export_spec_describes_aggmask(setup):
    cfg, model, _ = setup
    spec = bx.io_spec(bx.ExportableModel(model), cfg)
    assert "padded input" in spec["outputs"]["mask_probs"]
    assert spec["post_processing"]["max_per_img"] == 20 and spec["outputs"]["classes"].endswith("0..79")
