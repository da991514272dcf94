import logging
import textwrap

import pytest
import yaml
from detectron2.config import get_cfg

from blendmask import add_blendmask_config
from conftest import REPO_ROOT, reference_file

# this package's own keys (not in AdelaiDet), with their defaults
SPEEDUP_KEYS = {
    "MODEL.BLENDMASK.SPARSE_ATTENTION": True,
    "MODEL.BASIS_MODULE.FOLD_BN": True,
    "TEST.CHANNELS_LAST_ON_CPU": True,
    "TEST.LAZY_PASTE": True,
}


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
        assert set(ref) == set(ours) - set(SPEEDUP_KEYS), sub
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


def meta_architectures_of(path):
    """What a shipped config may build: one of ours, or detectron2's Mask R-CNN for the main job's
    comparison (configs/Shapes/MaskRCNN_R18.yaml, which sets it explicitly)."""
    if path.name.startswith("MaskRCNN"):
        return ("GeneralizedRCNN",)
    return ("BlendMask", "OneStageDetector", "CenterMask", "SOLOv2", "AggMask")


def test_our_configs_carry_their_bases():
    configs = sorted((REPO_ROOT / "configs").rglob("*.yaml"))
    assert configs, "no configs found"
    from blendmask import get_cfg as blendmask_get_cfg

    for path in configs:
        cfg = blendmask_get_cfg()
        cfg.merge_from_file(str(path))
        assert cfg.MODEL.META_ARCHITECTURE in meta_architectures_of(path), path


# --- get_cfg and the speed-up keys ---------------------------------------------------------------


def _get(cfg, full_key):
    node = cfg
    for part in full_key.split("."):
        node = node[part]
    return node


def test_get_cfg_has_every_key():
    import blendmask
    from blendmask.config import all_keys

    cfg = blendmask.get_cfg()
    assert set(all_keys(add_blendmask_config(get_cfg()))) <= set(all_keys(cfg))
    assert set(all_keys(blendmask.add_centermask_config(get_cfg()))) <= set(all_keys(cfg))
    assert set(all_keys(get_cfg())) < set(all_keys(cfg))
    for sub in ("FCOS", "BLENDMASK", "BASIS_MODULE"):
        assert sub in cfg.MODEL, sub
    assert cfg.MODEL.BACKBONE.ANTI_ALIAS is False
    assert cfg.MODEL.RESNETS.DEFORM_INTERVAL == 1


def test_get_cfg_is_fresh_and_leaves_detectron2_alone():
    from blendmask import get_cfg as blendmask_get_cfg

    first = blendmask_get_cfg()
    first.MODEL.FCOS.NUM_CLASSES = 3
    first.TEST.LAZY_PASTE = False
    second = blendmask_get_cfg()
    assert second.MODEL.FCOS.NUM_CLASSES == 80
    assert second.TEST.LAZY_PASTE is True
    assert "FCOS" not in get_cfg().MODEL
    assert "LAZY_PASTE" not in get_cfg().TEST


def test_speedup_keys_and_defaults():
    from blendmask import get_cfg as blendmask_get_cfg

    cfg = blendmask_get_cfg()
    for key, default in SPEEDUP_KEYS.items():
        assert _get(cfg, key) is default, key


def test_speedup_keys_split_between_fcos_and_blendmask():
    from blendmask import add_fcos_config

    cfg = add_fcos_config(get_cfg())
    assert cfg.TEST.CHANNELS_LAST_ON_CPU is True and cfg.TEST.LAZY_PASTE is True
    assert "BLENDMASK" not in cfg.MODEL and "BASIS_MODULE" not in cfg.MODEL


def test_add_fcos_twice_is_harmless():
    from blendmask import add_fcos_config

    cfg = add_fcos_config(get_cfg())
    cfg.MODEL.FCOS.NUM_CLASSES = 3
    cfg.TEST.LAZY_PASTE = False
    add_fcos_config(cfg)
    add_blendmask_config(cfg)
    assert cfg.MODEL.FCOS.NUM_CLASSES == 3
    assert cfg.TEST.LAZY_PASTE is False
    assert cfg.MODEL.BLENDMASK.SPARSE_ATTENTION is True


def test_add_fills_keys_missing_from_an_existing_subtree():
    cfg = add_blendmask_config(get_cfg())
    del cfg.MODEL.BLENDMASK["SPARSE_ATTENTION"]
    cfg.MODEL.BLENDMASK.ATTN_SIZE = 7
    add_blendmask_config(cfg)
    assert cfg.MODEL.BLENDMASK.SPARSE_ATTENTION is True
    assert cfg.MODEL.BLENDMASK.ATTN_SIZE == 7


# --- ignored AdelaiDet keys ----------------------------------------------------------------------

IGNORED_NON_DEFAULT = {
    "MODEL.BLENDMASK.VISUALIZE": "True",
    "MODEL.BASIS_MODULE.ANN_SET": "cityscapes",
    "MODEL.FCOS.YIELD_BOX_FEATURES": "True",
}


@pytest.fixture
def fresh_warnings(monkeypatch):
    from blendmask.config import ignored

    monkeypatch.setattr(ignored, "_warned", set())
    return ignored


def _ignored_warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "no effect" in r.getMessage()]


def test_ignored_keys_keep_adelaidet_defaults():
    from blendmask.config import IGNORED_KEYS

    cfg = add_blendmask_config(get_cfg())
    assert set(IGNORED_KEYS) == set(IGNORED_NON_DEFAULT)
    for key, default in IGNORED_KEYS.items():
        assert _get(cfg, key) == default, key


def test_ignored_keys_warn_once_with_non_default_values(caplog, fresh_warnings):
    from blendmask import load_config

    opts = [item for pair in IGNORED_NON_DEFAULT.items() for item in pair]
    with caplog.at_level(logging.WARNING):
        cfg = load_config(opts=opts)
    assert cfg.MODEL.BASIS_MODULE.ANN_SET == "cityscapes"
    messages = _ignored_warnings(caplog)
    assert len(messages) == len(IGNORED_NON_DEFAULT)
    for key, message in zip(IGNORED_NON_DEFAULT, messages):
        assert key in message
    assert "'cityscapes'" in messages[1] and "True" in messages[0]

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load_config(opts=opts)
        assert fresh_warnings.warn_ignored_keys(cfg) == []
    assert _ignored_warnings(caplog) == []


def test_ignored_keys_quiet_with_defaults(caplog, fresh_warnings):
    from blendmask import get_cfg as blendmask_get_cfg
    from blendmask import load_config

    with caplog.at_level(logging.WARNING):
        load_config(opts=["MODEL.BLENDMASK.VISUALIZE", "False", "MODEL.BASIS_MODULE.ANN_SET", "coco"])
        load_config(REPO_ROOT / "configs" / "BlendMask" / "Base-BlendMask.yaml")
        assert fresh_warnings.warn_ignored_keys(blendmask_get_cfg()) == []
    assert _ignored_warnings(caplog) == []


def test_warn_ignored_keys_callable_by_builders(caplog, fresh_warnings):
    cfg = add_blendmask_config(get_cfg())
    cfg.MODEL.FCOS.YIELD_BOX_FEATURES = True
    with caplog.at_level(logging.WARNING):
        assert fresh_warnings.warn_ignored_keys(cfg) == ["MODEL.FCOS.YIELD_BOX_FEATURES"]
        assert fresh_warnings.warn_ignored_keys(cfg) == []
    assert len(_ignored_warnings(caplog)) == 1
    # a config without our keys (plain detectron2) is fine
    assert fresh_warnings.warn_ignored_keys(get_cfg()) == []


# --- unknown keys --------------------------------------------------------------------------------


def _write(path, text):
    path.write_text(textwrap.dedent(text))
    return path


def test_unknown_key_in_opts_suggests():
    from blendmask import load_config

    with pytest.raises(KeyError, match=r"Unknown config key MODEL\.BLENDMASK\.ATTN_SZIE\. "
                       r"Did you mean MODEL\.BLENDMASK\.ATTN_SIZE"):
        load_config(opts=["MODEL.BLENDMASK.ATTN_SZIE", "7"])
    with pytest.raises(KeyError, match=r"Did you mean MODEL\.FCOS\.NUM_CLASSES"):
        load_config(opts=["MODEL.FCOS.NUM_CLASSES", "3", "MODEL.FCSO.NUM_CLASSES", "3"])


def test_unknown_key_suggests_several_matches():
    from blendmask.config import UnknownConfigKeyError
    from blendmask.config.keys import unknown_key_error

    cfg = add_blendmask_config(get_cfg())
    error = unknown_key_error(cfg, "MODEL.FCOS.INFERENCE_TH")
    assert isinstance(error, UnknownConfigKeyError) and isinstance(error, KeyError)
    assert "MODEL.FCOS.INFERENCE_TH_TRAIN" in error.suggestions
    assert "MODEL.FCOS.INFERENCE_TH_TEST" in error.suggestions
    assert " or " in str(error)
    assert str(unknown_key_error(cfg, "ZZZZ")) == "Unknown config key ZZZZ."


def test_unknown_key_in_yaml_suggests(tmp_path):
    from blendmask import load_config

    path = _write(tmp_path / "typo.yaml", """\
        MODEL:
          BLENDMASK:
            ATTN_SIZE: 7
            BOTTOM_RESOLUTON: 28
        """)
    with pytest.raises(KeyError, match=r"Unknown config key MODEL\.BLENDMASK\.BOTTOM_RESOLUTON\. "
                       r"Did you mean MODEL\.BLENDMASK\.BOTTOM_RESOLUTION\?.*typo\.yaml"):
        load_config(path)


def test_unknown_subtree_in_yaml_names_a_full_key(tmp_path):
    from blendmask import load_config

    path = _write(tmp_path / "typo.yaml", """\
        MODEL:
          BASIS_MODUL:
            NUM_BASES: 7
        """)
    with pytest.raises(KeyError, match=r"Unknown config key MODEL\.BASIS_MODUL\.NUM_BASES\. "
                       r"Did you mean MODEL\.BASIS_MODULE\.NUM_BASES"):
        load_config(path)


def test_unknown_key_in_base_yaml_suggests(tmp_path):
    from blendmask import load_config

    (tmp_path / "base").mkdir()
    _write(tmp_path / "base" / "Base.yaml", """\
        MODEL:
          FCOS:
            NMS_THRESH: 0.5
        """)
    child = _write(tmp_path / "child.yaml", """\
        _BASE_: "base/Base.yaml"
        MODEL:
          FCOS:
            NUM_CLASSES: 3
        """)
    with pytest.raises(KeyError, match=r"Unknown config key MODEL\.FCOS\.NMS_THRESH\. "
                       r"Did you mean MODEL\.FCOS\.NMS_TH\?.*Base\.yaml"):
        load_config(child)

    listed = _write(tmp_path / "listed.yaml", """\
        _BASE_: ["base/Base.yaml"]
        """)
    with pytest.raises(KeyError, match=r"MODEL\.FCOS\.NMS_THRESH"):
        load_config(listed)


def test_unknown_key_hint_independent_of_detectron2_message(tmp_path, monkeypatch):
    from detectron2.config import CfgNode

    from blendmask import load_config

    def raise_other(self, *args, **kwargs):
        raise KeyError("something else")

    monkeypatch.setattr(CfgNode, "merge_from_list", raise_other)
    monkeypatch.setattr(CfgNode, "merge_from_file", raise_other)
    with pytest.raises(KeyError, match=r"Did you mean MODEL\.BLENDMASK\.ATTN_SIZE\?"):
        load_config(opts=["MODEL.BLENDMASK.ATTN_SZIE", "7"])
    path = _write(tmp_path / "typo.yaml", """\
        TEST:
          LAZY_PAST: false
        """)
    with pytest.raises(KeyError, match=r"Did you mean TEST\.LAZY_PASTE\?"):
        load_config(path)
    # a valid key reaches detectron2, whose (any) error passes through unchanged
    with pytest.raises(KeyError, match="something else"):
        load_config(opts=["TEST.LAZY_PASTE", "False"])


def test_odd_length_opts_is_a_clear_error():
    from blendmask import load_config

    with pytest.raises(ValueError, match=r"KEY VALUE pairs.*--eval-only"):
        load_config(opts=["MODEL.FCOS.NUM_CLASSES", "3", "--eval-only"])


def test_load_config_merges_file_then_opts(tmp_path):
    from blendmask import load_config

    path = _write(tmp_path / "cfg.yaml", """\
        _BASE_: "%s"
        MODEL:
          FCOS:
            NUM_CLASSES: 3
        TEST:
          LAZY_PASTE: false
        """ % (REPO_ROOT / "configs" / "BlendMask" / "Base-BlendMask.yaml"))
    cfg = load_config(path, opts=["MODEL.FCOS.NUM_CLASSES", "5", "MODEL.BLENDMASK.SPARSE_ATTENTION", "False"])
    assert cfg.MODEL.META_ARCHITECTURE == "BlendMask"
    assert cfg.MODEL.FCOS.NUM_CLASSES == 5
    assert cfg.TEST.LAZY_PASTE is False
    assert cfg.MODEL.BLENDMASK.SPARSE_ATTENTION is False

    given = get_cfg()
    assert load_config(opts=["MODEL.FCOS.NUM_CLASSES", "4"], cfg=given) is given
    assert given.MODEL.FCOS.NUM_CLASSES == 4


def test_deprecated_and_renamed_keys_are_left_to_detectron2(tmp_path):
    from blendmask import get_cfg as blendmask_get_cfg
    from blendmask import load_config

    cfg = blendmask_get_cfg()
    cfg.register_deprecated_key("MODEL.FCOS.OLD_SWITCH")
    cfg.register_renamed_key("MODEL.FCOS.NUM_CLASS", "MODEL.FCOS.NUM_CLASSES")
    load_config(opts=["MODEL.FCOS.OLD_SWITCH", "1"], cfg=cfg)
    path = _write(tmp_path / "old.yaml", """\
        MODEL:
          FCOS:
            OLD_SWITCH: 1
        """)
    load_config(path, cfg=cfg)
    with pytest.raises(KeyError, match="renamed"):
        load_config(opts=["MODEL.FCOS.NUM_CLASS", "3"], cfg=cfg)


def test_old_version_yaml_keys_are_upgraded_by_detectron2(tmp_path):
    from blendmask import load_config

    path = _write(tmp_path / "v1.yaml", """\
        VERSION: 1
        TEST:
          DETECTIONS_PER_IMG: 50
        """)
    assert load_config(path).TEST.DETECTIONS_PER_IMAGE == 50
    guessed = _write(tmp_path / "guessed_v1.yaml", """\
        MODEL:
          WEIGHT: "w.pth"
        """)
    assert load_config(guessed).MODEL.WEIGHTS == "w.pth"


def test_new_allowed_nodes_accept_new_keys(tmp_path):
    from detectron2.config import CfgNode

    from blendmask import get_cfg as blendmask_get_cfg
    from blendmask import load_config

    cfg = blendmask_get_cfg()
    cfg.EXTRA = CfgNode(new_allowed=True)
    path = _write(tmp_path / "extra.yaml", """\
        EXTRA:
          ANYTHING: 1
        """)
    assert load_config(path, cfg=cfg).EXTRA.ANYTHING == 1


def test_load_config_accepts_every_shipped_config():
    from blendmask import load_config

    for path in sorted((REPO_ROOT / "configs").rglob("*.yaml")):
        cfg = load_config(path)
        assert cfg.MODEL.META_ARCHITECTURE in meta_architectures_of(path), path


def test_load_config_accepts_adelaidet_configs():
    from blendmask import load_config

    for name in ADELAIDET_CONFIGS_IN_SCOPE:
        path = reference_file(name if "/" not in name else f"configs/{name}")
        assert load_config(path).MODEL.PROPOSAL_GENERATOR.NAME == "FCOS", name
