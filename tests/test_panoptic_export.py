"""Panoptic BlendMask exports (TorchScript): instances and semantic logits equal the eager model's,
and the host-side combine of the exported outputs gives the eager panoptic map.

Fixture: AdelaiDet's tiny panoptic BlendMask at a short side of 256 (faster than the fixture's 800),
traced on image 1 (256 x 256) and run on image 2 too (256 x 384: the graph stays dynamic).
"""

import numpy as np
import pytest
import torch
from panoptic_fixtures import fixture_cfg

import blendmask.export as bx
from conftest import reference_file

TEST_SIZE = 256
IMAGES = (1, 2)  # the first is traced
SEM_ATOL = 1e-4  # logits: TorchScript runs the eager operators (measured 0.0)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    cfg = fixture_cfg()
    cfg.INPUT.MIN_SIZE_TEST = TEST_SIZE
    model = bx.build_model_from_cfg(cfg)
    module = bx.ExportableModel(model)
    inputs = [bx.read_image(reference_file(f"tiny_blendmask_test_img{i}.png"), cfg) for i in IMAGES]
    path = bx.export_torchscript(module, *inputs[0], tmp_path_factory.mktemp("ts") / "panoptic.ts")
    exported = bx.load_torchscript(path)
    with torch.no_grad():
        runs = [(model([{"image": x[0], "height": int(s[0]), "width": int(s[1])}])[0], exported(x, s))
                for x, s in inputs]
    return cfg, model, module, runs


def test_outputs_and_spec_name_the_semantic_logits(setup):
    cfg, model, module, _ = setup
    assert module.output_names[-1] == "sem_seg"
    spec = bx.io_spec(module, cfg)
    assert "sem_seg" in spec["outputs"]
    assert spec["post_processing"]["panoptic_combine"] == {
        "overlap_thresh": 0.4, "stuff_area_limit": 4096, "instances_confidence_thresh": 0.45}


@pytest.mark.parametrize("i", range(len(IMAGES)))
def test_exported_panoptic_model_equals_eager(setup, i):
    _, model, module, runs = setup
    eager, outputs = runs[i]
    report = bx.compare_outputs(eager["instances"], outputs)
    assert report["count_eager"] == report["count_export"] > 0 and report["unmatched"] == 0, report
    assert report["max_box_diff"] <= 1e-2 and report["max_score_diff"] <= 1e-4, report
    assert report["min_mask_iou"] >= 0.99, report
    sem = outputs[module.output_names.index("sem_seg")]
    assert sem.shape == eager["sem_seg"].shape
    assert float((sem - eager["sem_seg"]).abs().max()) <= SEM_ATOL
    pan, info = bx.panoptic_from_outputs(outputs, module.output_names, model.panoptic_combine)
    eager_pan, eager_info = eager["panoptic_seg"]
    assert info == eager_info
    np.testing.assert_array_equal(pan.numpy(), eager_pan.numpy())
    assert any(not s["isthing"] for s in info)


def test_the_samples_have_thing_segments(setup):
    """So that the comparison above covers the instance half of the combine too."""
    _, _, _, runs = setup
    assert sum(s["isthing"] for eager, _ in runs for s in eager["panoptic_seg"][1]) >= 3


def test_host_combine_needs_pasted_masks_and_logits(setup):
    _, model, module, runs = setup
    outputs = runs[0][1]
    names = list(module.output_names)
    with pytest.raises(ValueError, match="no 'sem_seg'"):
        bx.panoptic_from_outputs(outputs[:-1], names[:-1], model.panoptic_combine)
    unpasted = list(outputs)
    unpasted[names.index("masks")] = outputs[names.index("masks")][:, :0, :0]
    with pytest.raises(ValueError, match="paste_masks"):
        bx.panoptic_from_outputs(unpasted, names, model.panoptic_combine)
