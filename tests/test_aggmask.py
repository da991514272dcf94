"""AggMask* pieces: the per-cell network (layout, eager and traced forms, no cells), the neighbour
tables' rules, the parameter-name converter, the config keys (SOLOv2's stay AdelaiDet's by default)."""

import pytest
import torch
from torch.nn import functional as F

from blendmask.modeling.aggmask import (
    CellFCN,
    aggregated_logits,
    convert_authors_state_dict,
    global_neighbour_index,
    neighbour_table,
    resolve_mode,
)
from blendmask.modeling.aggmask.aggregation import _cell_conv, _cell_conv_traceable
from conftest import REPO_ROOT


def test_cell_fcn_layout_matches_the_paper_sizes():
    assert CellFCN(5).num_params == 945 and CellFCN(4).num_params == 909
    shapes = [(w.shape[1:], b.shape[1:]) for w, b in CellFCN(5).split(torch.zeros(2, 945))]
    assert shapes == [((4, 21, 3, 3), (4,)), ((4, 4, 3, 3), (4,)), ((1, 4, 3, 3), (1,))]
    with pytest.raises(ValueError, match="945"):
        CellFCN(5).split(torch.zeros(2, 944))


def test_cell_fcn_equals_a_plain_per_cell_network():
    """Each cell's output is its own 3-layer conv net (zero padding, ReLU between) on [its
    neighbours' logits, the context]."""
    g = torch.Generator().manual_seed(0)
    fcn = CellFCN(5)
    x, ctx = torch.randn(3, 5, 9, 11, generator=g), torch.randn(16, 9, 11, generator=g)
    params = torch.randn(3, fcn.num_params, generator=g) * 0.3
    out = fcn(x, ctx, params)
    for p in range(3):
        y = torch.cat([x[p], ctx])[None]
        for i, (w, b) in enumerate(fcn.split(params[p:p + 1])):
            y = F.conv2d(y, w[0], b[0], padding=1)
            y = F.relu(y) if i < 2 else y
        torch.testing.assert_close(out[p], y[0, 0], rtol=0, atol=1e-5)


def test_traced_form_equals_the_grouped_convolution():
    g = torch.Generator().manual_seed(1)
    x, w, b = torch.randn(4, 6, 7, 8, generator=g), torch.randn(4, 3, 6, 3, 3, generator=g), torch.randn(4, 3)
    torch.testing.assert_close(_cell_conv_traceable(x, w, b, 6, 3, 3), _cell_conv(x, w, b, 6, 3, 3),
                               rtol=0, atol=1e-5)


def test_no_cells_gives_no_masks():
    fcn = CellFCN(5)
    neighbours = global_neighbour_index([3, 2], [3, 2], "cross")
    out = aggregated_logits(fcn, torch.randn(8, 6, 7), torch.randn(16, 6, 7), torch.randn(13, 8),
                            torch.randn(13, fcn.num_params), neighbours, torch.zeros(0, dtype=torch.int64))
    assert out.shape == (0, 6, 7)


def test_neighbour_rules():
    # cross: up, left, centre, right, down, clamped at the borders
    assert neighbour_table(3, 3, "cross")[0].tolist() == [[0, 0], [0, 0], [0, 0], [0, 1], [1, 0]]
    assert neighbour_table(3, 3, "cross")[4].tolist() == [[0, 1], [1, 0], [1, 1], [1, 2], [2, 1]]
    # corner: (floor y, ceil x), (ceil y, ceil x), (ceil y, floor x), (floor y, floor x)
    assert neighbour_table(3, 2, "corner")[4].tolist() == [[0, 1], [1, 1], [1, 0], [0, 0]]
    assert resolve_mode("auto", [40, 36], [40, 18]) == "cross"
    assert resolve_mode("auto", [40, 36], [20, 18]) == "corner"
    with pytest.raises(ValueError, match="NEIGHBOURS"):
        resolve_mode("nine", [4], [4])
    with pytest.raises(ValueError, match="positive"):
        resolve_mode("auto", [4, 0], [4, 2])
    # global rows: level 1's mask cells follow level 0's
    index = global_neighbour_index([2, 2], [2, 2], "cross")
    assert index.shape == (8, 5) and index[4:].min() == 4


def test_converter_maps_every_name_and_refuses_unknown_ones():
    theirs = {"bbox_head.solo_cate.bias": torch.zeros(1), "bbox_head.learned_weights.weight": torch.zeros(1),
              "bbox_head.kernel_convs_convcomb.2.gn.bias": torch.zeros(1), "backbone.conv1.weight": torch.zeros(1)}
    assert set(convert_authors_state_dict(theirs, prefix="bbox_head.")) == {
        "ins_head.cate_pred.bias", "weight_head.weight_pred.weight", "weight_head.tower.7.bias"}
    with pytest.raises(KeyError, match="no mapping"):
        convert_authors_state_dict({"bbox_head.mystery": torch.zeros(1)}, prefix="bbox_head.")


def test_config_keys_keep_adelaidet_solov2_and_select_the_authors():
    from blendmask import get_cfg, load_config
    from conftest import REPO_ROOT

    s = get_cfg().MODEL.SOLOV2
    assert (s.MASK_TOWER_NORM, s.MASK_TOWER_BIAS, s.KERNEL_PRED_KERNEL_SIZE, s.ONE_SAMPLE_PER_CELL,
            s.MIN_MASK_PIXELS, s.MAX_PER_IMG) == (None, True, 3, False, 1, 100)
    a = load_config(REPO_ROOT / "configs" / "AggMask" / "AggMaskStar_R101_HalfMaskGrid.yaml")
    assert a.MODEL.META_ARCHITECTURE == "AggMask" and a.MODEL.RESNETS.DEPTH == 101
    assert list(a.MODEL.AGGMASK.MASK_GRIDS) == [20, 18, 12, 8, 6]
    assert (a.MODEL.SOLOV2.MASK_TOWER_NORM, a.MODEL.SOLOV2.MASK_TOWER_BIAS, a.MODEL.SOLOV2.KERNEL_PRED_KERNEL_SIZE,
            a.MODEL.SOLOV2.ONE_SAMPLE_PER_CELL, a.MODEL.SOLOV2.MIN_MASK_PIXELS, a.MODEL.SOLOV2.MAX_PER_IMG) == (
        "none", False, 1, True, 10, 300)


def test_set_num_classes_covers_aggmask():
    from blendmask import get_cfg
    from blendmask.data import set_num_classes

    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "AggMask"
    cfg.DATASETS.TRAIN = cfg.DATASETS.TEST = ()
    cfg.MODEL.SOLOV2.NUM_CLASSES = 7
    assert set_num_classes(cfg) == 7 and cfg.MODEL.FCOS.NUM_CLASSES == 7


def test_aggregated_logits_equal_a_plain_computation():
    """The eager path (one matrix product into channels-last memory, shared neighbours computed
    once) gives each cell its plain network on its own neighbours' logits and the context."""
    g = torch.Generator().manual_seed(2)
    grids = [6, 4]
    table = global_neighbour_index(grids, grids, "cross")
    fcn = CellFCN(5, context_channels=3)
    feat, ctx = torch.randn(8, 10, 12, generator=g), torch.randn(3, 10, 12, generator=g)
    kernel_grid = torch.randn(len(table), 8, generator=g)
    weight_grid = torch.randn(len(table), fcn.num_params, generator=g) * 0.3
    cells = torch.tensor([0, 7, 8, 35, 36, 51])  # corner, neighbours sharing cells, both levels
    out = aggregated_logits(fcn, feat, ctx, kernel_grid, weight_grid, table, cells)
    assert out.shape == (6, 10, 12) and out.is_contiguous()
    for p, cell in enumerate(cells):
        nb_logits = torch.einsum("ne,ehw->nhw", kernel_grid[table[cell]], feat)
        y = torch.cat([nb_logits, ctx])[None]
        for i, (w, b) in enumerate(fcn.split(weight_grid[cell:cell + 1])):
            y = F.conv2d(y, w[0], b[0], padding=1)
            y = F.relu(y) if i < 2 else y
        torch.testing.assert_close(out[p], y[0, 0], rtol=0, atol=1e-4)


@pytest.mark.parametrize("mode,nb", [("cross", 5), ("corner", 4)])
def test_identity_start_passes_the_cells_own_logit_through(mode, nb):
    g = torch.Generator().manual_seed(3)
    fcn = CellFCN(nb)
    x, ctx = torch.randn(3, nb, 9, 11, generator=g) * 20, torch.rand(16, 9, 11, generator=g)
    own = x[:, 2] if mode == "cross" else x.mean(1)
    exact = fcn.identity_params(mode, spare_scale=0.0)
    torch.testing.assert_close(fcn(x, ctx, exact.expand(3, -1)), own, rtol=0, atol=1e-4)
    # the spare channels add a small, not zero, part (so they are not symmetric or dead)
    near = fcn(x, ctx, fcn.identity_params(mode, generator=g).expand(3, -1))
    assert 0 < (near - own).abs().max() < 0.05 * own.abs().max()
    hidden = []
    fcn(x, ctx, exact.expand(3, -1), hidden=hidden)
    # ReLU(x) and ReLU(-x): wherever x != 0 one of the two carried units is alive
    assert all(bool(((h[:, 0] > 0) | (h[:, 1] > 0)).all()) for h in hidden)
    with pytest.raises(ValueError, match="2 channels"):
        CellFCN(nb, channels=1).identity_params(mode)
    with pytest.raises(ValueError, match="neighbours"):
        CellFCN(nb + 1).identity_params(mode)
    with pytest.raises(ValueError, match="neighbour mode"):
        CellFCN(nb).identity_params("auto")


def test_identity_start_in_the_model_gives_solov2_masks_at_first():
    """WEIGHT_PRED_INIT identity: before any training, every cell's aggregated logits are its own
    SOLOv2 mask logits up to the small learned part; "default" (the authors') are far from them."""
    from blendmask import build_model_and_load, load_config
    from blendmask.modeling.solov2.losses import dynamic_masks

    def cell_and_own_logits(init):
        cfg = load_config(REPO_ROOT / "configs" / "Shapes" / "AggMask_R18.yaml",
                          ["MODEL.DEVICE", "cpu", "MODEL.AGGMASK.WEIGHT_PRED_INIT", init])
        torch.manual_seed(0)
        model = build_model_and_load(cfg).eval()
        image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0)) * 255
        with torch.no_grad():
            images = model.preprocess_image([{"image": image}])
            outputs = model.heads(model.backbone(model.backbone_input(images.tensor)))
            cells = torch.tensor([0, 45, 130, 400, 590])
            agg = model.cell_logits(outputs, 0, cells)
            mask_feat, _, kernel_grid, _ = model.image_grids(outputs, 0)
            own = dynamic_masks(mask_feat, kernel_grid[model.neighbours[cells, 2]])
        return agg, own

    def relative_gap(agg, own):
        return ((agg - own).abs().mean() / own.abs().mean()).item()

    # seen: 0.064 (identity) and 5.0 (default); the learned part is small, the random network is not
    assert relative_gap(*cell_and_own_logits("identity")) < 0.15
    assert relative_gap(*cell_and_own_logits("default")) > 1.0
    with pytest.raises(ValueError, match="WEIGHT_PRED_INIT"):
        from blendmask.modeling.aggmask import AggregationWeightHead

        AggregationWeightHead(8, 8, 10, init="zeros")
