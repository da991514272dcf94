import copy

import pytest
import torch
from detectron2.modeling import build_model

from blendmask.modeling.layers import conv_at_locations, supports_conv_at_locations
from conftest import tiny_cfg, training_input


def test_conv_at_locations_equals_the_dense_conv_and_its_gradient():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 12, 3, padding=1)
    feats = [torch.randn(2, 8, 9, 13, requires_grad=True), torch.randn(2, 8, 5, 7, requires_grad=True)]
    levels = torch.tensor([0, 1, 0, 1, 0, 0])
    images = torch.tensor([0, 1, 1, 0, 1, 1])
    cells = torch.tensor([0, 34, 116, 6, 50, 12])  # corners and edges included
    sparse = conv_at_locations(conv, feats, levels, images, cells)
    dense = [conv(f).flatten(2) for f in feats]
    expected = torch.stack([dense[lv][im, :, c] for lv, im, c in zip(levels.tolist(), images.tolist(), cells.tolist())])
    torch.testing.assert_close(sparse, expected, rtol=1e-5, atol=1e-5)
    g_sparse = torch.autograd.grad(sparse.square().sum(), feats + [conv.weight])
    g_dense = torch.autograd.grad(expected.square().sum(), feats + [conv.weight])
    for a, b in zip(g_sparse, g_dense):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert conv_at_locations(conv, feats, levels[:0], images[:0], cells[:0]).shape == (0, 12)


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


def test_sparse_and_dense_attention_give_the_same_model_outputs():
    cfg = tiny_cfg(**{"MODEL.FCOS.INFERENCE_TH_TEST": 0.0, "MODEL.FCOS.POST_NMS_TOPK_TEST": 20})
    model = build_model(cfg)
    torch.nn.init.normal_(model.top_layer.weight, std=0.1)
    torch.nn.init.constant_(model.proposal_generator.fcos_head.bbox_pred.bias, 2.0)
    initial = copy.deepcopy(model.state_dict())  # training-mode BN updates running statistics
    results = {}
    for sparse in (True, False):
        model.load_state_dict(initial)
        model.proposal_generator.sparse_top_module = sparse
        torch.manual_seed(0)
        losses = model.train()([training_input()])
        probs = []
        hook = model.blender.register_forward_hook(
            lambda m, a, out, probs=probs: probs.append(out[0].pred_masks.clone()))
        with torch.no_grad():
            out = model.eval()([{"image": training_input()["image"]}])[0]["instances"]
        hook.remove()
        out.mask_probs = probs[0]
        results[sparse] = (losses, out)
    (l1, o1), (l2, o2) = results[True], results[False]
    for key in l1:
        torch.testing.assert_close(l1[key], l2[key], rtol=1e-5, atol=1e-6)
    assert len(o1) == len(o2) == 20
    torch.testing.assert_close(o1.top_feat, o2.top_feat, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(o1.mask_probs, o2.mask_probs, rtol=0, atol=1e-5)
    torch.testing.assert_close(o1.pred_boxes.tensor, o2.pred_boxes.tensor)
