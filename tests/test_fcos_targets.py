import pytest
import torch

from blendmask.modeling.fcos.targets import (
    INF,
    assign_targets_single_image,
    center_sampling_mask,
    compute_ctrness_targets,
    compute_locations,
    size_ranges_from_sizes_of_interest,
)


def _levels(strides, sizes):
    """Locations, per-location strides and size ranges for feature maps of the given sizes."""
    feats = [torch.zeros(1, 1, h, w) for h, w in sizes]
    locs = compute_locations(feats, strides)
    level_strides = torch.cat([torch.full((len(loc),), float(s)) for loc, s in zip(locs, strides)])
    ranges = size_ranges_from_sizes_of_interest([64, 128, 256, 512])[: len(strides)]
    ranges[-1][1] = INF
    size_ranges = torch.cat([torch.tensor([r]).expand(len(loc), 2) for loc, r in zip(locs, ranges)])
    return locs, torch.cat(locs), level_strides, size_ranges


def test_locations_are_cell_centres():
    locs = compute_locations([torch.zeros(1, 1, 2, 3)], [8])[0]
    expected = torch.tensor([[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12]], dtype=torch.float32)
    torch.testing.assert_close(locs, expected)
    # odd strides use integer division for the half-cell offset, as AdelaiDet does
    assert compute_locations([torch.zeros(1, 1, 1, 1)], [7])[0].tolist() == [[3.0, 3.0]]


def test_size_ranges():
    assert size_ranges_from_sizes_of_interest([64, 128]) == [[-1, 64], [64, 128], [128, INF]]


def test_small_box_is_positive_only_on_p3_near_its_centre():
    per_level, locs, strides, ranges = _levels([8, 16], [(8, 8), (4, 4)])
    box = torch.tensor([[16.0, 16.0, 48.0, 48.0]])  # 32x32: max distance <= 32 -> P3 range [-1, 64]
    t = assign_targets_single_image(locs, strides, ranges, box, torch.tensor([3]), num_classes=5)
    positive = t["labels"] != 5
    n3 = len(per_level[0])
    assert not positive[n3:].any(), "nothing on P4 for a 32 px box"
    # centre (32, 32), radius 1.5 * 8 = 12 -> x, y in (20, 44): P3 centres 28 and 36
    pos_xy = {tuple(p) for p in locs[positive].tolist()}
    assert pos_xy == {(28.0, 28.0), (36.0, 28.0), (28.0, 36.0), (36.0, 36.0)}
    assert (t["labels"][positive] == 3).all()
    # l,t,r,b of location (28, 28) in pixels
    idx = [i for i, p in enumerate(locs.tolist()) if p == [28.0, 28.0]][0]
    assert t["reg_targets"][idx].tolist() == [12.0, 12.0, 20.0, 20.0]
    assert (t["gt_inds"][positive] == 0).all()


def test_large_box_goes_to_coarser_level():
    per_level, locs, strides, ranges = _levels([8, 16], [(16, 16), (8, 8)])
    box = torch.tensor([[0.0, 0.0, 120.0, 120.0]])  # max distance near the centre ~ 60-76
    t = assign_targets_single_image(locs, strides, ranges, box, torch.tensor([0]), num_classes=5)
    positive = t["labels"] != 5
    n3 = len(per_level[0])
    reg_max = t["reg_targets"].max(dim=1).values
    assert (reg_max[:n3][positive[:n3]] <= 64).all()
    assert (reg_max[n3:][positive[n3:]] >= 64).all()
    assert positive[n3:].any()


def test_ambiguous_location_takes_the_smallest_box():
    _, locs, strides, ranges = _levels([8], [(8, 8)])
    ranges = torch.tensor([[-1.0, INF]]).expand(len(locs), 2)
    boxes = torch.tensor([[0.0, 0.0, 64.0, 64.0], [20.0, 20.0, 44.0, 44.0]])
    t = assign_targets_single_image(locs, strides, ranges, boxes, torch.tensor([1, 2]), 5,
                                    center_sample=False)
    idx = [i for i, p in enumerate(locs.tolist()) if p == [28.0, 28.0]][0]
    assert t["labels"][idx] == 2 and t["gt_inds"][idx] == 1


def test_center_sampling_region_is_clipped_to_box():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 100.0]])
    centers = torch.tensor([[5.0, 50.0]])
    locations = torch.tensor([[9.0, 50.0], [11.0, 50.0], [5.0, 30.0], [5.0, 37.0]])
    inside = center_sampling_mask(boxes, centers, locations, torch.full((4,), 8.0), radius=1.5)
    # x clipped to the box (0, 10); y region is 50 +- 12 = (38, 62), strict inequalities
    assert inside[:, 0].tolist() == [True, False, False, False]


def test_no_ground_truth_gives_background_everywhere():
    _, locs, strides, ranges = _levels([8], [(4, 4)])
    t = assign_targets_single_image(locs, strides, ranges, torch.zeros(0, 4),
                                    torch.zeros(0, dtype=torch.long), num_classes=5)
    assert (t["labels"] == 5).all() and (t["gt_inds"] == -1).all()
    assert t["reg_targets"].shape == (16, 4)


def test_ctrness_targets():
    reg = torch.tensor([[10.0, 10.0, 10.0, 10.0], [5.0, 20.0, 15.0, 10.0]])
    expected = torch.tensor([1.0, (5 / 15 * 10 / 20) ** 0.5])
    torch.testing.assert_close(compute_ctrness_targets(reg), expected)
    assert compute_ctrness_targets(torch.zeros(0, 4)).shape == (0,)


@pytest.mark.parametrize("radius", [1.0, 1.5, 2.5])
def test_positive_locations_lie_inside_their_boxes(radius):
    torch.manual_seed(0)
    _, locs, strides, ranges = _levels([8, 16, 32], [(16, 16), (8, 8), (4, 4)])
    xy = torch.rand(6, 2) * 100
    wh = torch.rand(6, 2) * 120 + 4
    boxes = torch.cat([xy, xy + wh], dim=1)
    t = assign_targets_single_image(locs, strides, ranges, boxes, torch.arange(6) % 5, 5, radius=radius)
    pos = t["labels"] != 5
    assert (t["reg_targets"][pos] > 0).all()
    torch.testing.assert_close(t["labels"][pos], (torch.arange(6) % 5)[t["gt_inds"][pos]])
