"""ResNet + FPN with extra levels made from P5, as FCOS uses it."""

import fvcore.nn.weight_init as weight_init
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import FPN, build_resnet_backbone
from detectron2.modeling.backbone.fpn import LastLevelP6P7
from torch import nn


class LastLevelP6(nn.Module):
    """P6 = 3x3 stride-2 conv on P5 (the single extra level of FCOS with TOP_LEVELS 1)."""

    def __init__(self, in_channels: int, out_channels: int, in_feature: str = "p5"):
        super().__init__()
        self.num_levels = 1
        self.in_feature = in_feature
        self.p6 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=2, padding=1)
        weight_init.c2_xavier_fill(self.p6)

    def forward(self, x):
        return [self.p6(x)]


def build_top_block(top_levels: int, channels: int):
    """Extra FPN levels from P5: 2 -> P6, P7 (P7 from ReLU(P6)); 1 -> P6; 0 -> none."""
    if top_levels == 2:
        return LastLevelP6P7(channels, channels, in_feature="p5")
    if top_levels == 1:
        return LastLevelP6(channels, channels, in_feature="p5")
    if top_levels == 0:
        return None
    raise ValueError(f"MODEL.FCOS.TOP_LEVELS must be 0, 1 or 2, got {top_levels}")


@BACKBONE_REGISTRY.register()
def build_fcos_resnet_fpn_backbone(cfg, input_shape: ShapeSpec):
    """detectron2 ResNet + FPN on MODEL.FPN.IN_FEATURES + MODEL.FCOS.TOP_LEVELS extra levels."""
    if cfg.MODEL.BACKBONE.ANTI_ALIAS:
        raise NotImplementedError("MODEL.BACKBONE.ANTI_ALIAS (AdelaiDet's blur-pool ResNet) is not supported")
    from .resnet_interval import build_resnet_interval_backbone

    if cfg.MODEL.RESNETS.DEFORM_INTERVAL > 1 or any(cfg.MODEL.RESNETS.DEFORM_ON_PER_STAGE):
        bottom_up = build_resnet_interval_backbone(cfg, input_shape)
    else:
        bottom_up = build_resnet_backbone(cfg, input_shape)
    return build_fpn(cfg, bottom_up)


def build_fpn(cfg, bottom_up, top_block="fcos"):
    """detectron2's FPN on ``bottom_up`` with MODEL.FPN.*; ``top_block`` "fcos" adds
    MODEL.FCOS.TOP_LEVELS extra levels from P5 (see :func:`build_top_block`), else it is the top
    block itself (or None)."""
    out_channels = cfg.MODEL.FPN.OUT_CHANNELS
    if top_block == "fcos":
        top_block = build_top_block(cfg.MODEL.FCOS.TOP_LEVELS, out_channels)
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=out_channels,
        norm=cfg.MODEL.FPN.NORM,
        top_block=top_block,
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
