"""VoVNetV2 (Lee & Park, CVPR 2020): one-shot aggregation (OSA) with residuals and effective SE.

Stage widths are data: :func:`register_vovnet_spec` adds a named spec (the fields of centermask2's
spec dicts: stem, stage_conv_ch, stage_out_ch, layer_per_block, block_per_stage, eSE, dw) and
``MODEL.VOVNET.CONV_BODY`` names one. Module names (with slashes) follow centermask2's, so its
checkpoints load as they are.

Layout (what the outputs depend on):
- stem: three 3x3 conv-norm-ReLU, strides 2, 1, 2 (convs 2 and 3 depthwise-separable in dw specs);
- stage 2 at stride 4 without pooling; stages 3..5 start with a 3x3 stride-2 max pool, ceil mode;
- OSA module: ``layer_per_block`` 3x3 conv-norm-ReLU in sequence, the block input and every layer
  output concatenated in that order, a 1x1 conv-norm-ReLU to the stage width, eSE, and (blocks 2..n
  of a stage) the block input added, with no ReLU after the sum;
- eSE: ``x * hard_sigmoid(fc(mean over H, W of x))`` with ``fc`` a full-width 1x1 conv with bias
  (applied in every module; the spec's eSE flag is informational, as in centermask2).
"""

import copy
from collections import OrderedDict
from typing import Dict, List, Sequence

import torch
from detectron2.layers import ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from torch import nn
from torch.nn import functional as F

from .fpn import build_fpn

_SPEC_FIELDS = ("stem", "stage_conv_ch", "stage_out_ch", "layer_per_block", "block_per_stage", "eSE", "dw")
_VOVNET_SPECS: Dict[str, dict] = {}


def register_vovnet_spec(name: str, spec: dict) -> None:
    """Register (or replace) the VoVNet body ``name``, usable as ``MODEL.VOVNET.CONV_BODY``.

    ``spec``: stem (3 widths), stage_conv_ch (4), stage_out_ch (4), layer_per_block (int),
    block_per_stage (4), eSE (bool), dw (bool: depthwise-separable 3x3 convs).
    """
    missing = [f for f in _SPEC_FIELDS if f not in spec]
    unknown = [f for f in spec if f not in _SPEC_FIELDS]
    if missing or unknown:
        raise ValueError(f"VoVNet spec {name!r}: missing fields {missing}, unknown fields {unknown}")
    checked = {
        "stem": [int(c) for c in spec["stem"]],
        "stage_conv_ch": [int(c) for c in spec["stage_conv_ch"]],
        "stage_out_ch": [int(c) for c in spec["stage_out_ch"]],
        "layer_per_block": int(spec["layer_per_block"]),
        "block_per_stage": [int(c) for c in spec["block_per_stage"]],
        "eSE": bool(spec["eSE"]),
        "dw": bool(spec["dw"]),
    }
    lengths = {"stem": 3, "stage_conv_ch": 4, "stage_out_ch": 4, "block_per_stage": 4}
    wrong = {k: len(checked[k]) for k, n in lengths.items() if len(checked[k]) != n}
    if wrong or checked["layer_per_block"] < 1 or min(checked["block_per_stage"]) < 1:
        raise ValueError(f"VoVNet spec {name!r}: wrong lengths {wrong} (want {lengths}) or non-positive counts")
    _VOVNET_SPECS[name] = checked


def vovnet_spec(name: str) -> dict:
    if name not in _VOVNET_SPECS:
        raise KeyError(
            f"MODEL.VOVNET.CONV_BODY {name!r} is not a registered VoVNet spec; known: {sorted(_VOVNET_SPECS)}. "
            "Add one with blendmask.register_vovnet_spec(name, spec)."
        )
    return copy.deepcopy(_VOVNET_SPECS[name])


def registered_vovnet_specs() -> List[str]:
    return sorted(_VOVNET_SPECS)


_WIDE = dict(stage_conv_ch=[128, 160, 192, 224], stage_out_ch=[256, 512, 768, 1024])
_SLIM = dict(stage_conv_ch=[64, 80, 96, 112], stage_out_ch=[112, 256, 384, 512])
for _name, _stem, _widths, _layers, _blocks, _dw in (
    ("V-19-slim-dw-eSE", [64, 64, 64], _SLIM, 3, [1, 1, 1, 1], True),
    ("V-19-dw-eSE", [64, 64, 64], _WIDE, 3, [1, 1, 1, 1], True),
    ("V-19-slim-eSE", [64, 64, 128], _SLIM, 3, [1, 1, 1, 1], False),
    ("V-19-eSE", [64, 64, 128], _WIDE, 3, [1, 1, 1, 1], False),
    ("V-39-eSE", [64, 64, 128], _WIDE, 5, [1, 1, 2, 2], False),
    ("V-57-eSE", [64, 64, 128], _WIDE, 5, [1, 1, 4, 3], False),
    ("V-99-eSE", [64, 64, 128], _WIDE, 5, [1, 3, 9, 3], False),
):
    register_vovnet_spec(_name, dict(stem=_stem, layer_per_block=_layers, block_per_stage=_blocks, eSE=True,
                                     dw=_dw, **_widths))


def _conv_norm_relu(name, in_ch, out_ch, norm, kernel=3, stride=1, dcn=None):
    """[(name/conv, conv), (name/norm, norm), (name/relu, ReLU)], bias-free conv."""
    if dcn is not None and kernel == 3:
        conv = dcn(in_ch, out_ch, stride)
    else:
        conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False)
    return [(f"{name}/conv", conv), (f"{name}/norm", get_norm(norm, out_ch)), (f"{name}/relu", nn.ReLU(inplace=True))]


def _dw_conv_norm_relu(name, in_ch, out_ch, norm, stride=1):
    """Depthwise 3x3 (no norm) -> pointwise 1x1 -> norm -> ReLU."""
    return [
        (f"{name}/dw_conv3x3", nn.Conv2d(in_ch, in_ch, 3, stride=stride, padding=1, groups=in_ch, bias=False)),
        (f"{name}/pw_conv1x1", nn.Conv2d(in_ch, out_ch, 1, bias=False)),
        (f"{name}/pw_norm", get_norm(norm, out_ch)),
        (f"{name}/pw_relu", nn.ReLU(inplace=True)),
    ]


class DeformConv3x3(nn.Module):
    """A bias-free 3x3 deformable conv (modulated or not) on torchvision, for STAGE_WITH_DCN."""

    def __init__(self, in_ch, out_ch, stride=1, modulated=True, groups=1):
        super().__init__()
        from torchvision.ops import deform_conv2d

        self._deform_conv2d = deform_conv2d
        self.modulated = modulated
        self.stride = stride
        self.offset_channels = groups * 18
        self.conv_offset = nn.Conv2d(in_ch, groups * (27 if modulated else 18), 3, stride=stride, padding=1)
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)
        self.weight = nn.Parameter(torch.empty(out_ch, in_ch, 3, 3))
        nn.init.kaiming_uniform_(self.weight, a=1)

    def forward(self, x):
        out = self.conv_offset(x)
        offset = out[:, : self.offset_channels]
        mask = out[:, self.offset_channels:].sigmoid() if self.modulated else None
        return self._deform_conv2d(x, offset, self.weight, None, stride=self.stride, padding=1, mask=mask)


class EffectiveSE(nn.Module):
    """eSE: channel gate ``hard_sigmoid(fc(global mean))`` with a full-width 1x1 ``fc`` with bias."""

    def __init__(self, channels: int):
        super().__init__()
        self.fc = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        gate = self.fc(x.mean(dim=(2, 3), keepdim=True))
        return x * (F.relu6(gate + 3.0) / 6.0)


class OSAModule(nn.Module):
    """One-shot aggregation: sequential 3x3 layers, concat [input, layers...], 1x1 to out, eSE,
    optional identity (no ReLU after the sum)."""

    def __init__(self, in_ch, conv_ch, out_ch, layer_per_block, name, norm, identity=False, dw=False, dcn=None):
        super().__init__()
        self.identity = identity
        self.is_reduced = dw and in_ch != conv_ch
        if self.is_reduced:
            self.conv_reduction = nn.Sequential(OrderedDict(
                _conv_norm_relu(f"{name}_reduction_0", in_ch, conv_ch, norm, kernel=1)))
        self.layers = nn.ModuleList()
        width = conv_ch if self.is_reduced else in_ch
        for i in range(layer_per_block):
            if dw:
                layer = _dw_conv_norm_relu(f"{name}_{i}", conv_ch, conv_ch, norm)
            else:
                layer = _conv_norm_relu(f"{name}_{i}", width, conv_ch, norm, dcn=dcn)
            self.layers.append(nn.Sequential(OrderedDict(layer)))
            width = conv_ch
        concat_ch = in_ch + layer_per_block * conv_ch
        self.concat = nn.Sequential(OrderedDict(_conv_norm_relu(f"{name}_concat", concat_ch, out_ch, norm, kernel=1)))
        self.ese = EffectiveSE(out_ch)

    def forward(self, x):
        outputs = [x]
        y = self.conv_reduction(x) if self.is_reduced else x
        for layer in self.layers:
            y = layer(y)
            outputs.append(y)
        y = self.ese(self.concat(torch.cat(outputs, dim=1)))
        return y + x if self.identity else y


class VoVNet(Backbone):
    """VoVNetV2 body; outputs the named ``out_features`` among stem, stage2..stage5 (strides 4..32)."""

    def __init__(self, spec: dict, out_features: Sequence[str], norm: str = "FrozenBN", in_channels: int = 3,
                 stage_with_dcn: Sequence[bool] = (False,) * 4, modulated_dcn: bool = False,
                 deformable_groups: int = 1):
        super().__init__()
        stem_ch, dw = spec["stem"], spec["dw"]
        stem = _conv_norm_relu("stem_1", in_channels, stem_ch[0], norm, stride=2)
        make = _dw_conv_norm_relu if dw else _conv_norm_relu
        stem += make("stem_2", stem_ch[0], stem_ch[1], norm, stride=1)
        stem += make("stem_3", stem_ch[1], stem_ch[2], norm, stride=2)
        self.stem = nn.Sequential(OrderedDict(stem))
        self._out_feature_channels = {"stem": stem_ch[2]}
        self._out_feature_strides = {"stem": 4}

        in_ch = stem_ch[2]
        self.stage_names = []
        for i in range(4):
            stage_id = i + 2
            name = f"stage{stage_id}"
            dcn = None
            if stage_with_dcn[i]:
                def dcn(cin, cout, stride, _m=modulated_dcn, _g=deformable_groups):
                    return DeformConv3x3(cin, cout, stride, modulated=_m, groups=_g)
            modules = []
            if stage_id > 2:
                modules.append(("Pooling", nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)))
            for b in range(spec["block_per_stage"][i]):
                block_name = f"OSA{stage_id}_{b + 1}"
                modules.append((block_name, OSAModule(
                    in_ch, spec["stage_conv_ch"][i], spec["stage_out_ch"][i], spec["layer_per_block"],
                    block_name, norm, identity=b > 0, dw=dw, dcn=dcn)))
                in_ch = spec["stage_out_ch"][i]
            self.add_module(name, nn.Sequential(OrderedDict(modules)))
            self.stage_names.append(name)
            self._out_feature_channels[name] = in_ch
            self._out_feature_strides[name] = 4 * 2 ** i
        unknown = [f for f in out_features if f not in self._out_feature_channels]
        if unknown:
            raise ValueError(f"MODEL.VOVNET.OUT_FEATURES {unknown}: not among {sorted(self._out_feature_channels)}")
        self._out_features = list(out_features)

    def freeze(self, freeze_at: int = 0):
        """Stop gradients into the stem (``freeze_at >= 1``) and stages 2..freeze_at."""
        if freeze_at >= 1:
            for p in self.stem.parameters():
                p.requires_grad_(False)
        for i, name in enumerate(self.stage_names):
            if freeze_at >= i + 2:
                for p in getattr(self, name).parameters():
                    p.requires_grad_(False)
        return self

    def forward(self, x) -> Dict[str, torch.Tensor]:
        outputs = {}
        x = self.stem(x)
        if "stem" in self._out_features:
            outputs["stem"] = x
        for name in self.stage_names:
            x = getattr(self, name)(x)
            if name in self._out_features:
                outputs[name] = x
        return outputs

    def output_shape(self):
        return {
            name: ShapeSpec(channels=self._out_feature_channels[name], stride=self._out_feature_strides[name])
            for name in self._out_features
        }


@BACKBONE_REGISTRY.register()
def build_vovnet_backbone(cfg, input_shape: ShapeSpec):
    """VoVNet body from ``MODEL.VOVNET.*`` (CONV_BODY names a registered spec)."""
    vov = cfg.MODEL.VOVNET
    stage_with_dcn = list(vov.STAGE_WITH_DCN)
    if len(stage_with_dcn) != 4:
        raise ValueError(f"MODEL.VOVNET.STAGE_WITH_DCN needs 4 flags (stages 2..5), got {stage_with_dcn}")
    model = VoVNet(
        vovnet_spec(vov.CONV_BODY), vov.OUT_FEATURES, norm=vov.NORM, in_channels=input_shape.channels,
        stage_with_dcn=stage_with_dcn, modulated_dcn=vov.WITH_MODULATED_DCN,
        deformable_groups=vov.DEFORMABLE_GROUPS,
    )
    return model.freeze(cfg.MODEL.BACKBONE.FREEZE_AT)


@BACKBONE_REGISTRY.register()
def build_fcos_vovnet_fpn_backbone(cfg, input_shape: ShapeSpec):
    """VoVNet + FPN on MODEL.FPN.IN_FEATURES + MODEL.FCOS.TOP_LEVELS extra levels from P5 (P6, P7)."""
    return build_fpn(cfg, build_vovnet_backbone(cfg, input_shape))


@BACKBONE_REGISTRY.register()
def build_vovnet_fpn_backbone(cfg, input_shape: ShapeSpec):
    """VoVNet + FPN with detectron2's max-pooled P6 (as Mask R-CNN on VoVNet uses it)."""
    from detectron2.modeling.backbone.fpn import LastLevelMaxPool

    return build_fpn(cfg, build_vovnet_backbone(cfg, input_shape), top_block=LastLevelMaxPool())
