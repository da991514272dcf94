"""demo/demo.py draws panoptic BlendMask's panoptic map (AdelaiDet's tiny panoptic fixture)."""

import importlib.util
import re

import cv2
import numpy as np
from PIL import Image

from conftest import REPO_ROOT, reference_file

SMALL = ["INPUT.MIN_SIZE_TEST", "256", "INPUT.MAX_SIZE_TEST", "400"]


def test_demo_draws_the_panoptic_map(capsys, tmp_path):
    spec = importlib.util.spec_from_file_location("blendmask_demo_panoptic", REPO_ROOT / "demo" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    image = reference_file("tiny_blendmask_test_img2.png")
    args = ["--input", str(image), "--output", str(tmp_path / "drawn.png"),
            "--config-file", str(reference_file("panoptic/pan_tiny.yaml")),
            "--opts", "MODEL.WEIGHTS", str(reference_file("panoptic/pan_tiny.pth")), *SMALL]
    code = demo.main(args)
    out, err = capsys.readouterr()
    assert code == 0, err
    found = re.findall(r"^(.+): (\d+) instances?, (\d+) panoptic segments in [\d.]+ s$", out, re.M)
    assert len(found) == 1 and found[0][0] == str(image) and int(found[0][2]) > 0, out
    original = np.asarray(Image.open(image).convert("RGB"))[:, :, ::-1]
    drawn = cv2.imread(str(tmp_path / "drawn.png"))
    assert drawn.shape == original.shape
    # stuff covers most of the picture: the panoptic overlay changes most pixels
    assert (np.abs(drawn.astype(int) - original).max(axis=2) > 0).mean() > 0.5


def test_numbered_stuff_names_when_the_metadata_has_none():
    from detectron2.data.catalog import Metadata

    from blendmask.utils.visualize import panoptic_metadata

    info = [{"id": 1, "isthing": True, "category_id": 0}, {"id": 2, "isthing": False, "category_id": 3}]
    named = panoptic_metadata(Metadata(name="m", thing_classes=["a"]), info)
    assert named.stuff_classes == ["things", "stuff 1", "stuff 2", "stuff 3"] and named.thing_classes == ["a"]
    full = Metadata(name="full", thing_classes=["a"], stuff_classes=["things", "x", "y", "z"])
    assert panoptic_metadata(full, info) is full
