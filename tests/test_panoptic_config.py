"""Panoptic BlendMask configs and checkpoints: AdelaiDet's yaml files and key lists."""

import csv

import pytest
import torch
from detectron2.modeling import build_model

from blendmask import get_cfg, load_config
from blendmask.checkpoint import SafeCheckpointer
from conftest import REPO_ROOT, reference_file, tiny_cfg

NAMES = ["Base-Panoptic.yaml", "R_50_1x.yaml", "R_50_3x.yaml", "R_101_3x.yaml", "R_101_dcni3_5x.yaml",
         "R_50_dcni3_5x.yaml"]
OURS = REPO_ROOT / "configs" / "BlendMask" / "Panoptic"
# keys that only name where a run writes or how often it evaluates
NOT_COMPARED = ("OUTPUT_DIR",)


@pytest.mark.parametrize("name", NAMES)
def test_adelaidet_panoptic_yaml_merges_unchanged_and_equals_ours(name):
    theirs = get_cfg()
    theirs.merge_from_file(str(reference_file(f"configs/BlendMask/Panoptic/{name}")))
    assert load_config(reference_file(f"configs/BlendMask/Panoptic/{name}")).dump() == theirs.dump()
    ours = load_config(OURS / name)
    for key in NOT_COMPARED:
        ours[key] = theirs[key]
    assert ours.dump() == theirs.dump(), name
    assert ours.MODEL.PANOPTIC_FPN.COMBINE.ENABLED and ours.MODEL.SEM_SEG_HEAD.LOSS_WEIGHT == 0.5


def _read_tsv(path):
    with open(path) as f:
        return {r["key"]: tuple(int(x) for x in r["shape"].strip("[]").split(",") if x.strip())
                for r in csv.DictReader(f, delimiter="\t")}


def test_adelaidet_panoptic_checkpoint_loads_with_nothing_missing_or_unexpected(tmp_path):
    """A checkpoint with the 406 keys and shapes of AdelaiDet's Panoptic R_50_3x model (zeros) loads
    into the model configs/BlendMask/Panoptic/R_50_3x.yaml builds, strictly."""
    expected = _read_tsv(reference_file("blendmask_panoptic_R50_state_dict.tsv"))
    assert len(expected) == 406
    cfg = load_config(OURS / "R_50_3x.yaml", ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", ""])
    model = build_model(cfg)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert sorted(set(expected) - set(ours)) == [], "missing in our model"
    assert sorted(set(ours) - set(expected)) == [], "unexpected in our model"
    assert {k: v for k, v in ours.items() if expected[k] != v} == {}
    # load it the way MODEL.WEIGHTS does (expanded zeros: no memory for the values)
    dtypes = {k: v.dtype for k, v in model.state_dict().items()}
    state = {k: torch.zeros((), dtype=dtypes[k]).expand(shape) for k, shape in expected.items()}
    incompatible = SafeCheckpointer(model, strict_shapes=True)._load_model({"model": state})
    assert not incompatible.missing_keys and not incompatible.unexpected_keys
    assert not incompatible.incorrect_shapes
    assert float(model.panoptic_module.predictor.weight.detach().abs().sum()) == 0


def test_combine_keys_are_honoured():
    cfg = tiny_cfg(**{"MODEL.RESNETS.OUT_FEATURES": ["res2", "res3", "res4", "res5"],
                      "MODEL.FPN.IN_FEATURES": ["res2", "res3", "res4", "res5"],
                      "MODEL.PANOPTIC_FPN.COMBINE.ENABLED": True,
                      "MODEL.PANOPTIC_FPN.COMBINE.OVERLAP_THRESH": 0.3,
                      "MODEL.PANOPTIC_FPN.COMBINE.STUFF_AREA_LIMIT": 100,
                      "MODEL.PANOPTIC_FPN.COMBINE.INSTANCES_CONFIDENCE_THRESH": 0.6,
                      "MODEL.SEM_SEG_HEAD.NUM_CLASSES": 4, "MODEL.SEM_SEG_HEAD.CONVS_DIM": 32})
    model = build_model(cfg)
    combine = model.panoptic_combine
    assert (combine.overlap_thresh, combine.stuff_area_limit, combine.instances_confidence_thresh) == (0.3, 100, 0.6)
    assert model.panoptic_module.predictor.out_channels == 4


def test_instance_blendmask_is_unchanged():
    """COMBINE.ENABLED False (every instance config), or True without P2 (detectron2's default on a hand-made
    config): no panoptic_module, the same keys as before."""
    plain = build_model(tiny_cfg())
    assert plain.panoptic_module is None
    assert not any(k.startswith("panoptic_module") for k in plain.state_dict())
    no_p2 = build_model(tiny_cfg(**{"MODEL.PANOPTIC_FPN.COMBINE.ENABLED": True}))
    assert no_p2.panoptic_module is None
    assert list(no_p2.state_dict()) == list(plain.state_dict())
