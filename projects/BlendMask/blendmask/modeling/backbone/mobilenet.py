"""MobileNetV2 (Sandler et al., CVPR 2018) body for CenterMask-Lite, with centermask2's module names.

``features.0`` is the stride-2 stem conv; ``features.1..17`` are inverted-residual blocks. The
outputs are taken after blocks 6, 13 and 17 (strides 8, 16, 32) as res3, res4, res5; the final
1x1 conv of the classification network is not built.
"""

from detectron2.layers import ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from torch import nn

from .fpn import build_fpn

# (expansion t, output channels c, repeats n, first stride s)
_INVERTED_RESIDUAL_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                              (6, 160, 3, 2), (6, 320, 1, 1))
_OUTPUTS = {6: ("res3", 8), 13: ("res4", 16), 17: ("res5", 32)}


class InvertedResidual(nn.Module):
    """[1x1 expand-norm-ReLU6] -> 3x3 depthwise-norm-ReLU6 -> 1x1 linear-norm, + input when shapes allow."""

    def __init__(self, in_ch, out_ch, stride, expand, norm):
        super().__init__()
        hidden = in_ch * expand
        self.use_residual = stride == 1 and in_ch == out_ch
        layers = []
        if expand != 1:
            layers += [nn.Conv2d(in_ch, hidden, 1, bias=False), get_norm(norm, hidden), nn.ReLU6(inplace=True)]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), get_norm(norm, hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, out_ch, 1, bias=False), get_norm(norm, out_ch),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(Backbone):
    def __init__(self, out_features=("res3", "res4", "res5"), norm="FrozenBN", in_channels=3):
        super().__init__()
        features = [nn.Sequential(nn.Conv2d(in_channels, 32, 3, 2, 1, bias=False), get_norm(norm, 32),
                                  nn.ReLU6(inplace=True))]
        in_ch = 32
        self._out_feature_channels, self._out_feature_strides = {}, {}
        for t, c, n, s in _INVERTED_RESIDUAL_SETTING:
            for i in range(n):
                features.append(InvertedResidual(in_ch, c, s if i == 0 else 1, t, norm))
                in_ch = c
                if len(features) - 1 in _OUTPUTS:
                    name, stride = _OUTPUTS[len(features) - 1]
                    self._out_feature_channels[name] = c
                    self._out_feature_strides[name] = stride
        self.features = nn.Sequential(*features)
        unknown = [f for f in out_features if f not in self._out_feature_channels]
        if unknown:
            raise ValueError(f"MobileNetV2 outputs {unknown} are not among {sorted(self._out_feature_channels)}")
        self._out_features = list(out_features)

    def freeze(self, freeze_at: int = 0):
        """Stop gradients into the stem (``freeze_at >= 1``) and the blocks up to stride 2**freeze_at."""
        last = (-1, 0, 3, 6, 13, 17)[min(max(freeze_at, 0), 5)]
        for block in list(self.features)[: last + 1]:
            for p in block.parameters():
                p.requires_grad_(False)
        return self

    def forward(self, x):
        outputs = {}
        for i, block in enumerate(self.features):
            x = block(x)
            if i in _OUTPUTS and _OUTPUTS[i][0] in self._out_features:
                outputs[_OUTPUTS[i][0]] = x
        return outputs

    def output_shape(self):
        return {n: ShapeSpec(channels=self._out_feature_channels[n], stride=self._out_feature_strides[n])
                for n in self._out_features}


@BACKBONE_REGISTRY.register()
def build_mobilenetv2_backbone(cfg, input_shape: ShapeSpec):
    """MobileNetV2 with outputs MODEL.FPN.IN_FEATURES (res3..res5), norm MODEL.RESNETS.NORM."""
    model = MobileNetV2(cfg.MODEL.FPN.IN_FEATURES, norm=cfg.MODEL.RESNETS.NORM, in_channels=input_shape.channels)
    return model.freeze(cfg.MODEL.BACKBONE.FREEZE_AT)


@BACKBONE_REGISTRY.register()
def build_fcos_mobilenetv2_fpn_backbone(cfg, input_shape: ShapeSpec):
    """MobileNetV2 + FPN + MODEL.FCOS.TOP_LEVELS extra levels from P5."""
    return build_fpn(cfg, build_mobilenetv2_backbone(cfg, input_shape))
