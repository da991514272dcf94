import yaml
from detectron2.config import get_cfg

from blendmask import add_blendmask_config
from conftest import REPO_ROOT, reference_file


def _flatten(node, prefix=""):
    out = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _as_plain(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def test_defaults_match_adelaidet_resolved_config():
    """Every FCOS key of the FCOS fixture config (resolved AdelaiDet defaults) is ours, equal."""
    cfg = add_blendmask_config(get_cfg())
    reference = yaml.safe_load(reference_file("fcos_tiny.yaml").read_text())
    ref_fcos = _flatten(reference["MODEL"]["FCOS"], "MODEL.FCOS.")
    ours = _flatten(cfg.MODEL.FCOS, "MODEL.FCOS.")
    assert set(ref_fcos) == set(ours)
    for key, value in ref_fcos.items():
        assert _as_plain(ours[key]) == _as_plain(value), key


def test_blendmask_defaults_match_adelaidet():
    """The BlendMask fixture yaml holds the resolved subtrees; only documented overrides differ."""
    cfg = add_blendmask_config(get_cfg())
    reference = yaml.safe_load(reference_file("tiny_blendmask.yaml").read_text())["MODEL"]
    overrides = {  # set by Base-BlendMask.yaml and the fixture's narrowing
        "MODEL.BASIS_MODULE.LOSS_ON": True,
        "MODEL.BASIS_MODULE.CONVS_DIM": 64,
        "MODEL.FCOS.THRESH_WITH_CTR": True,
        "MODEL.FCOS.USE_SCALE": False,
    }
    for sub in ("BLENDMASK", "BASIS_MODULE", "FCOS"):
        ref = _flatten(reference[sub], f"MODEL.{sub}.")
        ours = _flatten(cfg.MODEL[sub], f"MODEL.{sub}.")
        assert set(ref) == set(ours), sub
        for key, value in ref.items():
            expected = overrides.get(key, None)
            if expected is None:
                assert _as_plain(ours[key]) == _as_plain(value), key
            else:
                assert value == expected and ours[key] != expected, key


def test_does_not_mutate_detectron2_defaults():
    cfg = add_blendmask_config(get_cfg())
    assert cfg.MODEL.FCOS.NUM_CLASSES == 80
    fresh = get_cfg()
    assert not hasattr(fresh.MODEL, "FCOS")
    assert not hasattr(fresh.MODEL, "BLENDMASK")


def test_add_twice_is_harmless():
    cfg = add_blendmask_config(get_cfg())
    cfg.MODEL.FCOS.NUM_CLASSES = 3
    add_blendmask_config(cfg)
    assert cfg.MODEL.FCOS.NUM_CLASSES == 3


ADELAIDET_CONFIGS_IN_SCOPE = [
    "BlendMask/Base-BlendMask.yaml",
    "BlendMask/R_50_1x.yaml",
    "BlendMask/R_50_3x.yaml",
    "BlendMask/R_101_3x.yaml",
    "BlendMask/R_101_dcni3_5x.yaml",
    "BlendMask/Base-550.yaml",
    "BlendMask/550_R_50_3x.yaml",
    "BlendMask/Base-RT.yaml",
    "BlendMask/RT_R_50_4x_syncbn_shtw.yaml",
    "BlendMask/RT_R_50_4x_bn-head_syncbn_shtw.yaml",
    "BlendMask/Person/R_50_1x.yaml",
    "FCOS-Detection/R_50_1x.yaml",
    "FCOS-Detection/MS_R_50_2x.yaml",
    "FCOS-Detection/MS_X_101_32x8d_2x_dcnv2.yaml",
    "FCOS-Detection/FCOS_RT/MS_R_50_4x_syncbn_bn_head.yaml",
    "tiny_blendmask.yaml",
    "fcos_tiny.yaml",
    "rt_bnhead_tiny.yaml",
]


def test_adelaidet_yaml_files_merge_unchanged():
    for name in ADELAIDET_CONFIGS_IN_SCOPE:
        path = reference_file(name if "/" not in name else f"configs/{name}")
        cfg = add_blendmask_config(get_cfg())
        cfg.merge_from_file(str(path))
        assert cfg.MODEL.PROPOSAL_GENERATOR.NAME == "FCOS", name


def test_our_configs_carry_their_bases():
    configs = sorted((REPO_ROOT / "configs").rglob("*.yaml"))
    assert configs, "no configs found"
    for path in configs:
        cfg = add_blendmask_config(get_cfg())
        cfg.merge_from_file(str(path))
        assert cfg.MODEL.META_ARCHITECTURE in ("BlendMask", "OneStageDetector"), path
