"""The FCOS head: towers and predictors shared across FPN levels."""

import math
from typing import Dict, List

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from torch import nn
from torch.nn import functional as F

from ..layers import ModulatedDeformConv3x3, PerLevelNorm, Tower, make_norm


class Scale(nn.Module):
    """A learnable scalar multiplier (one per FPN level)."""

    def __init__(self, init_value: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([init_value], dtype=torch.float32))

    def forward(self, x):
        return x * self.scale


def _build_tower(num_convs, channels, norm, num_levels, deformable_last):
    layers = []
    for i in range(num_convs):
        if deformable_last and i == num_convs - 1:
            layers.append(ModulatedDeformConv3x3(channels, channels, bias=True))
        else:
            layers.append(nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=True))
        if norm in ("BN", "SyncBN"):
            # batch statistics differ per level: AdelaiDet keeps one BN per level
            layers.append(PerLevelNorm([make_norm(norm, channels) for _ in range(num_levels)]))
        elif (layer := make_norm(norm, channels)) is not None:
            layers.append(layer)
        layers.append(nn.ReLU())
    return Tower(*layers)


class FCOSHead(nn.Module):
    """Shared tower -> classification tower and box tower -> predictors, for every level.

    Inputs: a list of L feature maps (N, C, H_l, W_l). Outputs per level: class logits
    (N, num_classes, H_l, W_l), box regression l,t,r,b in stride units (N, 4, H_l, W_l, >= 0),
    centerness logits (N, 1, H_l, W_l) and the box tower itself (N, C, H_l, W_l), from which heads
    built on FCOS read features at chosen locations.
    """

    @configurable
    def __init__(
        self,
        input_shape: List[ShapeSpec],
        *,
        num_classes: int,
        num_cls_convs: int = 4,
        num_box_convs: int = 4,
        num_share_convs: int = 0,
        norm: str = "GN",
        use_scale: bool = True,
        use_relu: bool = True,
        use_deformable: bool = False,
        prior_prob: float = 0.01,
    ):
        super().__init__()
        channels = {s.channels for s in input_shape}
        if len(channels) != 1:
            raise ValueError(f"FCOS needs the same channel count on every level, got {channels}")
        channels = channels.pop()
        num_levels = len(input_shape)
        self.num_classes = num_classes
        self.use_relu = use_relu
        self.cls_tower = _build_tower(num_cls_convs, channels, norm, num_levels, use_deformable)
        self.bbox_tower = _build_tower(num_box_convs, channels, norm, num_levels, use_deformable)
        self.share_tower = _build_tower(num_share_convs, channels, norm, num_levels, False)
        self.cls_logits = nn.Conv2d(channels, num_classes, kernel_size=3, padding=1)
        self.bbox_pred = nn.Conv2d(channels, 4, kernel_size=3, padding=1)
        self.ctrness = nn.Conv2d(channels, 1, kernel_size=3, padding=1)
        self.scales = nn.ModuleList([Scale() for _ in range(num_levels)]) if use_scale else None

        for tower in (self.cls_tower, self.bbox_tower, self.share_tower):
            for layer in tower:  # direct children: a deformable conv keeps its zero offsets
                if isinstance(layer, nn.Conv2d):
                    nn.init.normal_(layer.weight, std=0.01)
                    nn.init.zeros_(layer.bias)
        for layer in (self.cls_logits, self.bbox_pred, self.ctrness):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior_prob) / prior_prob))

    @classmethod
    def from_config(cls, cfg, input_shape: List[ShapeSpec]) -> Dict:
        fcos = cfg.MODEL.FCOS
        return dict(
            input_shape=input_shape,
            num_classes=fcos.NUM_CLASSES,
            num_cls_convs=fcos.NUM_CLS_CONVS,
            num_box_convs=fcos.NUM_BOX_CONVS,
            num_share_convs=fcos.NUM_SHARE_CONVS,
            norm=fcos.NORM,
            use_scale=fcos.USE_SCALE,
            use_relu=fcos.USE_RELU,
            use_deformable=fcos.USE_DEFORMABLE,
            prior_prob=fcos.PRIOR_PROB,
        )

    def forward(self, features: List[torch.Tensor]) -> Dict[str, List[torch.Tensor]]:
        """Returns a dict of per-level lists: "logits", "reg", "ctrness", "box_towers"."""
        out = {"logits": [], "reg": [], "ctrness": [], "box_towers": []}
        for level, feature in enumerate(features):
            feature = self.share_tower(feature, level)
            cls_tower = self.cls_tower(feature, level)
            bbox_tower = self.bbox_tower(feature, level)
            out["box_towers"].append(bbox_tower)
            out["logits"].append(self.cls_logits(cls_tower))
            out["ctrness"].append(self.ctrness(bbox_tower))
            reg = self.bbox_pred(bbox_tower)
            if self.scales is not None:
                reg = self.scales[level](reg)
            out["reg"].append(F.relu(reg) if self.use_relu else torch.exp(reg))
        return out
