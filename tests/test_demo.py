"""demo/demo.py on the tiny AdelaiDet fixture model: image folders, globs, corrupt files, video."""

import importlib.util
import re

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import REPO_ROOT, reference_file

IMAGES = [f"tiny_blendmask_test_img{i}.png" for i in range(3)]
SMALL = ["INPUT.MIN_SIZE_TEST", "256", "INPUT.MAX_SIZE_TEST", "400"]  # fast; the fixture's default is 800


@pytest.fixture(scope="module")
def demo():
    spec = importlib.util.spec_from_file_location("blendmask_demo", REPO_ROOT / "demo" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_demo(demo, capsys, *args, threshold=0.2, opts=SMALL):
    """Run the demo in this process; returns (exit code, stdout, stderr)."""
    model = ["--config-file", str(reference_file("tiny_blendmask.yaml")), "--confidence-threshold", str(threshold)]
    weights = ["MODEL.WEIGHTS", str(reference_file("tiny_blendmask_adet.pth"))]
    code = demo.main([*args, *model, "--opts", *weights, *opts])
    out, err = capsys.readouterr()
    return code, out, err


def instance_counts(stdout):
    """{input path: instance count} from the demo's per-image lines."""
    return {path: int(n) for path, n in re.findall(r"^(.+): (\d+) instances? in [\d.]+ s$", stdout, re.M)}


def test_image_folder_writes_one_drawn_image_per_input(demo, capsys, tmp_path):
    folder = reference_file(IMAGES[0]).parent  # holds exactly the three test images among its image files
    code, out, err = run_demo(demo, capsys, "--input", str(folder), "--output", str(tmp_path))
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == IMAGES
    counts = instance_counts(out)
    assert sorted(counts) == [str(folder / name) for name in IMAGES]
    assert sum(counts.values()) > 0
    for name in IMAGES:
        original = np.asarray(Image.open(folder / name).convert("RGB"))[:, :, ::-1]
        drawn = cv2.imread(str(tmp_path / name))
        assert drawn is not None and drawn.shape == original.shape
        changed = np.abs(drawn.astype(int) - original).max(axis=2) > 0
        if counts[str(folder / name)]:
            assert changed.mean() > 0.005, name  # masks, boxes and labels cover part of the picture
        else:
            assert not changed.any(), name


def test_instance_count_at_full_size_matches_adelaidet(demo, capsys, tmp_path):
    """At the fixture's 800 px the demo finds AdelaiDet's detections that score >= the threshold."""
    scores = np.load(reference_file("tiny_blendmask_adet_outputs.npz"))["img2_scores"]
    threshold = 0.35
    assert np.abs(scores - threshold).min() > 1e-3  # no score so close that float rounding could flip it
    image = reference_file(IMAGES[2])
    code, out, err = run_demo(
        demo, capsys, "--input", str(image), "--output", str(tmp_path / "drawn.jpg"), threshold=threshold, opts=[]
    )
    assert code == 0, err
    assert instance_counts(out) == {str(image): int((scores >= threshold).sum())}
    assert cv2.imread(str(tmp_path / "drawn.jpg")).shape == (333, 500, 3)


def test_corrupt_files_are_reported_and_skipped(demo, capsys, tmp_path):
    good = reference_file(IMAGES[1])
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.png").symlink_to(good)
    (folder / "corrupt.png").write_bytes(np.random.default_rng(0).bytes(2000))
    (folder / "truncated.png").write_bytes(reference_file(IMAGES[2]).read_bytes()[:50_000])
    (folder / "notes.txt").write_text("not an image, not an input")
    out_dir = tmp_path / "out"
    code, out, err = run_demo(demo, capsys, "--input", str(folder), "--output", str(out_dir))
    assert code == 1
    assert f"skipped {folder / 'corrupt.png'}: cannot read it as an image" in err
    assert f"skipped {folder / 'truncated.png'}: cannot read it as an image" in err
    assert "2 of 3 inputs failed" in err
    assert list(instance_counts(out)) == [str(folder / "good.png")]
    assert [p.name for p in out_dir.iterdir()] == ["good.png"]
    assert cv2.imread(str(out_dir / "good.png")).shape == (512, 512, 3)


def test_glob_input_and_a_missing_input(demo, capsys, tmp_path):
    folder = reference_file(IMAGES[0]).parent
    pattern = str(folder / "tiny_blendmask_test_img[12].png")
    missing = str(tmp_path / "nothing_*.png")
    code, out, err = run_demo(demo, capsys, "--input", pattern, missing, "--output", str(tmp_path / "out"))
    assert code == 1
    assert f"{missing}: no such file" in err and "1 of 3 inputs failed" in err
    assert sorted(instance_counts(out)) == [str(folder / name) for name in IMAGES[1:]]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == IMAGES[1:]


@pytest.mark.parametrize("output, written", [("out", "out/clip.mp4"), ("new/dir/drawn.avi", "new/dir/drawn.avi")])
def test_video_writes_every_frame(demo, capsys, tmp_path, output, written):
    frame = cv2.resize(cv2.imread(str(reference_file(IMAGES[0]))), (160, 120))
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (160, 120))
    for shift in range(3):
        writer.write(np.roll(frame, 8 * shift, axis=1))
    writer.release()
    code, out, err = run_demo(demo, capsys, "--video-input", str(video), "--output", str(tmp_path / output))
    assert code == 0, err
    output = tmp_path / written
    assert f"writing {output}" in out and "3 frames, " in out
    capture = cv2.VideoCapture(str(output))
    frames = []
    ok, image = capture.read()
    while ok:
        frames.append(image)
        ok, image = capture.read()
    capture.release()
    assert len(frames) == 3
    assert all(f.shape == (120, 160, 3) for f in frames)


def test_unreadable_video_fails_clearly(demo, capsys, tmp_path):
    missing = tmp_path / "missing.mp4"
    code, _, err = run_demo(demo, capsys, "--video-input", str(missing))
    assert code == 1
    assert f"cannot open video {missing}" in err
