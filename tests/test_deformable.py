"""Deformable convolutions run through torchvision (no compiled detectron2 needed)."""

import torch
from detectron2.modeling import build_model
from detectron2.modeling.backbone.resnet import BottleneckBlock, DeformBottleneckBlock
from torch.nn import functional as F

from blendmask.modeling.backbone.resnet_interval import TorchvisionModulatedDeformConv
from blendmask.modeling.layers import ModulatedDeformConv3x3
from conftest import tiny_cfg
from conftest import training_input as _inputs


def test_head_deform_conv_with_zero_offsets_is_a_half_weighted_conv():
    conv = ModulatedDeformConv3x3(4, 5)
    x = torch.randn(2, 4, 7, 9)
    expected = F.conv2d(x, conv.conv.weight * 0.5, padding=1) + conv.conv.bias[None, :, None, None]
    torch.testing.assert_close(conv(x), expected, rtol=1e-4, atol=1e-5)  # mask = sigmoid(0)
    assert set(conv.state_dict()) == {"offset.weight", "offset.bias", "conv.weight", "conv.bias"}


def test_deformable_interval_resnet_builds_and_runs():
    cfg = tiny_cfg(**{
        "MODEL.RESNETS.DEFORM_ON_PER_STAGE": [False, True, True, True],
        "MODEL.RESNETS.DEFORM_MODULATED": True,
        "MODEL.RESNETS.DEFORM_INTERVAL": 3,
    })
    model = build_model(cfg)
    res4 = model.backbone.bottom_up.res4  # 6 blocks in ResNet-50: 0 and 3 deformable
    kinds = [isinstance(b, DeformBottleneckBlock) for b in res4]
    assert kinds == [True, False, False, True, False, False]
    assert all(isinstance(b, BottleneckBlock) for b, k in zip(res4, kinds) if not k)
    assert isinstance(res4[0].conv2, TorchvisionModulatedDeformConv)
    losses = model.train()([_inputs()])
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert res4[0].conv2_offset.weight.grad is not None
    with torch.no_grad():
        model.eval()([{"image": torch.rand(3, 64, 64) * 255}])
