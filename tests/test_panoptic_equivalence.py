"""Our panoptic BlendMask, loading AdelaiDet's tiny panoptic checkpoint as a user would, reproduces
AdelaiDet's instances, semantic logits, panoptic map, segments and losses.

The comparison is tools/compare_panoptic.py's (tests/panoptic_fixtures.py); tolerances there.
"""

import copy

import pytest
import torch
from panoptic_fixtures import (
    compare_image,
    compare_losses,
    load_fixture_model,
    reference_outputs,
    run_image,
    training_inputs,
)


@pytest.fixture(scope="module")
def model():
    return load_fixture_model()


@pytest.fixture(scope="module")
def runs(model):
    ref = reference_outputs()
    results = []
    for i in range(3):
        h, w = (int(v) for v in ref[f"img{i}_orig_hw"])
        results.append(run_image(model, ref[f"img{i}_input_bgr_chw_u8"], h, w))
    return ref, results


@pytest.mark.parametrize("i", range(3))
def test_image_matches_adelaidet(runs, i):
    ref, results = runs
    measured, failures = compare_image(ref, i, *results[i])
    assert failures == [], measured
    out = results[i][0]
    assert set(out) == {"instances", "sem_seg", "panoptic_seg"}
    assert out["sem_seg"].shape == (54, *(int(v) for v in ref[f"img{i}_orig_hw"]))


def test_comparison_fails_on_a_wrong_combine(runs):
    """The checks can fail: a shifted semantic class, a dropped segment, a wrong score."""
    ref, results = runs
    out, captured = results[0]
    wrong = dict(out, sem_seg=out["sem_seg"].clone())
    wrong["sem_seg"][3] += 0.5
    assert compare_image(ref, 0, wrong, captured)[1]
    pan, info = out["panoptic_seg"]
    assert compare_image(ref, 0, dict(out, panoptic_seg=(pan, info[:-1])), captured)[1]
    assert compare_image(ref, 0, dict(out, panoptic_seg=(pan, [dict(info[0], score=info[0]["score"] + 1e-3)]
                                                               + info[1:])), captured)[1]


def test_training_losses_match_adelaidet(model):
    inputs, expected = training_inputs()
    losses = copy.deepcopy(model).train()([inputs])
    assert list(losses)[-1] == "loss_sem_seg"
    rel, failures = compare_losses(losses, expected)
    assert failures == [], rel
    assert compare_losses(dict(losses, loss_sem_seg=losses["loss_sem_seg"] * (1 + 1e-4)), expected)[1]


def test_semantic_targets_are_checked(model):
    """Missing, misshapen or out-of-range "sem_seg" fails with a clear message (before the network runs)."""
    from detectron2.structures import ImageList

    from blendmask.modeling.blendmask.panoptic import semantic_targets

    images = ImageList(torch.zeros(2, 3, 64, 96), [(60, 90), (64, 80)])
    good = [{"sem_seg": torch.zeros(60, 90, dtype=torch.long)}, {"sem_seg": torch.full((64, 80), 255)}]
    targets = semantic_targets(good, images, model.panoptic_module, "cpu")
    assert targets.shape == (2, 64, 96) and int(targets[0, 60:].min()) == 255 and int(targets[0, :60, :90].max()) == 0
    with pytest.raises(ValueError, match="needs 'sem_seg'"):
        semantic_targets([good[0], {}], images, model.panoptic_module, "cpu")
    with pytest.raises(ValueError, match="image's size"):
        semantic_targets([good[0], {"sem_seg": torch.zeros(60, 90)}], images, model.panoptic_module, "cpu")
    with pytest.raises(ValueError, match=r"\[0, 54\).*\[60\]"):
        semantic_targets([good[0], {"sem_seg": torch.full((64, 80), 60)}], images, model.panoptic_module, "cpu")
