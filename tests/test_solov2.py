"""SOLOv2: config keys, AdelaiDet checkpoint layout, and the pieces (point NMS, matrix NMS, mask
resize, boxes from masks, targets) on small hand-checked inputs."""

import copy
import csv
import math

import pytest
import torch
from detectron2.config import get_cfg as detectron2_get_cfg
from detectron2.modeling import build_model
from detectron2.structures import BitMasks
from solov2_fixtures import solov2_file
from torch.nn import functional as F

from blendmask import get_cfg, load_config
from blendmask.config import add_solov2_config
from blendmask.data import set_num_classes
from blendmask.inference import boxes_from_masks, matrix_nms, resize_mask_probs
from blendmask.modeling.solov2 import point_nms, solov2_targets_single
from conftest import REPO_ROOT, square_instances

TSV_TO_CONFIG = {"solov2_R50_3x_state_dict.tsv": "R50_3x.yaml", "solov2_R101_3x_state_dict.tsv": "R101_3x.yaml"}


def _read_tsv(path):
    with open(path) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return {r["key"]: tuple(int(x) for x in r["shape"].strip("[]").split(",") if x.strip()) for r in rows}


# --- config -------------------------------------------------------------------------------------

def test_adelaidet_yaml_files_merge_unchanged():
    directory = solov2_file("configs/SOLOv2").parent / "SOLOv2"
    for name in ("Base-SOLOv2.yaml", "R50_3x.yaml", "R101_3x.yaml"):
        cfg = load_config(directory / name)
        ours = load_config(REPO_ROOT / "configs" / "SOLOv2" / name)
        assert cfg == ours, name
        assert cfg.MODEL.META_ARCHITECTURE == "SOLOv2"
    assert cfg.MODEL.RESNETS.DEPTH == 101 and cfg.SOLVER.MAX_ITER == 270000
    assert cfg.MODEL.SOLOV2.NUM_GRIDS == [40, 36, 24, 16, 12]


def test_slim_fixture_yaml_merges_and_holds_adelaidet_defaults():
    """The fixture's yaml lists the whole MODEL.SOLOV2 subtree: every key exists here, and every value
    but the narrowed widths is our default."""
    import yaml

    data = yaml.safe_load(solov2_file("solov2_tiny.yaml").read_text())["MODEL"]["SOLOV2"]
    defaults = get_cfg().MODEL.SOLOV2
    narrowed = {"INSTANCE_IN_CHANNELS", "INSTANCE_CHANNELS", "MASK_IN_CHANNELS", "MASK_CHANNELS", "NUM_MASKS",
                "NUM_KERNELS"}
    assert set(data) <= set(defaults)
    # our additions: mask boxes, and the AggMask* authors' SOLOv2 differences (defaults = AdelaiDet's)
    assert set(defaults) - set(data) == {"BOXES_FROM_MASKS", "MASK_TOWER_NORM", "MASK_TOWER_BIAS",
                                         "KERNEL_PRED_KERNEL_SIZE", "ONE_SAMPLE_PER_CELL", "MIN_MASK_PIXELS"}
    for key, value in data.items():
        if key in narrowed:
            continue
        ours = defaults[key]
        if isinstance(value, dict):
            assert dict(ours) == value, key
        elif isinstance(value, list):
            assert [list(v) if isinstance(v, (list, tuple)) else v for v in ours] == value, key
        else:
            assert ours == value, key


def test_add_solov2_config_is_idempotent_and_leaves_detectron2_defaults_alone():
    cfg = detectron2_get_cfg()
    add_solov2_config(cfg)
    cfg.MODEL.SOLOV2.NUM_GRIDS = [8, 8, 4, 4, 2]
    add_solov2_config(cfg)
    assert cfg.MODEL.SOLOV2.NUM_GRIDS == [8, 8, 4, 4, 2]
    assert "SOLOV2" not in detectron2_get_cfg().MODEL


def test_set_num_classes_sets_solov2():
    cfg = get_cfg()
    set_num_classes(cfg, 7)
    assert cfg.MODEL.SOLOV2.NUM_CLASSES == 7


def test_unknown_solov2_key_is_refused():
    with pytest.raises(KeyError, match="NUM_GRID"):
        load_config(opts=["MODEL.SOLOV2.NUM_GRID", "[1]"])


# --- checkpoints ----------------------------------------------------------------------------------

@pytest.mark.parametrize("tsv", sorted(TSV_TO_CONFIG))
def test_full_size_models_have_adelaidet_keys_and_shapes(tsv):
    expected = _read_tsv(solov2_file(tsv))
    cfg = load_config(REPO_ROOT / "configs" / "SOLOv2" / TSV_TO_CONFIG[tsv], ["MODEL.DEVICE", "cpu"])
    ours = {k: tuple(v.shape) for k, v in build_model(cfg).state_dict().items()}
    assert sorted(set(expected) - set(ours)) == [], "missing in our model"
    assert sorted(set(ours) - set(expected)) == [], "unexpected in our model"
    assert {k: v for k, v in ours.items() if expected[k] != v} == {}


def test_fixture_checkpoint_loads_with_nothing_missing_or_unexpected():
    from solov2_fixtures import fixture_cfg

    cfg = fixture_cfg()
    model = build_model(cfg)
    state = torch.load(cfg.MODEL.WEIGHTS, map_location="cpu", weights_only=True)
    state = state.get("model", state)
    state = dict(state, pixel_mean=torch.zeros(3, 1, 1), pixel_std=torch.ones(3, 1, 1))  # old-style buffers
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


# --- inference pieces -----------------------------------------------------------------------------

def test_point_nms_keeps_cells_not_below_up_left_and_upleft_neighbours():
    s = torch.tensor([[0.5, 0.9, 0.2],
                      [0.6, 0.1, 0.9],
                      [0.3, 0.3, 0.95]])[None, None]
    # (0,2) < left 0.9; (1,1) < up 0.9; (2,0) < up 0.6; (2,1) < up-left 0.6; (1,2) 0.9 == up-left 0.9: kept.
    # (0,0) stays below its right (0.9) and lower (0.6) neighbours: the rule is one-sided.
    expected = torch.tensor([[0.5, 0.9, 0.0],
                             [0.6, 0.0, 0.9],
                             [0.0, 0.0, 0.95]])
    torch.testing.assert_close(point_nms(s)[0, 0], expected)
    g = torch.Generator().manual_seed(0)
    s = (torch.rand(2, 3, 7, 7, generator=g) * 4).round() / 4  # many ties
    loops = s.clone()
    for r in range(7):
        for c in range(7):
            neighbours = [s[..., r + dr, c + dc] for dr, dc in ((-1, 0), (0, -1), (-1, -1))
                          if r + dr >= 0 and c + dc >= 0]
            if neighbours:
                loops[..., r, c] = torch.where(s[..., r, c] >= torch.stack(neighbours).amax(0), s[..., r, c], 0.0)
    torch.testing.assert_close(point_nms(s), loops, rtol=0, atol=0)


def _matrix_nms_loops(masks, classes, scores, kernel, sigma):
    n = len(scores)
    flat = masks.reshape(n, -1).double()
    areas = flat.sum(1)
    iou = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        for j in range(i + 1, n):
            if classes[i] == classes[j]:
                inter = (flat[i] * flat[j]).sum()
                iou[i, j] = inter / (areas[i] + areas[j] - inter)
    out = []
    for j in range(n):
        decay = 1.0
        for i in range(j):
            comp = max([iou[k, i].item() for k in range(i)], default=0.0)
            if kernel == "gaussian":
                d = math.exp(-sigma * iou[i, j].item() ** 2) / math.exp(-sigma * comp ** 2)
            else:
                d = (1 - iou[i, j].item()) / (1 - comp)
            decay = min(decay, d)
        out.append(scores[j].item() * decay)
    return torch.tensor(out)


@pytest.mark.parametrize("kernel", ["gaussian", "linear"])
def test_matrix_nms_equals_the_definition(kernel):
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(12, 9, 9, generator=g) > 0.6
    classes = torch.randint(0, 3, (12,), generator=g)
    scores = torch.sort(torch.rand(12, generator=g), descending=True).values
    ours = matrix_nms(masks, classes, scores, masks.flatten(1).sum(1), kernel=kernel, sigma=2.0)
    expected = _matrix_nms_loops(masks, classes, scores, kernel, 2.0).float()
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)
    assert (ours <= scores + 1e-7).all() and ours[0] == scores[0]


def test_matrix_nms_sigma_multiplies():
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[0, :2] = True
    masks[1, :3] = True  # IoU 8/12
    out = matrix_nms(masks, torch.tensor([1, 1]), torch.tensor([1.0, 1.0]), masks.flatten(1).sum(1), sigma=2.0)
    assert out[1].item() == pytest.approx(math.exp(-2.0 * (8 / 12) ** 2), rel=1e-6)
    other_class = matrix_nms(masks, torch.tensor([1, 2]), torch.tensor([1.0, 1.0]), masks.flatten(1).sum(1))
    assert other_class.tolist() == [1.0, 1.0]


def test_matrix_nms_empty():
    out = matrix_nms(torch.zeros(0, 5, 5, dtype=torch.bool), torch.zeros(0, dtype=torch.long), torch.zeros(0),
                     torch.zeros(0))
    assert out.shape == (0,)


@pytest.mark.parametrize("image_size,output_size", [((100, 130), (75, 97)), ((97, 128), (150, 201))])
def test_mask_resize_backends_agree(image_size, output_size):
    """The trace-safe matrix resize equals F.interpolate's two resizes up to float rounding: compare
    the probabilities, and the thresholded masks away from 0.5."""
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(5, 32, 36, generator=g)
    eager = resize_mask_probs(probs, image_size, output_size, backend="interpolate")
    matrix = resize_mask_probs(probs, torch.tensor(image_size), torch.tensor(output_size), backend="matrix")
    assert eager.shape == matrix.shape == (5, *output_size)
    # the soft values: interpolate -> crop -> interpolate
    h, w = image_size
    ratio = math.ceil(h / 32)
    soft = F.interpolate(probs[None], size=(32 * ratio, 36 * ratio), mode="bilinear", align_corners=False)
    soft = F.interpolate(soft[..., :h, :w], size=output_size, mode="bilinear", align_corners=False)[0]
    clear = (soft - 0.5).abs() > 1e-5
    assert torch.equal(eager, soft > 0.5)
    assert torch.equal(matrix[clear], eager[clear])


def test_boxes_from_masks_match_detectron2():
    masks = torch.zeros(4, 20, 30, dtype=torch.bool)
    masks[0, 3:7, 5:9] = True
    masks[1, 0, 0] = True
    masks[2, 19, 29] = True
    masks[2, 5, 2] = True
    torch.testing.assert_close(boxes_from_masks(masks), BitMasks(masks).get_bounding_boxes().tensor)
    assert boxes_from_masks(torch.zeros(0, 20, 30, dtype=torch.bool)).shape == (0, 4)


# --- targets and a small model --------------------------------------------------------------------

def test_targets_use_center_of_mass_and_overlapping_ranges():
    """A right triangle whose centre of mass (y 79.33) lies below its box centre (y 70): on a 16-cell
    grid over 128 px the positive rows are 9..10 (box centre: 8..9). sqrt(area) 60 falls in the
    ranges of levels 0 and 1, which overlap."""
    mask = torch.zeros(1, 128, 128, dtype=torch.bool)
    for r in range(40, 100):
        mask[0, r, 20:20 + (r - 40) + 1] = True  # inside the box (20, 40, 80, 100)
    boxes = torch.tensor([[20.0, 40.0, 80.0, 100.0]])
    levels = solov2_targets_single(boxes, torch.tensor([3]), mask, (32, 32), [16, 16, 8, 8, 4],
                                   ((1, 96), (48, 192), (96, 384), (192, 768), (384, 2048)), 0.2, 5)
    assert [len(t.grid_order) for t in levels] == [4, 4, 0, 0, 0]  # 2 rows x 2 columns on levels 0, 1
    rows = torch.nonzero(levels[0].cate_label == 3)[:, 0].unique().tolist()
    assert rows == [9, 10]
    assert torch.equal(levels[0].ins_ind_label.nonzero().squeeze(1), levels[0].grid_order)
    assert levels[0].ins_label.shape == (4, 32, 32) and levels[0].ins_label[0].sum() > 0


def tiny_solov2_cfg():
    cfg = load_config(REPO_ROOT / "configs" / "SOLOv2" / "Base-SOLOv2.yaml", [
        "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "",
        "MODEL.RESNETS.DEPTH", 18, "MODEL.RESNETS.RES2_OUT_CHANNELS", 64, "MODEL.FPN.OUT_CHANNELS", 32,
        "MODEL.SOLOV2.INSTANCE_IN_CHANNELS", 32, "MODEL.SOLOV2.MASK_IN_CHANNELS", 32,
        "MODEL.SOLOV2.INSTANCE_CHANNELS", 32, "MODEL.SOLOV2.MASK_CHANNELS", 32, "MODEL.SOLOV2.NUM_MASKS", 32,
        "MODEL.SOLOV2.NUM_KERNELS", 32, "MODEL.SOLOV2.NUM_CLASSES", 5, "MODEL.SOLOV2.NUM_INSTANCE_CONVS", 2,
        "MODEL.SOLOV2.NUM_GRIDS", [12, 10, 8, 6, 4],
    ])
    return cfg


def test_small_model_trains_and_infers():
    torch.manual_seed(0)
    model = build_model(tiny_solov2_cfg())
    image = torch.rand(3, 100, 132) * 255
    inst = square_instances(100, 132, ((10, 12, 60, 70), (50, 30, 120, 90)), (1, 3))  # polygon masks
    losses = model.train()([{"image": image, "instances": inst}])
    assert set(losses) == {"loss_ins", "loss_cate"} and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    with pytest.raises(ValueError, match="MODEL.SOLOV2.NUM_CLASSES"):
        bad = copy.deepcopy(inst)
        bad.gt_classes = torch.tensor([1, 5])
        model([{"image": image, "instances": bad}])
    model.eval()
    with torch.no_grad():  # a bias that makes every cell fire: many candidates through every step
        model.ins_head.cate_pred.bias.fill_(3.0)
        out = model([{"image": image, "height": 50, "width": 66}])[0]["instances"]
        assert out.image_size == (50, 66) and len(out) <= 100
        assert out.pred_masks.shape[1:] == (50, 66) and out.pred_masks.dtype == torch.bool
        assert torch.all(out.scores[:-1] >= out.scores[1:])
        model.ins_head.cate_pred.bias.fill_(-50.0)  # nothing fires: an empty result, right types
        empty = model([{"image": image}])[0]["instances"]
    assert len(empty) == 0 and empty.pred_masks.shape == (0, 100, 132) and empty.pred_boxes.tensor.shape == (0, 4)


def test_set_num_classes_without_metadata_keeps_solov2s_own_count():
    cfg = load_config(REPO_ROOT / "configs" / "SOLOv2" / "Base-SOLOv2.yaml",
                      ["MODEL.SOLOV2.NUM_CLASSES", "5", "DATASETS.TRAIN", "()", "DATASETS.TEST", "()"])
    assert set_num_classes(cfg) == 5
    assert cfg.MODEL.SOLOV2.NUM_CLASSES == cfg.MODEL.FCOS.NUM_CLASSES == 5
