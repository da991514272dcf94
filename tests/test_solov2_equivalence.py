"""Our SOLOv2, loading AdelaiDet's weights as a user would, reproduces AdelaiDet's SOLOv2.

Fixture: ../shared/reference/solov2 (its README says how it was made and which tolerances its own
float64 and 1-thread reruns justify; see tests/solov2_fixtures.py). Each image runs on its own.
"""

import numpy as np
import pytest
import torch
from detectron2.structures import BitMasks
from solov2_fixtures import (
    LOSS_RTOL,
    check_image,
    compare_image,
    load_fixture_model,
    reference_outputs,
    run_image,
    solov2_file,
    training_inputs,
)


@pytest.fixture(scope="module")
def model():
    return load_fixture_model()


@pytest.fixture(scope="module")
def runs(model):
    ref = reference_outputs()
    out = []
    for i in range(3):
        h, w = (int(v) for v in ref[f"img{i}_orig_hw"])
        out.append(run_image(model, ref[f"img{i}_input_bgr_chw_u8"], h, w))
    return ref, out


@pytest.mark.parametrize("i", range(3))
def test_detections_equal_adelaidet(runs, i):
    """Same candidates, NMS inputs and final (cell, class) set; scores within 1e-4, masks IoU >= 0.98."""
    ref, out = runs
    result, record = out[i]
    measured, problems = compare_image(ref, i, result, record)
    assert check_image(measured, problems) == [], measured
    assert measured["count"] == [25, 100, 88][i]


def test_pred_boxes_are_the_tight_boxes_of_the_masks(runs):
    """Beyond AdelaiDet (all-zero boxes): each box is its mask's tight box; scores, classes and masks
    are those AdelaiDet returns (checked above)."""
    ref, out = runs
    for i, (result, _) in enumerate(out):
        expected = BitMasks(result.pred_masks).get_bounding_boxes().tensor
        torch.testing.assert_close(result.pred_boxes.tensor, expected, rtol=0, atol=0)
        assert (result.pred_boxes.area() > 0).all()
        assert not ref[f"img{i}_pred_boxes"].any()  # AdelaiDet's are zeros


def test_zero_boxes_option_keeps_everything_else(model, runs):
    ref, out = runs
    model.boxes_from_masks = False
    try:
        h, w = (int(v) for v in ref["img0_orig_hw"])
        result, _ = run_image(model, ref["img0_input_bgr_chw_u8"], h, w)
    finally:
        model.boxes_from_masks = True
    assert not result.pred_boxes.tensor.any()
    baseline = out[0][0]
    torch.testing.assert_close(result.scores, baseline.scores, rtol=0, atol=0)
    assert torch.equal(result.pred_classes, baseline.pred_classes)
    assert torch.equal(result.pred_masks, baseline.pred_masks)


def test_training_targets_equal_adelaidet(model):
    from blendmask.modeling.solov2 import solov2_targets_single

    ref = np.load(solov2_file("solov2_tiny_train_targets.npz"))
    inputs, _ = training_inputs()
    inst = inputs["instances"]
    assert np.array_equal(inst.gt_masks.tensor.numpy().astype(np.uint8), ref["gt_bitmasks"])
    levels = solov2_targets_single(inst.gt_boxes.tensor, inst.gt_classes, inst.gt_masks.tensor, (120, 160),
                                   model.ins_head.num_grids, model.scale_ranges, model.sigma, model.num_classes)
    assert [len(t.grid_order) for t in levels] == [0, 18, 22, 6, 0]
    for level, t in enumerate(levels):
        np.testing.assert_array_equal(t.cate_label.numpy(), ref[f"level{level}_cate_label"])
        np.testing.assert_array_equal(t.ins_ind_label.numpy(), ref[f"level{level}_ins_ind_label"])
        np.testing.assert_array_equal(t.grid_order.numpy(), ref[f"level{level}_grid_order"])
        np.testing.assert_array_equal(t.ins_label.numpy(), ref[f"level{level}_ins_label"])


def test_training_losses_equal_adelaidet(model):
    import copy

    inputs, ref_losses = training_inputs()
    train_model = copy.deepcopy(model).train()
    losses = train_model([inputs])
    assert set(losses) == {"loss_ins", "loss_cate"}
    for key, value in losses.items():
        assert value.item() == pytest.approx(ref_losses[key], rel=LOSS_RTOL), key
    total = sum(losses.values())
    assert total.item() == pytest.approx(ref_losses["_total"], rel=LOSS_RTOL)
    total.backward()
    assert train_model.ins_head.kernel_pred.weight.grad.abs().sum() > 0
    assert train_model.mask_head.conv_pred[0].weight.grad.abs().sum() > 0
