"""Bad input, bad numbers, untrusted files: clear errors or correct results (issue: reliability)."""

import json
import logging
import os
import pickle
import re

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model

from adelaidet_fixtures import fixture_training_inputs, load_fixture_model
from blendmask import load_config
from blendmask.checkpoint import SafeCheckpointer, UnsafeCheckpointError
from conftest import REPO_ROOT, import_script, tiny_cfg, training_input


def test_unknown_config_key_names_the_closest_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text('_BASE_: "{}"\nMODEL:\n  FCOS:\n    NUM_CLASS: 3\n'.format(
        REPO_ROOT / "configs" / "BlendMask" / "Base-BlendMask.yaml"))
    with pytest.raises(KeyError, match=r"MODEL\.FCOS\.NUM_CLASS\. Did you mean MODEL\.FCOS\.NUM_CLASSES"):
        load_config(bad)
    with pytest.raises(KeyError, match=r"MODEL\.BLENDMASK\.ATTN_SZE\. Did you mean MODEL\.BLENDMASK\.ATTN_SIZE"):
        load_config(opts=["MODEL.BLENDMASK.ATTN_SZE", "8"])
    cfg = load_config(REPO_ROOT / "configs" / "BlendMask" / "R_50_1x.yaml", ["MODEL.FCOS.NUM_CLASSES", "3"])
    assert cfg.MODEL.FCOS.NUM_CLASSES == 3


def test_class_ids_out_of_range_are_reported():
    model = build_model(tiny_cfg()).train()
    with pytest.raises(ValueError, match=r"class ids must lie in \[0, 5\).*\[1, 7\]"):
        model([training_input(classes=(1, 7))])


def test_mismatched_class_counts_are_reported():
    with pytest.raises(ValueError, match="set_num_classes"):
        build_model(tiny_cfg(**{"MODEL.BASIS_MODULE.NUM_CLASSES": 80}))


def test_degenerate_boxes_and_polygons_outside_the_image():
    model = build_model(tiny_cfg()).train()
    boxes = ((10, 10, 10, 40), (20, 30, 60, 30), (100, 70, 160, 120), (5, 5, 50, 50))  # zero w, zero h, outside
    losses = model([training_input(100, 132, boxes=boxes, classes=(0, 1, 2, 3))])
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()


def test_very_large_output_size():
    cfg = tiny_cfg(**{"MODEL.FCOS.INFERENCE_TH_TEST": 0.0, "MODEL.FCOS.POST_NMS_TOPK_TEST": 2})
    model = build_model(cfg).eval()
    torch.nn.init.constant_(model.proposal_generator.fcos_head.bbox_pred.bias, 2.0)
    with torch.no_grad():
        out = model([{"image": torch.rand(3, 80, 120) * 255, "height": 4000, "width": 6000}])[0]["instances"]
    assert out.pred_masks.shape == (len(out), 4000, 6000)
    assert out.pred_boxes.tensor[:, 2].max() <= 6000


def test_bfloat16_autocast_keeps_losses_finite_on_the_fixture_batch():
    model = load_fixture_model("tiny_blendmask").train()
    inputs, expected = fixture_training_inputs("tiny_blendmask_adet_losses.json")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model([inputs])
    for key, value in losses.items():
        assert torch.isfinite(value), key
        # bfloat16 has ~3 significant digits; the losses stay close to the float32 reference
        assert value.item() == pytest.approx(expected[key], rel=0.1), key


def _short_training(seed, steps=3):
    torch.manual_seed(seed)
    model = build_model(tiny_cfg()).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    history = []
    for _ in range(steps):
        losses = model([training_input()])
        total = sum(losses.values())
        opt.zero_grad()
        total.backward()
        opt.step()
        history.append([v.item() for v in losses.values()])
    return history


def test_training_is_deterministic_on_cpu_with_a_fixed_seed():
    first, second = _short_training(7), _short_training(7)
    assert first == second
    assert first != _short_training(8)


def test_checkpointer_refuses_pickled_code_and_explains(tmp_path, monkeypatch):
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "note": _NotATensor()}, path)
    model = torch.nn.Linear(1, 1)
    with pytest.raises(UnsafeCheckpointError, match="BLENDMASK_ALLOW_PICKLE=1"):
        SafeCheckpointer(model).load(str(path))
    monkeypatch.setenv("BLENDMASK_ALLOW_PICKLE", "1")
    SafeCheckpointer(model).load(str(path))  # explicitly allowed: loads (key mismatch is only logged)


def test_checkpointer_reads_pkl_weights_without_running_code(tmp_path):
    path = tmp_path / "weights.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": {"weight": np.full((1, 1), 3.0, dtype=np.float32), "bias": np.zeros(1)},
                     "__author__": "test"}, f)
    model = torch.nn.Linear(1, 1)
    SafeCheckpointer(model).load(str(path))
    assert model.weight.item() == 3.0
    evil = tmp_path / "evil.pkl"
    with open(evil, "wb") as f:
        pickle.dump({"model": {}, "x": _NotATensor()}, f)
    with pytest.raises(UnsafeCheckpointError, match="not allowed"):
        SafeCheckpointer(model).load(str(evil))


def test_checkpoint_save_is_atomic(tmp_path, monkeypatch):
    model = torch.nn.Linear(2, 2)
    ckpt = SafeCheckpointer(model, save_dir=str(tmp_path))
    ckpt.save("model_final", iteration=1)
    good = (tmp_path / "model_final.pth").read_bytes()

    def dying_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save("model_final", iteration=2)
    assert (tmp_path / "model_final.pth").read_bytes() == good
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    monkeypatch.undo()
    assert SafeCheckpointer(model, save_dir=str(tmp_path)).resume_or_load("", resume=True)["iteration"] == 1
    assert not any(p.name.endswith(".pth") and p.name != "model_final.pth" for p in tmp_path.iterdir())
    assert os.path.exists(tmp_path / "model_final.pth.tmp")  # the torn write stays aside, never used


class _NotATensor:
    pass


# --- unreadable training images --------------------------------------------------------------

GOOD_IMAGES = {"rgb.png": "RGB", "gray.png": "L", "rgba.png": "RGBA", "palette.gif": "P"}
BAD_IMAGES = ("truncated.png", "notes.jpg", "missing.png")


def _mixed_image_dataset(root, name):
    """A COCO dataset of 64x48 images: good ones in several PIL modes and unreadable ones."""
    from detectron2.data.datasets import register_coco_instances
    from PIL import Image

    root.mkdir()
    colour = {"RGB": (200, 50, 10), "L": 77, "RGBA": (200, 50, 10, 128), "P": (30, 140, 250)}
    for file_name, mode in GOOD_IMAGES.items():
        if mode == "P":
            Image.new("RGB", (64, 48), colour[mode]).convert("P", palette=Image.Palette.ADAPTIVE).save(root / file_name)
        else:
            Image.new(mode, (64, 48), colour[mode]).save(root / file_name)
    noise = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(root / "truncated.png")
    whole = (root / "truncated.png").read_bytes()
    (root / "truncated.png").write_bytes(whole[: len(whole) // 2])  # header intact, pixel data cut
    (root / "notes.jpg").write_text("not an image at all\n")
    files = [*GOOD_IMAGES, *BAD_IMAGES]
    images = [{"id": i + 1, "file_name": f, "height": 48, "width": 64} for i, f in enumerate(files)]
    annotations = [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [10, 8, 30, 24], "area": 720.0,
                    "iscrowd": 0, "segmentation": [[10, 8, 40, 8, 40, 32, 10, 32]]} for i in range(len(files))]
    json_file = root / "instances.json"
    json_file.write_text(json.dumps({"images": images, "annotations": annotations,
                                     "categories": [{"id": 1, "name": "box"}]}))
    register_coco_instances(name, {}, str(json_file), str(root))
    return name


def _small_input_cfg(dataset_name):
    return tiny_cfg(**{
        "INPUT.MIN_SIZE_TRAIN": "(48,)", "INPUT.MAX_SIZE_TRAIN": 64, "DATASETS.TRAIN": f"('{dataset_name}',)",
        "SOLVER.IMS_PER_BATCH": 2, "DATALOADER.NUM_WORKERS": 0, "MODEL.FCOS.NUM_CLASSES": 1,
        "MODEL.BASIS_MODULE.NUM_CLASSES": 1,
    })


def _assert_good_image(mapped):
    name = os.path.basename(mapped["file_name"])
    assert name in GOOD_IMAGES, name
    image = mapped["image"]
    assert image.shape == (3, 48, 64) and image.dtype == torch.uint8, (name, image.shape)
    bgr = {"rgb.png": (10, 50, 200), "rgba.png": (10, 50, 200), "gray.png": (77, 77, 77), "palette.gif": (250, 140, 30)}
    expected = torch.tensor(bgr[name], dtype=torch.uint8).view(3, 1, 1).expand(3, 48, 64)
    assert torch.equal(image, expected), (name, image[:, 0, 0])  # cfg.INPUT.FORMAT is BGR
    assert len(mapped["instances"]) == 1


def test_mapper_skips_unreadable_images_naming_them_and_reads_any_mode_as_3_channels(tmp_path, caplog):
    from detectron2.data import DatasetCatalog

    from blendmask.data import SkipUnreadableMapper

    name = _mixed_image_dataset(tmp_path / "images", "mixed_images_mapper")
    mapper = SkipUnreadableMapper(_small_input_cfg(name), is_train=True)
    records = {os.path.basename(r["file_name"]): r for r in DatasetCatalog.get(name)}
    with caplog.at_level(logging.WARNING, logger="blendmask.data.mapper"):
        mapped = {file_name: mapper(record) for file_name, record in records.items()}
    for file_name in BAD_IMAGES:
        assert mapped[file_name] is None, file_name
    for file_name in GOOD_IMAGES:
        _assert_good_image(mapped[file_name])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == len(BAD_IMAGES), warnings
    reasons = ("OSError: image file is truncated", "UnidentifiedImageError", "FileNotFoundError")
    for file_name, reason in zip(BAD_IMAGES, reasons):
        path = str(tmp_path / "images" / file_name)
        assert any(w.startswith(f"skipping training image {path}: cannot read it as an image") and reason in w
                   for w in warnings), (file_name, warnings)
    # a readable image whose record is wrong is not an unreadable image: the error is raised, not skipped
    wrong_size = dict(records["rgb.png"], height=100)
    with pytest.raises(ValueError, match="[Mm]ismatch"):
        mapper(wrong_size)


def test_training_loader_replaces_unreadable_images_with_readable_ones(tmp_path, caplog):
    from blendmask.engine import Trainer

    name = _mixed_image_dataset(tmp_path / "images", "mixed_images_loader")
    cfg = _small_input_cfg(name)
    with caplog.at_level(logging.WARNING, logger="blendmask.data.mapper"):
        loader = iter(Trainer.build_train_loader(cfg))
        batches = [next(loader) for _ in range(8)]  # 16 images: every record sampled at least twice
    for batch in batches:
        assert len(batch) == 2
        for mapped in batch:
            _assert_good_image(mapped)
    assert {os.path.basename(m["file_name"]) for b in batches for m in b} == set(GOOD_IMAGES)
    warned = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipping training image")]
    # each bad file is reported once, then never read again
    assert sorted(w.split(":")[0].rsplit("/", 1)[1] for w in warned) == sorted(BAD_IMAGES), warned


def test_evaluation_skips_unreadable_images_with_the_training_warning(tmp_path, caplog):
    """Trainer.test's loader gives every readable image once (in order), skips the unreadable ones
    with the training loader's one-line warning, and inference_on_dataset runs through it."""
    from detectron2.evaluation import DatasetEvaluator, inference_on_dataset

    from blendmask.engine import Trainer

    name = _mixed_image_dataset(tmp_path / "images", "mixed_images_eval")
    cfg = _small_input_cfg(name)
    with caplog.at_level(logging.WARNING, logger="blendmask.data.mapper"):
        loader = Trainer.build_test_loader(cfg, name)
        batches = list(loader)
    assert all(len(b) == 1 for b in batches) and len(loader) == len(GOOD_IMAGES) + len(BAD_IMAGES)
    seen = [os.path.basename(b[0]["file_name"]) for b in batches]
    assert sorted(seen) == sorted(GOOD_IMAGES)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for file_name in BAD_IMAGES:
        path = str(tmp_path / "images" / file_name)
        assert sum(w.startswith(f"skipping evaluation image {path}: cannot read it as an image") for w in warned) == 1

    class Count(DatasetEvaluator):
        def reset(self):
            self.names = []

        def process(self, inputs, outputs):
            self.names += [os.path.basename(x["file_name"]) for x in inputs]

        def evaluate(self):
            return {"count": {"images": len(self.names)}}

    results = inference_on_dataset(lambda inputs: [{}] * len(inputs), loader, Count())
    assert results == {"count": {"images": len(GOOD_IMAGES)}}


def test_a_dataset_of_only_unreadable_images_fails_clearly():
    from blendmask.data import SkipNoneDataset

    calls = []
    dataset = SkipNoneDataset(list(range(5)), lambda r: calls.append(r) or (None if r != 3 else "ok"))
    assert [dataset[i] for i in range(5)] == ["ok"] * 5
    assert sorted(calls) == [0, 1, 2, 3, 3, 3, 3, 3, 4]  # a bad record is mapped once, then skipped
    with pytest.raises(RuntimeError, match="none of the 4 training records could be loaded"):
        SkipNoneDataset(list(range(4)), lambda r: None)[2]


# --- non-finite losses -----------------------------------------------------------------------


def test_a_nan_loss_stops_training_naming_the_iteration_and_the_term(tmp_path):
    from detectron2.engine import HookBase

    train_net = import_script("train_net.py")
    from blendmask.data import ShapesSpec, register_shapes

    spec = ShapesSpec(image_size=64, num_train=4, num_val=1, min_shape_size=12, max_shape_size=32)
    names = register_shapes(tmp_path / "data", spec, prefix="nan_loss_shapes")
    args = train_net.argument_parser().parse_args([
        "--config-file", str(REPO_ROOT / "configs" / "Shapes" / "BlendMask_R18.yaml"),
        "MODEL.DEVICE", "cpu", "MODEL.FPN.OUT_CHANNELS", "32", "MODEL.BASIS_MODULE.CONVS_DIM", "32",
        "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64", "SOLVER.IMS_PER_BATCH", "2",
        "SOLVER.WARMUP_ITERS", "0", "SOLVER.STEPS", "()", "DATALOADER.NUM_WORKERS", "0", "SEED", "1",
        "DATASETS.TRAIN", f"('{names['train']}',)", "DATASETS.TEST", "()", "SOLVER.MAX_ITER", "5",
        "SOLVER.CHECKPOINT_PERIOD", "100", "OUTPUT_DIR", str(tmp_path / "out"),
    ])
    trainer = train_net.Trainer(train_net.setup(args))
    trainer.resume_or_load(resume=False)

    class DivergeAtIteration2(HookBase):
        """The attention head's weights blow up before iteration 2: only the mask loss sees them."""

        def before_step(self):
            if self.trainer.iter == 2:
                with torch.no_grad():
                    self.trainer.model.top_layer.weight.fill_(float("nan"))

    trainer.register_hooks([DivergeAtIteration2()])
    with pytest.raises(FloatingPointError) as error:
        trainer.train()
    message = str(error.value)
    assert "Loss became infinite or NaN at iteration=2" in message, message
    value = r"(?:np\.float\d+\()?"
    assert re.search(rf"'loss_mask': {value}nan", message), message
    for term in ("loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr", "loss_basis_sem"):
        assert re.search(rf"'{term}': {value}\d", message), (term, message)  # the others stay finite
    # training stopped before the optimizer step: no other weight took the NaN gradients
    for name, parameter in trainer.model.named_parameters():
        assert name.startswith("top_layer.") or torch.isfinite(parameter).all(), name
    assert not list((tmp_path / "out").glob("model_final.pth"))


def test_crowd_annotations_are_left_out_of_training_targets(tmp_path):
    """As in detectron2: crowd regions are not instances; an image with only crowds trains as empty."""
    from PIL import Image

    from blendmask.data.mapper import SkipUnreadableMapper

    Image.new("RGB", (64, 48), (90, 90, 90)).save(tmp_path / "crowd.png")
    polygon = [[10, 8, 40, 8, 40, 32, 10, 32]]
    record = {"file_name": str(tmp_path / "crowd.png"), "height": 48, "width": 64, "image_id": 1, "annotations": [
        {"bbox": [10, 8, 30, 24], "bbox_mode": 1, "category_id": 0, "iscrowd": 1, "segmentation": polygon},
        {"bbox": [20, 10, 20, 20], "bbox_mode": 1, "category_id": 2, "iscrowd": 0,
         "segmentation": [[20, 10, 40, 10, 40, 30, 20, 30]]},
    ]}
    cfg = tiny_cfg(**{"INPUT.MIN_SIZE_TRAIN": "(48,)", "INPUT.MAX_SIZE_TRAIN": 64, "INPUT.RANDOM_FLIP": "none"})
    mapper = SkipUnreadableMapper(cfg, is_train=True)
    mapped = mapper(dict(record))
    assert mapped["instances"].gt_classes.tolist() == [2]
    only_crowd = mapper({**record, "annotations": record["annotations"][:1]})
    assert len(only_crowd["instances"]) == 0
    model = build_model(cfg).train()
    losses = model([mapped, only_crowd])
    assert all(torch.isfinite(v) for v in losses.values())
