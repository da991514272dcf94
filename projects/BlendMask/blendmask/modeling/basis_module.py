"""The basis module ("bottom"): K full-image bases at stride 4, plus an auxiliary semantic loss."""

from typing import Dict, List, Optional

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.structures import BitMasks, Instances, PolygonMasks, polygons_to_bitmask
from detectron2.utils.registry import Registry
from torch import nn
from torch.nn import functional as F

from .layers import make_norm

BASIS_MODULE_REGISTRY = Registry("BASIS_MODULE")
BASIS_MODULE_REGISTRY.__doc__ = """
Registry for basis modules: they take FPN features and return {"bases": [(N, K, H/4, W/4)]}.
The registered object is called with ``(cfg, input_shape: Dict[str, ShapeSpec])``.
"""


def build_basis_module(cfg, input_shape: Dict[str, ShapeSpec]) -> nn.Module:
    return BASIS_MODULE_REGISTRY.get(cfg.MODEL.BASIS_MODULE.NAME)(cfg, input_shape)


class ConvNormReLU(nn.Sequential):
    """3x3 conv -> norm -> ReLU (children "0", "1", "2", or "0", "1" without a norm).

    In eval mode a BatchNorm is folded into the convolution (weights scaled by
    gamma / sqrt(var + eps), bias beta - mean * scale): one pass over the feature map instead of two,
    the same result up to float rounding.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, norm = self[0], self[1] if len(self) == 3 else None
        if self.training or not isinstance(norm, (nn.BatchNorm2d, nn.SyncBatchNorm)) or norm.running_var is None:
            return super().forward(x)
        scale = (norm.running_var + norm.eps).rsqrt()
        bias = -norm.running_mean * scale
        if norm.affine:
            scale, bias = scale * norm.weight, bias * norm.weight + norm.bias
        if conv.bias is not None:
            bias = bias + conv.bias * scale
        weight = conv.weight * scale.reshape(-1, 1, 1, 1)
        return F.relu(F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups), inplace=True)


def conv_norm_relu(in_channels: int, out_channels: int, norm: str) -> nn.Module:
    """3x3 conv -> norm -> ReLU; the conv has a bias only when there is no norm."""
    norm_layer = make_norm(norm, out_channels)
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=norm_layer is None)
    nn.init.kaiming_uniform_(conv.weight, a=1)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    layers = [conv] + ([norm_layer] if norm_layer is not None else []) + [nn.ReLU(inplace=True)]
    return ConvNormReLU(*layers)


def semantic_targets_from_instances(
    instances: List[Instances], image_sizes: List[tuple], padded_size: tuple, device
) -> torch.Tensor:
    """Per-pixel class map (N, Hp, Wp) int64 built from each image's instance masks.

    0 is background and class+1 marks an instance's pixels, painted in ground-truth order (a
    later instance overwrites an earlier one); outside each image (padding) stays 0. Polygons are
    rasterised like pycocotools does for COCO masks.
    """
    out = torch.zeros((len(instances), *padded_size), dtype=torch.long, device=device)
    for i, (inst, (h, w)) in enumerate(zip(instances, image_sizes)):
        if len(inst) == 0:
            continue
        if not inst.has("gt_masks"):
            raise ValueError("MODEL.BASIS_MODULE.LOSS_ON needs gt_masks in the training instances")
        masks = inst.gt_masks
        if isinstance(masks, PolygonMasks):
            bitmaps = torch.stack([
                torch.from_numpy(polygons_to_bitmask(polys, h, w)) for polys in masks.polygons
            ]).to(device)
        elif isinstance(masks, BitMasks):
            bitmaps = masks.tensor[:, :h, :w].to(device)
        else:
            bitmaps = torch.as_tensor(masks, device=device)[:, :h, :w]
        sem = out[i, :h, :w]
        for bitmap, cls in zip(bitmaps.bool(), inst.gt_classes.tolist()):
            sem[bitmap] = cls + 1
    return out


@BASIS_MODULE_REGISTRY.register()
class ProtoNet(nn.Module):
    """Fuse FPN levels at stride 8, refine, upsample to stride 4, predict K bases.

    ``forward(features, sem_targets=None)`` -> ({"bases": [(N, K, H3*2, W3*2)]}, losses) where
    H3, W3 is the size of the first IN_FEATURES level (p3). In training with ``loss_on`` the
    auxiliary semantic head on p3 gives ``loss_basis_sem`` against ``sem_targets`` (N, Hp, Wp).
    """

    @configurable
    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        in_features: List[str],
        num_bases: int,
        convs_dim: int,
        num_convs: int,
        norm: str,
        loss_on: bool = False,
        num_classes: int = 80,
        loss_weight: float = 0.3,
        common_stride: int = 8,
    ):
        super().__init__()
        self.in_features = list(in_features)
        self.loss_on = loss_on
        self.loss_weight = loss_weight
        self.common_stride = common_stride
        self.refine = nn.ModuleList(
            [conv_norm_relu(input_shape[f].channels, convs_dim, norm) for f in in_features]
        )
        tower = [conv_norm_relu(convs_dim, convs_dim, norm) for _ in range(num_convs)]
        tower.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
        tower.append(conv_norm_relu(convs_dim, convs_dim, norm))
        tower.append(nn.Conv2d(convs_dim, num_bases, kernel_size=1))
        self.tower = nn.Sequential(*tower)
        if loss_on:
            in_channels = input_shape[in_features[0]].channels
            self.seg_head = nn.Sequential(
                nn.Conv2d(in_channels, convs_dim, 3, padding=1, bias=False),
                nn.BatchNorm2d(convs_dim),
                nn.ReLU(),
                nn.Conv2d(convs_dim, convs_dim, 3, padding=1, bias=False),
                nn.BatchNorm2d(convs_dim),
                nn.ReLU(),
                nn.Conv2d(convs_dim, num_classes + 1, kernel_size=1),
            )

    @classmethod
    def from_config(cls, cfg, input_shape):
        basis = cfg.MODEL.BASIS_MODULE
        missing = [f for f in basis.IN_FEATURES if f not in input_shape]
        if missing:
            raise ValueError(
                f"MODEL.BASIS_MODULE.IN_FEATURES {missing} are not backbone outputs {sorted(input_shape)}"
            )
        return dict(
            input_shape=input_shape,
            in_features=basis.IN_FEATURES,
            num_bases=basis.NUM_BASES,
            convs_dim=basis.CONVS_DIM,
            num_convs=basis.NUM_CONVS,
            norm=basis.NORM,
            loss_on=basis.LOSS_ON,
            num_classes=basis.NUM_CLASSES,
            loss_weight=basis.LOSS_WEIGHT,
            common_stride=basis.COMMON_STRIDE,
        )

    def forward(self, features: Dict[str, torch.Tensor], sem_targets: Optional[torch.Tensor] = None):
        x = self.refine[0](features[self.in_features[0]])
        for refine, name in zip(self.refine[1:], self.in_features[1:]):
            x = x + F.interpolate(refine(features[name]), size=x.shape[-2:], mode="bilinear",
                                  align_corners=False)
        outputs = {"bases": [self.tower(x)]}
        losses = {}
        if self.training and self.loss_on:
            if sem_targets is None:
                raise ValueError("the basis module's semantic loss needs sem_targets in training")
            logits = self.seg_head(features[self.in_features[0]])
            # nearest downsampling: the top-left pixel of each common_stride cell
            targets = F.interpolate(sem_targets[:, None].float(), scale_factor=1 / self.common_stride)
            losses["loss_basis_sem"] = (
                F.cross_entropy(logits, targets[:, 0].long()) * self.loss_weight
            )
        return outputs, losses
