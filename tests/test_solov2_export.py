"""SOLOv2 exports through the shared ExportableModel (matrix NMS and the mask resize included)
and the exports match the eager model.

Fixture: the tiny SOLOv2 of ../shared/reference/solov2 with its weights, fixture images 0 and 1
at a short side of 480 (65 and 100 detections), results at each image's original size. The graph
is traced on image 1 (480 x 480), so image 0 (480 x 640) also checks that sizes and counts stay
dynamic. TorchScript runs the eager code traced (the mask resize as matrix products instead of
F.interpolate) and is asserted bit-equal; onnxruntime's convolutions round differently, so ONNX
is held to the reference README's score tolerance against AdelaiDet (1e-3; measured 1.6e-4).
"""

import json

import pytest
import torch
from solov2_fixtures import fixture_cfg, solov2_file

import blendmask.export as bx

TEST_SIZE = 480
TRACE_SAMPLE = 1
ONNX_SCORE_ATOL = 1e-3
MIN_MASK_IOU = 0.99


@pytest.fixture(scope="module")
def setup():
    cfg = fixture_cfg()
    cfg.INPUT.MIN_SIZE_TEST = TEST_SIZE
    model = bx.build_model_from_cfg(cfg)
    samples = []
    for i in range(2):
        image, size = bx.read_image(solov2_file(f"tiny_blendmask_test_img{i}.png"), cfg)
        samples.append((f"img{i}", image, size, bx.eager_predict(model, image, size)[0]))
    assert [len(s[3]) for s in samples] == [65, 100]
    return cfg, model, samples


@pytest.fixture(scope="module", params=["torchscript", "onnx"])
def exported(request, setup, tmp_path_factory):
    _, model, samples = setup
    module = bx.ExportableModel(model)
    _, image, size, _ = samples[TRACE_SAMPLE]
    _, run = bx.export_and_load(module, image, size, request.param, tmp_path_factory.mktemp(f"solov2_{request.param}"),
                                num_threads=2)
    return request.param, [run(x, s) for _, x, s, _ in samples]


def test_exported_solov2_matches_eager(setup, exported):
    _, _, samples = setup
    backend, all_outputs = exported
    for (name, _, size, eager), outputs in zip(samples, all_outputs):
        report = bx.compare_outputs(eager, outputs)
        where = f"{backend} on {name}: {report}"
        assert report["count_export"] == report["count_eager"] and report["unmatched"] == 0, where
        assert report["min_mask_iou"] >= MIN_MASK_IOU, where
        boxes, scores, classes, probs, masks = outputs
        assert masks.shape == (len(eager), *size.tolist()) and masks.dtype == torch.bool, where
        assert probs.shape[0] == len(eager) and probs.dim() == 3, where
        # the boxes are the exported masks' own tight boxes
        torch.testing.assert_close(boxes, bx_boxes(masks), rtol=0, atol=0)
        if backend == "torchscript":  # the eager code, traced: bit for bit
            assert report["max_box_diff"] == report["max_score_diff"] == 0, where
            assert report["mask_pixels_differing"] == 0, where
        else:
            assert report["max_score_diff"] <= ONNX_SCORE_ATOL, where


def bx_boxes(masks):
    from detectron2.structures import BitMasks

    return BitMasks(masks).get_bounding_boxes().tensor


def test_export_spec_describes_solov2(setup):
    cfg, model, _ = setup
    spec = bx.io_spec(bx.ExportableModel(model), cfg)
    json.dumps(spec)
    assert "padded input" in spec["outputs"]["mask_probs"]
    assert spec["post_processing"]["nms_kernel"] == "gaussian" and spec["post_processing"]["max_per_img"] == 100
    assert spec["outputs"]["classes"].endswith("0..79")
