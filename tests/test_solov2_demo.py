"""demo/demo.py draws SOLOv2 (the tiny AdelaiDet SOLOv2 fixture): AdelaiDet's detections above the
threshold, masks with their boxes."""

import importlib.util
import re

import cv2
import numpy as np
from PIL import Image
from solov2_fixtures import reference_outputs, solov2_file

from conftest import REPO_ROOT


def test_demo_draws_adelaidet_detections_above_the_threshold(capsys, tmp_path):
    spec = importlib.util.spec_from_file_location("blendmask_demo_solov2", REPO_ROOT / "demo" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    scores = reference_outputs()["img2_scores"]
    threshold = 0.3
    assert np.abs(scores - threshold).min() > 1e-3  # no score so close that float rounding could flip it
    image = solov2_file("tiny_blendmask_test_img2.png")
    code = demo.main(["--input", str(image), "--output", str(tmp_path / "drawn.png"),
                      "--config-file", str(solov2_file("solov2_tiny.yaml")), "--confidence-threshold", str(threshold),
                      "--opts", "MODEL.WEIGHTS", str(solov2_file("solov2_tiny.pth"))])
    out, err = capsys.readouterr()
    assert code == 0, err
    counts = {p: int(n) for p, n in re.findall(r"^(.+): (\d+) instances? in [\d.]+ s$", out, re.M)}
    assert counts == {str(image): int((scores >= threshold).sum())}
    drawn = cv2.imread(str(tmp_path / "drawn.png"))
    original = np.asarray(Image.open(image).convert("RGB"))[:, :, ::-1]
    assert drawn.shape == original.shape
    assert (np.abs(drawn.astype(int) - original).max(axis=2) > 0).mean() > 0.005
