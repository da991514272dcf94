import numpy as np
import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.structures import BitMasks, Instances, PolygonMasks

from blendmask.modeling.blendmask import ProtoNet, semantic_targets_from_instances
from blendmask.modeling.layers import conv_norm_relu


def _features(n=1, c=16, h=8, w=12):
    return {
        "p3": torch.randn(n, c, h, w),
        "p4": torch.randn(n, c, (h + 1) // 2, (w + 1) // 2),
        "p5": torch.randn(n, c, (h + 3) // 4, (w + 3) // 4),
    }


def _shapes(c=16):
    return {k: ShapeSpec(channels=c, stride=s) for k, s in (("p3", 8), ("p4", 16), ("p5", 32))}


@pytest.mark.parametrize("num_bases,num_convs,norm", [(4, 3, "BN"), (7, 1, "GN"), (2, 0, "")])
def test_bases_are_at_stride_4_with_k_channels(num_bases, num_convs, norm):
    module = ProtoNet(_shapes(), in_features=["p3", "p4", "p5"], num_bases=num_bases, convs_dim=32,
                      num_convs=num_convs, norm=norm).eval()
    out, losses = module(_features(h=8, w=12))
    assert out["bases"][0].shape == (1, num_bases, 16, 24)
    assert losses == {}
    # a conv has a bias only when it has no norm
    first_conv = module.refine[0][0]
    assert (first_conv.bias is None) == (norm != "")


def test_semantic_loss_in_training():
    module = ProtoNet(_shapes(), in_features=["p3", "p4", "p5"], num_bases=4, convs_dim=32, num_convs=1,
                      norm="BN", loss_on=True, num_classes=3, loss_weight=0.5).train()
    targets = torch.zeros(2, 64, 96, dtype=torch.long)
    targets[:, :32] = 2
    out, losses = module(_features(n=2, h=8, w=12), targets)
    assert set(losses) == {"loss_basis_sem"}
    assert torch.isfinite(losses["loss_basis_sem"]) and losses["loss_basis_sem"] > 0
    with pytest.raises(ValueError, match="sem_targets"):
        module(_features(n=2))


def test_semantic_targets_paint_classes_in_order():
    inst = Instances((6, 8))
    inst.gt_classes = torch.tensor([0, 4])
    masks = torch.zeros(2, 6, 8, dtype=torch.bool)
    masks[0, :4, :4] = True
    masks[1, 2:6, 2:6] = True  # overlaps instance 0 and is painted over it
    inst.gt_masks = BitMasks(masks)
    empty = Instances((6, 8))
    empty.gt_classes = torch.zeros(0, dtype=torch.long)
    empty.gt_masks = BitMasks(torch.zeros(0, 6, 8, dtype=torch.bool))
    out = semantic_targets_from_instances([inst, empty], [(6, 8), (6, 8)], (8, 8), "cpu")
    assert out.shape == (2, 8, 8)
    expected = np.zeros((8, 8), dtype=np.int64)
    expected[:4, :4] = 1
    expected[2:6, 2:6] = 5
    np.testing.assert_array_equal(out[0].numpy(), expected)
    assert out[1].sum() == 0


def test_semantic_targets_from_polygons():
    inst = Instances((10, 10))
    inst.gt_classes = torch.tensor([1])
    inst.gt_masks = PolygonMasks([[np.array([2.0, 2.0, 8.0, 2.0, 8.0, 8.0, 2.0, 8.0])]])
    out = semantic_targets_from_instances([inst], [(10, 10)], (16, 16), "cpu")[0]
    assert out[5, 5] == 2 and out[0, 0] == 0 and out[12, 12] == 0
    assert set(out.unique().tolist()) == {0, 2}


def test_eval_folds_batchnorm_into_the_conv_with_the_same_result():
    torch.manual_seed(0)
    for norm in ("BN", "SyncBN", "GN", ""):
        block = conv_norm_relu(6, 32, norm)
        if len(block) == 3 and hasattr(block[1], "running_var"):
            block[1].running_mean.uniform_(-1, 1)
            block[1].running_var.uniform_(0.5, 2)
            block[1].weight.data.uniform_(-2, 2)
            block[1].bias.data.uniform_(-1, 1)
        block.eval()
        x = torch.randn(2, 6, 9, 11)
        unfolded = block[2](block[1](block[0](x))) if len(block) == 3 else block[1](block[0](x))
        folded = block(x)
        assert folded.shape == (2, 32, 9, 11)
        torch.testing.assert_close(folded, unfolded, rtol=1e-5, atol=1e-5)
        assert (folded == 0).any() and (folded > 0).any(), norm  # the ReLU is applied
