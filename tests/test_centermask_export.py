"""CenterMask exports to TorchScript and ONNX through the shared export glue, with a sixth output
mask_scores, and the exports equal the eager model on the centermask2 fixture (traced on image 1,
which hits the cap of 50 detections, and run on it and on a smaller crop of it: dynamic sizes
and detection counts)."""

import numpy as np
import pytest
import torch
from centermask_fixtures import centermask_file, load_tiny_model

import blendmask.export as bx

BOX_ATOL = 1e-2
SCORE_ATOL = 1e-4
MIN_MASK_IOU = 0.99
MASK_PROB_ATOL = 3e-3
TRACE_SAMPLE = 0


@pytest.fixture(scope="module")
def setup():
    model = load_tiny_model()
    ref = np.load(centermask_file("cm_tiny_outputs.npz"))
    samples = []
    for i in (1,):
        image = torch.from_numpy(ref[f"img{i}_input_bgr_chw_u8"].astype(np.float32))[None]
        samples.append((f"img{i}", image, torch.tensor(ref[f"img{i}_orig_hw"], dtype=torch.int64)))
    crop = samples[0][1][:, :, 100:420, 200:680]
    samples.append(("img1 crop", crop.contiguous(), torch.tensor([320, 480])))
    eager = [(name, x, size, *bx.eager_predict(model, x, size)) for name, x, size in samples]
    assert [len(s[3]) for s in eager] == [50, 7]
    return model, eager


@pytest.fixture(scope="module", params=["torchscript", "onnx"])
def exported(request, setup, tmp_path_factory):
    model, samples = setup
    module = bx.ExportableModel(model)
    assert module.output_names[-1] == "mask_scores"
    _, image, size, _, _ = samples[TRACE_SAMPLE]
    _, run = bx.export_and_load(module, image, size, request.param, tmp_path_factory.mktemp(request.param),
                                num_threads=2)
    return request.param, [run(x, s) for _, x, s, _, _ in samples]


def test_exported_centermask_matches_eager(setup, exported):
    _, samples = setup
    backend, outputs = exported
    for (name, _, _, eager, probs), out in zip(samples, outputs):
        assert len(out) == 6
        report = bx.compare_outputs(eager, out, probs)
        where = f"{backend} {name}"
        assert report["count_export"] == report["count_eager"] and report["unmatched"] == 0, (where, report)
        if not report["count_eager"]:
            continue
        assert report["max_box_diff"] <= BOX_ATOL, (where, report)
        assert report["max_score_diff"] <= SCORE_ATOL, (where, report)
        assert report["max_mask_score_diff"] <= SCORE_ATOL, (where, report)
        assert report["max_mask_prob_diff"] <= MASK_PROB_ATOL, (where, report)
        assert report["min_mask_iou"] >= MIN_MASK_IOU, (where, report)
        assert report["unexplained_mask_pixels"] == 0, (where, report)


def test_output_spec_names_mask_scores(setup):
    from blendmask import load_config

    model, _ = setup
    spec = bx.io_spec(bx.ExportableModel(model), load_config())
    assert "mask_scores" in spec["outputs"] and "28, 28" in spec["outputs"]["mask_probs"]
