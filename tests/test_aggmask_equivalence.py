"""Our AggMask* head, fed the fixture's FPN features and the authors' weights (through
convert_authors_state_dict), reproduces the authors' AggMaskStarHead on both fixture heads (main:
cross neighbours; halfgrid: coarser mask grid, corners) and the dense run that hits both caps.

Fixture and tolerances: ../shared/reference/aggmask (see tests/aggmask_fixtures.py).
"""

import numpy as np
import pytest
from aggmask_fixtures import (
    LOGIT_ATOL,
    VARIANTS,
    aggmask_file,
    cand_logit_diff,
    check,
    compare_heads,
    compare_inference,
    compare_training,
    fixture_json,
    load_fixture_model,
    neighbour_problems,
    reference,
    run_inference,
)

EXPECTED_DETECTIONS = {"main": 62, "halfgrid": 57}


@pytest.fixture(scope="module", params=VARIANTS)
def variant(request):
    model = load_fixture_model(request.param)
    return request.param, model, reference(request.param), run_inference(model)


def test_heads_and_fixed_cells_equal_the_authors(variant):
    """Towers, mask feature, context and every mask cell's logits; the aggregated logits and hidden
    layers of 55 fixed cells (corners, borders, interior) of every level."""
    name, model, ref, (outputs, _, _, _) = variant
    measured = compare_heads(model, ref, outputs)
    assert check(measured, []) == [], measured
    assert measured["fixed_logits"] <= LOGIT_ATOL
    assert neighbour_problems(model, ref) == []


def test_detections_equal_the_authors(variant):
    """Same candidates, stride filter, NMS inputs and final (level, cell, class) set; scores within
    1e-4, masks at the original size IoU >= 0.98."""
    name, model, ref, (outputs, record, det, masks) = variant
    measured, problems = compare_inference(model, ref, record, det, masks)
    measured["cand_logits"] = cand_logit_diff(model, ref, outputs, record)
    assert check(measured, problems) == [], measured
    assert measured["detections"] == EXPECTED_DETECTIONS[name]


@pytest.mark.parametrize("run,images", [("train1", (0,)), ("train2", (0, 1))])
def test_targets_and_losses_equal_the_authors(variant, run, images):
    """Targets exact (one sample per cell, a later instance overwriting), positives' logits within
    1e-3, dice within 1e-5, loss_ins and loss_cate within 2e-5 relative; one and two images."""
    name, model, ref, _ = variant
    measured, problems = compare_training(model, ref, run, images)
    assert problems == [], measured
    assert measured["num_pos"] == {"train1": 17, "train2": 27}[run]


def test_dense_run_hits_both_caps_like_the_authors():
    """The dense run (category bias + 0.75): 569 candidates, the top 500 into NMS, 300 kept.
    NMS order may swap between near-equal scores (the README's float64 rerun does too); the sets
    are compared by candidate."""
    model = load_fixture_model("main", dense=True)
    ref = reference("main")
    outputs, record, det, masks = run_inference(model)
    measured, problems = compare_inference(model, ref, record, det, masks, prefix="dense_")
    assert check(measured, problems) == [], measured
    assert (measured["candidates"], measured["nms_inputs"], measured["detections"]) == (569, 500, 300)


def test_neighbour_tables_of_every_real_config():
    """Our tables equal the authors' for every real config (R-50/R-101, -mask-grid, +cls-grid and
    its 60-50-36 form), and the configs under configs/AggMask pick the same mode and sizes."""
    from blendmask.modeling.aggmask import NUM_NEIGHBOURS, neighbour_table, resolve_mode

    tables = np.load(aggmask_file("aggmask_full_config_spatial_index.npz"))
    configs = fixture_json()["full_size_configs"]
    assert len(configs) == 4
    for name, c in configs.items():
        mode = "cross" if c["interpolation_mode"] == 5 else "auto"
        mode = resolve_mode(mode, c["cls_grid_number"], c["mask_grid_number"])
        assert NUM_NEIGHBOURS[mode] == c["nearest_neighbour"], name
        for level, (sc, sm) in enumerate(zip(c["cls_grid_number"], c["mask_grid_number"])):
            np.testing.assert_array_equal(neighbour_table(sc, sm, mode).numpy(), tables[f"{name}__l{level}"],
                                          err_msg=f"{name} level {level}")


@pytest.mark.parametrize("config,authors", [
    ("AggMaskStar_R50.yaml", "star_r50_fpn"), ("AggMaskStar_R101.yaml", "star_r50_fpn"),
    ("AggMaskStar_R101_HalfMaskGrid.yaml", "star_r101_fpn_halve_maskgrid"),
    ("AggMaskStar_R50_HalfMaskGrid.yaml", "star_r101_fpn_halve_maskgrid"),
])
def test_shipped_configs_build_the_authors_head(config, authors):
    """Full-size head from our configs: the authors' grids, neighbour mode, K, and their 58
    parameter tensors (12.1M values) under the mapped names, shape for shape."""
    from detectron2.modeling import build_model

    from blendmask import load_config
    from blendmask.modeling.aggmask.convert import our_name
    from conftest import REPO_ROOT

    c = fixture_json()["full_size_configs"][authors]
    small_backbone = ["MODEL.RESNETS.DEPTH", 18, "MODEL.RESNETS.RES2_OUT_CHANNELS", 64]  # the head is what counts
    cfg = load_config(REPO_ROOT / "configs" / "AggMask" / config,
                      ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu", *small_backbone])
    model = build_model(cfg)
    assert model.ins_head.num_grids == c["cls_grid_number"]
    assert model.ins_head.kernel_grids == c["mask_grid_number"]
    assert model.fcn.num_params == c["learned_weight_number"]
    assert list(model.weight_head.weight_pred.weight.shape) == c["learned_weights_conv"]
    head = {k: v for k, v in model.state_dict().items() if not k.startswith("backbone.")}
    assert len(head) == 58 and sum(v.numel() for v in head.values()) == {945: 12118289, 909: 12109037}[
        c["learned_weight_number"]]
    theirs = {our_name(name): shape for name, shape, _ in fixture_json()["state_dict"]["main"]}
    assert set(theirs) == set(head)  # every authors' name maps to one of ours, and back
