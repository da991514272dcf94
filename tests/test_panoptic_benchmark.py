"""benchmark_inference.py: panoptic BlendMask timed beside BlendMask (tiny setting, no timing asserts)."""

import json
import re
import subprocess
import sys

from conftest import REPO_ROOT


def test_panoptic_row_and_ratio(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "benchmark_inference.py"), "--tiny", "--runs", "1",
         "--warmup", "0", "--counts", "5", "--models", "BlendMask R_50", "Panoptic BlendMask R_50",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=REPO_ROOT / "benchmarks")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"\| Panoptic BlendMask / BlendMask \| \d+\.\d\d \|", proc.stdout), proc.stdout
    records = {r["model"]: r for r in json.loads((tmp_path / "inference.json").read_text())}
    panoptic = records["Panoptic BlendMask R_50"]
    assert {"backbone+FPN", "semantic head", "semantic resize", "combine", "basis module"} <= set(panoptic["stages_ms"])
    assert panoptic["detections"] == 5 and "semantic head" not in records["BlendMask R_50"]["stages_ms"]
