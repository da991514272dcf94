"""The benchmark scripts run on a tiny setting and produce well-formed tables (no timing asserts)."""

import json
import re
import subprocess
import sys

from conftest import REPO_ROOT, import_script


def _run(script, *args):
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / script), *args],
                          capture_output=True, text=True, timeout=600, cwd=REPO_ROOT / "benchmarks")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_inference_benchmark_table(tmp_path):
    out = _run("benchmark_inference.py", "--tiny", "--runs", "1", "--warmup", "1", "--counts", "5", "12",
               "--out", str(tmp_path))
    rows = [line for line in out.splitlines()
            if re.match(r"\| (BlendMask|FCOS|CenterMask|Mask R-CNN)[^|]*\| \d+x\d+ \|", line)]
    assert len(rows) == 6 * 2, out
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 8
        assert int(cells[2]) == int(cells[5]), f"forced detection count not reached: {row}"
        assert float(cells[3]) > 0
    assert re.search(r"\| BlendMask / Mask R-CNN \| \d+\.\d\d \| \d+\.\d\d \|", out)
    assert re.search(r"\| BlendMask / FCOS \| \d+\.\d\d \| \d+\.\d\d \|", out)
    records = json.loads((tmp_path / "inference.json").read_text())
    assert {r["model"] for r in records} == {"BlendMask R_50", "BlendMask R_50 550", "FCOS R_50",
                                              "CenterMask V-39", "CenterMask-Lite V-19", "Mask R-CNN R50-FPN"}
    centermask = next(r for r in records if r["model"] == "CenterMask V-39")
    assert {"backbone+FPN", "head", "post-processing", "ROIAlign", "SAG-Mask", "MaskIoU", "paste"} <= set(
        centermask["stages_ms"])
    assert re.search(r"\| CenterMask V-39: mask branch / FCOS \| \d+\.\d{3} \| \d+\.\d{3} \|", out)
    blend = next(r for r in records if r["model"] == "BlendMask R_50")
    assert {"backbone+FPN", "head", "post-processing", "basis module", "attention", "blender", "paste"} <= set(
        blend["stages_ms"])
    assert (tmp_path / "latency_vs_detections.png").stat().st_size > 1000


def test_training_benchmark_table():
    out = _run("benchmark_training.py", "--tiny", "--iters", "1", "--batch", "1")
    rows = [line for line in out.splitlines() if re.match(r"\| (BlendMask|FCOS|Mask R-CNN)", line)]
    assert len(rows) == 3
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[1]) > 0 and re.fullmatch(r"-?\d+\.\d+", cells[4])
    assert re.search(r"BlendMask / Mask R-CNN: \d+\.\d\d; BlendMask / FCOS: \d+\.\d\d", out)


def test_count_macs_counts_convolutions_linear_layers_and_functional_convolutions():
    import torch

    count_macs = import_script("benchmarks/count_macs.py").count_macs

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.grouped = torch.nn.Conv2d(4, 4, 1, groups=2)
            self.up = torch.nn.ConvTranspose2d(4, 2, 2, stride=2)
            self.fc = torch.nn.Linear(2 * 16 * 16, 5)

        def forward(self, inputs):
            x = self.up(self.grouped(self.conv(inputs[0]["image"][None])))
            # a functional grouped convolution in the model's own code (as SOLOv2's dynamic masks)
            y = torch.nn.functional.conv2d(x, torch.ones(6, 1, 3, 3), groups=2, padding=1)
            return self.fc(x.flatten(1)), y

    macs = count_macs(Tiny(), torch.zeros(3, 8, 8))
    assert macs == {"conv": 8 * 8 * 4 * 3 * 9, "grouped": 8 * 8 * 4 * 2, "up": 4 * 8 * 8 * 2 * 4,
                    "fc": 5 * 2 * 16 * 16, "functional": 16 * 16 * 6 * 1 * 9}
