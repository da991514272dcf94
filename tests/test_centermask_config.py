"""CenterMask configs, VoVNet specs and centermask2 checkpoint compatibility (key/shape lists)."""

import csv

import pytest
import torch
from centermask_fixtures import centermask_file
from detectron2.config import get_cfg as detectron2_get_cfg
from detectron2.modeling import META_ARCH_REGISTRY

from blendmask import add_centermask_config, get_cfg, load_config, register_vovnet_spec
from blendmask.data import set_num_classes
from conftest import REPO_ROOT

OURS = REPO_ROOT / "configs" / "CenterMask"
MODELS_WITH_TSV = [
    "centermask_R_50_FPN_ms_3x", "centermask_R_101_FPN_ms_3x", "centermask_X_101_FPN_ms_3x",
    "centermask_V_39_eSE_FPN_ms_3x", "centermask_V_57_eSE_FPN_ms_3x", "centermask_V_99_eSE_FPN_ms_3x",
    "centermask_lite_V_19_eSE_FPN_ms_4x", "centermask_lite_V_39_eSE_FPN_ms_4x",
    "centermask_lite_V_19_slim_eSE_FPN_ms_4x", "centermask_lite_V_19_slim_dw_eSE_FPN_ms_4x",
    "centermask_lite_Mv2_FPN_ms_4x",
]
DCN_MODELS = ["centermask_V_39_eSE_dcn_FPN_ms_3x", "centermask_V_57_eSE_dcn_FPN_ms_3x",
              "centermask_V_99_eSE_dcn_FPN_ms_3x"]


def _reference_config(name):
    return centermask_file(f"configs/centermask/{name}")


def _reference_yaml_names():
    return sorted(p.name for p in _reference_config("Base-CenterMask-VoVNet.yaml").parent.glob("*.yaml"))


def test_add_centermask_config_is_idempotent_and_leaves_detectron2_defaults_alone():
    cfg = add_centermask_config(detectron2_get_cfg())
    cfg.MODEL.VOVNET.CONV_BODY = "V-19-eSE"
    add_centermask_config(cfg)
    assert cfg.MODEL.VOVNET.CONV_BODY == "V-19-eSE"
    assert cfg.MODEL.ROI_MASK_HEAD.ASSIGN_CRITERION == "area"  # centermask2's default; its configs say "ratio"
    assert cfg.MODEL.MASKIOU_ON is False and cfg.MODEL.ROI_MASKIOU_HEAD.CONV_DIM == 256
    fresh = detectron2_get_cfg()
    assert "VOVNET" not in fresh.MODEL and "MASKIOU_ON" not in fresh.MODEL


def test_every_centermask2_yaml_merges_unchanged():
    names = _reference_yaml_names()
    assert len(names) == 25
    for name in names:
        cfg = load_config(_reference_config(name))
        if not name.startswith(("panoptic", "Base-Panoptic")):  # PanopticFPN is out of scope
            assert cfg.MODEL.META_ARCHITECTURE == "CenterMask", name


@pytest.mark.parametrize("name", MODELS_WITH_TSV + DCN_MODELS
                         + ["Base-CenterMask-VoVNet", "Base-CenterMask-Lite-VoVNet", "Base-CenterMask-ResNet"])
def test_our_configs_have_centermask2_values(name):
    ours, theirs = load_config(OURS / f"{name}.yaml"), load_config(_reference_config(f"{name}.yaml"))
    assert ours == theirs


def test_our_configs_are_one_per_centermask2_model_config():
    theirs = {n for n in _reference_yaml_names() if not n.startswith(("panoptic", "Base-Panoptic"))}
    assert {p.name for p in OURS.glob("*.yaml")} == theirs


def _read_tsv(path):
    with open(path) as f:
        return {r["key"]: tuple(int(x) for x in r["shape"].strip("[]").split(",") if x.strip())
                for r in csv.DictReader(f, delimiter="\t")}


def _build_on_meta(cfg):
    """The model without memory or init cost (shapes and names only)."""
    with torch.device("meta"):
        return META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)


@pytest.mark.parametrize("name", MODELS_WITH_TSV)
def test_full_size_models_have_centermask2_keys_and_shapes(name):
    expected = _read_tsv(centermask_file(f"{name}_state_dict.tsv"))
    ours = {k: tuple(v.shape) for k, v in _build_on_meta(load_config(OURS / f"{name}.yaml")).state_dict().items()}
    assert sorted(set(expected) - set(ours)) == [], "missing in our model"
    assert sorted(set(ours) - set(expected)) == [], "unexpected in our model"
    assert {k: v for k, v in ours.items() if expected[k] != v} == {}


@pytest.mark.parametrize("name", DCN_MODELS)
def test_dcn_variants_build_and_run(name):
    from blendmask.modeling.backbone.vovnet import DeformConv3x3, build_vovnet_backbone

    cfg = load_config(OURS / f"{name}.yaml")
    backbone = build_vovnet_backbone(cfg, __import__("detectron2").layers.ShapeSpec(channels=3)).eval()
    dcns = [m for m in backbone.modules() if isinstance(m, DeformConv3x3)]
    assert dcns and not any(isinstance(m, DeformConv3x3) for m in backbone.stage2.modules())
    # a deformable conv with zero offsets and 0.5 masks is half a plain conv
    dcn = dcns[0]
    x = torch.randn(1, dcn.weight.shape[1], 9, 9)
    plain = torch.nn.functional.conv2d(x, dcn.weight, padding=1)
    torch.testing.assert_close(dcn(x), 0.5 * plain, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        out = backbone(torch.randn(1, 3, 64, 96))
    assert {k: tuple(v.shape[-2:]) for k, v in out.items()} == {"stage3": (8, 12), "stage4": (4, 6), "stage5": (2, 3)}


def test_set_num_classes_covers_centermask():
    cfg = load_config(OURS / "centermask_lite_V_19_eSE_FPN_ms_4x.yaml")
    set_num_classes(cfg, 7)
    assert cfg.MODEL.FCOS.NUM_CLASSES == cfg.MODEL.ROI_HEADS.NUM_CLASSES == 7
    model = _build_on_meta(cfg)
    assert model.roi_heads.mask_head.predictor.out_channels == 7
    assert model.roi_heads.maskiou_head.maskiou.out_features == 7
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    with pytest.raises(ValueError, match="set_num_classes"):
        _build_on_meta(cfg)


def test_register_vovnet_spec_validates_and_builds():
    from blendmask.modeling.backbone.vovnet import registered_vovnet_specs

    assert {"V-19-eSE", "V-19-slim-eSE", "V-19-slim-dw-eSE", "V-19-dw-eSE", "V-39-eSE", "V-57-eSE",
            "V-99-eSE"} <= set(registered_vovnet_specs())
    with pytest.raises(ValueError, match="missing fields"):
        register_vovnet_spec("broken", {"stem": [8, 8, 8]})
    spec = dict(stem=[8, 8, 16], stage_conv_ch=[8, 8, 8, 8], stage_out_ch=[16, 16, 24, 24], layer_per_block=2,
                block_per_stage=[1, 1, 1, 2], eSE=True, dw=False)
    register_vovnet_spec("V-test-tiny", spec)
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.VOVNET.CONV_BODY", "V-test-tiny", "MODEL.VOVNET.OUT_FEATURES", ["stage4", "stage5"]])
    from detectron2.layers import ShapeSpec

    from blendmask.modeling.backbone.vovnet import build_vovnet_backbone

    body = build_vovnet_backbone(cfg, ShapeSpec(channels=3))
    # ceil-mode pooling: a 400-pixel side gives 100, 50, 25, 12 at strides 4..32 (floor mode: 100, 49, 24, 11)
    out = body(torch.zeros(1, 3, 400, 400))
    assert {k: (v.shape[1], v.shape[-1]) for k, v in out.items()} == {"stage4": (24, 25), "stage5": (24, 12)}
    cfg.merge_from_list(["MODEL.VOVNET.CONV_BODY", "V-unknown"])
    with pytest.raises(KeyError, match="register_vovnet_spec"):
        build_vovnet_backbone(cfg, ShapeSpec(channels=3))
