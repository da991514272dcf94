"""ProtoNet, BlendMask's basis module: K full-image bases at stride 4, plus an auxiliary semantic loss."""

from typing import Dict, List, Optional

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from torch import nn
from torch.nn import functional as F

from ..layers import conv_norm_relu
from .basis_module import BASIS_MODULE_REGISTRY


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
        fold_bn: bool = True,
    ):
        """``fold_bn``: fold BatchNorm into the convs in eval mode (MODEL.BASIS_MODULE.FOLD_BN)."""
        super().__init__()
        self.in_features = list(in_features)
        self.loss_on = loss_on
        self.loss_weight = loss_weight
        self.common_stride = common_stride
        self.refine = nn.ModuleList(
            [conv_norm_relu(input_shape[f].channels, convs_dim, norm, fold_bn) for f in in_features]
        )
        tower = [conv_norm_relu(convs_dim, convs_dim, norm, fold_bn) for _ in range(num_convs)]
        tower.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
        tower.append(conv_norm_relu(convs_dim, convs_dim, norm, fold_bn))
        tower.append(nn.Conv2d(convs_dim, num_bases, kernel_size=1))
        self.tower = nn.Sequential(*tower)
        if loss_on:
            in_channels = input_shape[in_features[0]].channels
            # BatchNorm whatever the tower's norm, as AdelaiDet; synchronised across processes when
            # the tower's is (SyncBN), so several processes train as one with the same total batch
            seg_bn = nn.SyncBatchNorm if norm == "SyncBN" else nn.BatchNorm2d
            self.seg_head = nn.Sequential(
                nn.Conv2d(in_channels, convs_dim, 3, padding=1, bias=False),
                seg_bn(convs_dim),
                nn.ReLU(),
                nn.Conv2d(convs_dim, convs_dim, 3, padding=1, bias=False),
                seg_bn(convs_dim),
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
            fold_bn=basis.FOLD_BN,
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
