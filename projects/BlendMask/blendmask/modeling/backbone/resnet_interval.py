"""ResNet with deformable convolutions on every DEFORM_INTERVAL-th block, run by torchvision.

detectron2's ``ModulatedDeformConv`` needs its compiled extension; here every deformable conv
runs through ``torchvision.ops.deform_conv2d`` (CPU and GPU) with the same parameters, so
AdelaiDet's ``dcni3`` checkpoints load unchanged.
"""

from detectron2.layers import DeformConv, ModulatedDeformConv
from detectron2.modeling.backbone import build_resnet_backbone
from detectron2.modeling.backbone.resnet import BottleneckBlock, DeformBottleneckBlock
from torchvision.ops import deform_conv2d


class TorchvisionDeformConv(DeformConv):
    """detectron2 ``DeformConv`` parameters, computed with ``torchvision.ops.deform_conv2d``."""

    def forward(self, x, offset):
        x = deform_conv2d(x, offset, self.weight, getattr(self, "bias", None), self.stride,
                          self.padding, self.dilation)
        return _norm_act(self, x)


class TorchvisionModulatedDeformConv(ModulatedDeformConv):
    """detectron2 ``ModulatedDeformConv`` (DCNv2), computed with torchvision."""

    def forward(self, x, offset, mask):
        x = deform_conv2d(x, offset, self.weight, self.bias, self.stride, self.padding,
                          self.dilation, mask=mask)
        return _norm_act(self, x)


def _norm_act(conv, x):
    if getattr(conv, "norm", None) is not None:
        x = conv.norm(x)
    if getattr(conv, "activation", None) is not None:
        x = conv.activation(x)
    return x


def use_torchvision_deform_convs(module):
    """Make every detectron2 deformable conv in ``module`` run through torchvision (in place)."""
    for m in module.modules():
        # same parameters and attributes; only ``forward`` changes
        if type(m) is ModulatedDeformConv:
            m.__class__ = TorchvisionModulatedDeformConv
        elif type(m) is DeformConv:
            m.__class__ = TorchvisionDeformConv
    return module


def build_resnet_interval_backbone(cfg, input_shape):
    """detectron2's ResNet where, in stages with DEFORM_ON_PER_STAGE, only blocks whose index is
    a multiple of MODEL.RESNETS.DEFORM_INTERVAL are deformable (AdelaiDet's "dcni" models)."""
    resnet = build_resnet_backbone(cfg, input_shape)
    interval = cfg.MODEL.RESNETS.DEFORM_INTERVAL
    if interval < 1:
        raise ValueError(f"MODEL.RESNETS.DEFORM_INTERVAL must be >= 1, got {interval}")
    for stage_name in resnet.stage_names:
        stage = getattr(resnet, stage_name)
        for index, block in enumerate(stage):
            if isinstance(block, DeformBottleneckBlock) and index % interval != 0:
                stage[index] = _plain_block_like(block, cfg, stage_name == "res5")
    resnet.freeze(cfg.MODEL.BACKBONE.FREEZE_AT)
    return use_torchvision_deform_convs(resnet)


def _plain_block_like(block, cfg, is_res5):
    resnets = cfg.MODEL.RESNETS
    return BottleneckBlock(
        block.in_channels,
        block.out_channels,
        bottleneck_channels=block.conv1.out_channels,
        stride=block.stride,
        num_groups=resnets.NUM_GROUPS,
        norm=resnets.NORM,
        stride_in_1x1=resnets.STRIDE_IN_1X1,
        dilation=resnets.RES5_DILATION if is_res5 else 1,
    )
