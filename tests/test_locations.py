"""Features and convolutions at chosen feature-map cells (blendmask.inference.locations)."""

import copy

import pytest
import torch
from detectron2.modeling import build_model

from blendmask.inference import Locations, conv_at_locations, gather_patches, supports_conv_at_locations
from conftest import tiny_cfg, training_input


def _locations():
    # corners and edges of both levels included
    return Locations(torch.tensor([0, 1, 0, 1, 0, 0]), torch.tensor([0, 1, 1, 0, 1, 1]),
                     torch.tensor([0, 34, 116, 6, 50, 12]))


def _dense_at(maps, locs):
    flat = [m.flatten(2) for m in maps]
    return torch.stack([flat[lv][im, :, c] for lv, im, c in zip(*(t.tolist() for t in locs))])


def test_conv_at_locations_equals_the_dense_conv_and_its_gradient():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 12, 3, padding=1)
    feats = [torch.randn(2, 8, 9, 13, requires_grad=True), torch.randn(2, 8, 5, 7, requires_grad=True)]
    locs = _locations()
    sparse = conv_at_locations(conv, feats, locs)
    expected = _dense_at([conv(f) for f in feats], locs)
    torch.testing.assert_close(sparse, expected, rtol=1e-5, atol=1e-5)
    g_sparse = torch.autograd.grad(sparse.square().sum(), feats + [conv.weight])
    g_dense = torch.autograd.grad(expected.square().sum(), feats + [conv.weight])
    for a, b in zip(g_sparse, g_dense):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    empty = Locations(*(t[:0] for t in locs))
    assert conv_at_locations(conv, feats, empty).shape == (0, 12)


def test_conv_at_locations_on_channels_last_maps():
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(8, 5, 3, padding=1)
    feats = [torch.randn(2, 8, 9, 13), torch.randn(2, 8, 5, 7)]
    nhwc = [f.contiguous(memory_format=torch.channels_last) for f in feats]
    locs = _locations()
    torch.testing.assert_close(conv_at_locations(conv, nhwc, locs), conv_at_locations(conv, feats, locs))


def test_gather_patches_reads_the_cells_and_zero_pads_the_border():
    feats = [torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)]
    locs = Locations(torch.tensor([0, 0]), torch.tensor([1, 0]), torch.tensor([7, 0]))
    torch.testing.assert_close(gather_patches(feats, locs), _dense_at(feats, locs))
    patches = gather_patches(feats, locs, kernel_size=3).reshape(2, 3, 3, 3)  # (P, ky, kx, C)
    # cell 0 of image 0 is the top-left corner: its upper row and left column are padding
    assert (patches[1, 0] == 0).all() and (patches[1, :, 0] == 0).all()
    torch.testing.assert_close(patches[1, 1, 1], feats[0][0, :, 0, 0])
    torch.testing.assert_close(patches[0, 2, 2], feats[0][1, :, 2, 3])  # cell 7 = (1, 2); +1, +1


def test_conv_at_locations_stays_dynamic_when_traced():
    """Traced on one map size and detection count, the graph is right for others."""
    torch.manual_seed(2)
    conv = torch.nn.Conv2d(4, 6, 3, padding=1)

    class AtCells(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = conv

        def forward(self, feat, cells):
            locs = Locations(torch.zeros_like(cells), torch.zeros_like(cells), cells)
            return conv_at_locations(self.conv, [feat], locs)

    with torch.no_grad():
        traced = torch.jit.trace(AtCells(), (torch.randn(1, 4, 6, 7), torch.tensor([0, 8, 41])), check_trace=False)
        feat, cells = torch.randn(1, 4, 9, 11), torch.tensor([0, 10, 11, 98, 50])
        torch.testing.assert_close(traced(feat, cells), _dense_at([conv(feat)], Locations(
        torch.zeros_like(cells), torch.zeros_like(cells), cells)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("conv,ok", [
    (torch.nn.Conv2d(4, 4, 3, padding=1), True),
    (torch.nn.Conv2d(4, 4, 1), True),
    (torch.nn.Conv2d(4, 4, 3, padding=1, stride=2), False),
    (torch.nn.Conv2d(4, 4, 3, padding=0), False),
    (torch.nn.Conv2d(4, 4, 3, padding=2, dilation=2), False),
    (torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, padding=1)), False),
])
def test_which_modules_can_run_sparsely(conv, ok):
    assert supports_conv_at_locations(conv) == ok
    if not ok and isinstance(conv, torch.nn.Conv2d):
        with pytest.raises(ValueError, match="same"):
            conv_at_locations(conv, [torch.zeros(1, 4, 3, 3)], _locations())


def test_sparse_and_dense_attention_give_the_same_model_outputs():
    """MODEL.BLENDMASK.SPARSE_ATTENTION switches only how the attention is computed."""
    results = {}
    initial = None
    for sparse in (True, False):
        cfg = tiny_cfg(**{"MODEL.FCOS.INFERENCE_TH_TEST": 0.0, "MODEL.FCOS.POST_NMS_TOPK_TEST": 20,
                          "MODEL.BLENDMASK.SPARSE_ATTENTION": sparse})
        torch.manual_seed(0)
        model = build_model(cfg)
        assert model.top_layer.sparse == sparse
        if initial is None:
            torch.nn.init.normal_(model.top_layer.weight, std=0.1)
            torch.nn.init.constant_(model.proposal_generator.fcos_head.bbox_pred.bias, 2.0)
            initial = copy.deepcopy(model.state_dict())  # training-mode BN updates running statistics
        model.load_state_dict(initial)
        torch.manual_seed(0)
        losses = model.train()([training_input()])
        model.eval()
        with torch.no_grad():
            images = model.preprocess_image([{"image": training_input()["image"]}])
            features = model.backbone(model.backbone_input(images.tensor))
            sizes = images.image_sizes
            out = model.inference(features, sizes, sizes)[0]
        results[sparse] = (losses, out)
    (l1, o1), (l2, o2) = results[True], results[False]
    for key in l1:
        torch.testing.assert_close(l1[key], l2[key], rtol=1e-5, atol=1e-6)
    # 20 detections, less those whose box lies wholly in the padding (empty once clipped)
    assert len(o1["scores"]) == len(o2["scores"]) >= 10
    torch.testing.assert_close(o1["mask_probs"], o2["mask_probs"], rtol=0, atol=1e-5)
    torch.testing.assert_close(o1["boxes"], o2["boxes"])
