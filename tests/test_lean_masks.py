"""Masks on large photos stay box-local: the lazy paste's private zero pages, selection and drawing
box by box (blendmask.inference.paste, blendmask.utils.visualize); peak memory of the demo's path
on a 12 MP photo in a fresh process (benchmarks/benchmark_memory.py)."""

import numpy as np
import pytest
import torch
from detectron2.data.catalog import Metadata
from detectron2.structures import Boxes, Instances

from blendmask.inference import mask_crops, paste_masks, select_masks


def _rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def _pasted(n=6, size=(300, 400), seed=0):
    g = torch.Generator().manual_seed(seed)
    probs = torch.rand(n, 14, 14, generator=g)
    xy = torch.rand(n, 2, generator=g) * torch.tensor([300.0, 200.0])
    boxes = torch.cat([xy, xy + 20 + torch.rand(n, 2, generator=g) * 80], dim=1)
    return paste_masks(probs, boxes, size, 0.5, "lazy"), boxes


def test_reading_lazy_masks_does_not_grow_memory():
    masks = paste_masks(torch.ones(4, 14, 14), torch.tensor([[10.0, 10, 50, 50]] * 4), (8000, 8000), 0.5, "lazy")
    before = _rss_mib()
    assert int(masks.sum()) == 4 * int(masks[0, :60, :60].sum()) > 4 * 1500  # reads all 256 MB
    assert _rss_mib() - before < 64  # a shared map would have grown by 256 MB


def test_select_masks_equals_indexing_and_stays_box_local():
    masks, _ = _pasted()
    keep = torch.tensor([True, False, True, True, False, True])
    selected = select_masks(masks, keep)
    assert torch.equal(selected, masks[keep])
    assert torch.equal(selected.box_extents, masks.box_extents[keep])
    plain = masks[keep].clone()  # no box_extents: plain indexing
    assert torch.equal(select_masks(plain, torch.tensor([0, 2])), plain[[0, 2]])


def test_mask_crops_cover_every_pixel():
    masks, _ = _pasted()
    for masks_ in (masks, masks.clone()):  # with box_extents, and found by reading the masks
        for i, (x0, y0, crop) in enumerate(mask_crops(masks_)):
            assert int(crop.sum()) == int(masks[i].sum()) > 0
            assert torch.equal(masks[i, y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]], crop)


def _instances(size=(300, 400)):
    masks, boxes = _pasted(size=size)
    inst = Instances(size)
    inst.pred_boxes = Boxes(boxes)
    inst.scores = torch.linspace(0.9, 0.4, len(boxes))
    inst.pred_classes = torch.arange(len(boxes)) % 2
    inst.pred_masks = masks
    return inst


@pytest.mark.parametrize("drawer", ["opencv", "visualizer"])
def test_drawing_box_by_box_paints_the_masks(drawer):
    from detectron2.utils.visualizer import Visualizer

    from blendmask.utils.visualize import draw_instances, draw_instances_opencv

    inst = _instances()
    image = np.full((300, 400, 3), 128, dtype=np.uint8)
    if drawer == "opencv":
        drawn = draw_instances_opencv(image, inst, Metadata(name="t", thing_classes=["a", "b"]))
    else:
        drawn = draw_instances(Visualizer(image, Metadata(name="t", thing_classes=["a", "b"])), inst).get_image()
    assert drawn.shape == image.shape
    changed = (drawn != image).any(2)
    inside = inst.pred_masks.any(0).numpy()
    assert changed[inside].mean() > 0.9  # masks are filled
    far = np.ones_like(inside)
    for x0, y0, x1, y1 in inst.pred_boxes.tensor.round().int().tolist():
        far[max(y0 - 40, 0):y1 + 40, max(x0 - 40, 0):x1 + 40] = False  # labels may sit above a box
    assert not changed[far].any()


def test_predictor_selects_and_draws_large_photos_box_by_box(monkeypatch):
    from blendmask.utils import visualize
    from conftest import tiny_cfg

    cfg = tiny_cfg(**{"MODEL.FCOS.INFERENCE_TH_TEST": 0.0, "MODEL.FCOS.POST_NMS_TOPK_TEST": 20})
    predictor = visualize.DrawingPredictor(cfg, confidence_threshold=0.0)
    image = np.random.default_rng(0).integers(0, 256, (200, 260, 3), dtype=np.uint8)
    everything = predictor.predict(image)["instances"]
    assert hasattr(everything.pred_masks, "box_extents")  # lazily pasted
    keep = everything.scores >= everything.scores.median()
    selected = visualize.select_instances(everything, keep)
    assert torch.equal(selected.pred_masks, everything.pred_masks[keep])
    assert torch.equal(selected.scores, everything.scores[keep]) and everything.has("pred_masks")
    calls = []
    monkeypatch.setattr(visualize, "LARGE_PHOTO", 100)  # this photo counts as large
    monkeypatch.setattr(visualize, "draw_instances_opencv", lambda *a: calls.append(a) or a[0])
    predictor.draw(image, selected)
    assert len(calls) == 1


@pytest.mark.slow
def test_demo_path_on_a_12_megapixel_photo_stays_under_1_5_gb():
    """Predict and draw 100 detections on a 4000x3000 photo in a fresh process (the demo's path):
    peak RSS under 1.5 GB (the masks alone would be 1.2 GB at full size, the Visualizer's matplotlib
    canvas 1.3 GB more)."""
    from conftest import import_script

    benchmark_memory = import_script("benchmarks/benchmark_memory.py")

    result = benchmark_memory.measure(12, 100, "draw")
    assert result["detections"] == 100
    assert result["peak_mib"] < 1536, result
