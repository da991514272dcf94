"""Property tests: target assignment and the blender on random boxes, masks and image sizes."""

import torch
from detectron2.structures import BitMasks, Boxes, Instances
from hypothesis import given, settings
from hypothesis import strategies as st

from blendmask.inference import Locations
from blendmask.modeling.blendmask import Blender
from blendmask.modeling.fcos import Positives
from blendmask.modeling.fcos.targets import (
    assign_targets_single_image,
    compute_ctrness_targets,
    compute_locations,
    size_ranges_from_sizes_of_interest,
)

STRIDES = [8, 16, 32]


@st.composite
def image_and_boxes(draw):
    h = draw(st.integers(1, 200))
    w = draw(st.integers(1, 200))
    n = draw(st.integers(0, 6))
    coords = st.floats(-50, 250, allow_nan=False, width=32)
    boxes = []
    for _ in range(n):
        x0, x1 = sorted((draw(coords), draw(coords)))
        y0, y1 = sorted((draw(coords), draw(coords)))
        boxes.append([x0, y0, x1, y1])
    return h, w, torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)


@settings(max_examples=60, deadline=None)
@given(data=image_and_boxes(), radius=st.floats(0.5, 3.0), center_sample=st.booleans())
def test_target_assignment_is_consistent(data, radius, center_sample):
    h, w, boxes = data
    feats = [torch.zeros(1, 1, -(-h // s), -(-w // s)) for s in STRIDES]
    locs = compute_locations(feats, STRIDES)
    all_locs = torch.cat(locs)
    strides = torch.cat([torch.full((len(loc),), float(s)) for loc, s in zip(locs, STRIDES)])
    ranges = size_ranges_from_sizes_of_interest([64, 128])
    size_ranges = torch.cat([torch.tensor([r]).expand(len(loc), 2) for loc, r in zip(locs, ranges)])
    classes = torch.arange(len(boxes)) % 3
    t = assign_targets_single_image(all_locs, strides, size_ranges, boxes, classes, 3, center_sample, radius)
    assert t["labels"].shape == (len(all_locs),) and t["reg_targets"].shape == (len(all_locs), 4)
    pos = t["labels"] != 3
    reg = t["reg_targets"][pos]
    assert torch.isfinite(t["reg_targets"]).all()
    assert (reg > 0).all(), "positives lie strictly inside their box"
    if pos.any():
        assert torch.equal(t["labels"][pos], classes[t["gt_inds"][pos]])
        ctr = compute_ctrness_targets(reg)
        assert torch.isfinite(ctr).all() and (ctr > 0).all() and (ctr <= 1).all()
        max_reg = reg.max(dim=1).values
        assert ((max_reg >= size_ranges[pos, 0]) & (max_reg <= size_ranges[pos, 1])).all()


@settings(max_examples=40, deadline=None)
@given(
    k=st.integers(1, 5), m=st.integers(1, 8), r=st.integers(2, 16), n=st.integers(0, 5),
    h=st.integers(8, 96), w=st.integers(8, 96), seed=st.integers(0, 2**16),
)
def test_blender_shapes_and_finiteness(k, m, r, n, h, w, seed):
    g = torch.Generator().manual_seed(seed)
    blender = Blender(num_bases=k, attn_size=m, resolution=r)
    bases = torch.randn(1, k, -(-h // 4), -(-w // 4), generator=g) * 10
    xy = torch.rand(n, 2, generator=g) * torch.tensor([w, h])
    wh = torch.rand(n, 2, generator=g) * 60
    boxes = torch.cat([xy - 5, xy + wh], dim=1)  # may cross the border, may be tiny

    attns = torch.randn(n, k * m * m, generator=g) * 20
    probs = blender.eval().mask_probs([bases], [boxes], attns)
    assert probs.shape == (n, r, r)
    assert torch.isfinite(probs).all()
    assert ((probs >= 0) & (probs <= 1)).all()

    gt = Instances((h, w))
    gt.gt_boxes = Boxes(boxes.clamp(min=0))
    gt.gt_masks = BitMasks(torch.rand(n, h, w, generator=g) > 0.5)
    gt_inds = torch.randint(0, max(n, 1), (n,), generator=g) if n else torch.zeros(0, dtype=torch.long)
    zeros = torch.zeros_like(gt_inds)
    pos = Positives(Locations(zeros, zeros, zeros), gt_inds=gt_inds, gt_ctrs=torch.rand(n, generator=g), labels=zeros)
    attns = torch.randn(n, k * m * m, generator=g)
    loss = blender.train().losses([bases], attns, pos, [gt], loss_denorm=max(pos.gt_ctrs.sum().item(), 1e-6))[
        "loss_mask"]
    assert torch.isfinite(loss) and loss >= 0
