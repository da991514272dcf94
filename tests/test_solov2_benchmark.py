"""benchmarks/benchmark_solov2.py --tiny: the forced detection counts are met and every stage is timed."""

import sys

from conftest import REPO_ROOT


def test_benchmark_forces_the_detection_counts(tmp_path):
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    import benchmark_solov2

    results = benchmark_solov2.main(["--tiny", "--runs", "1", "--warmup", "0", "--counts", "3", "7",
                                     "--out", str(tmp_path)])
    assert {n: r["detections"] for n, r in results.items()} == {3: 3, 7: 7}
    for r in results.values():
        assert set(benchmark_solov2.STAGES) <= set(r["stages_ms"]) and r["median_ms"] > 0
        assert sum(r["stages_ms"].values()) <= r["max_ms"] * 1.01
    assert (tmp_path / "solov2_inference.md").read_text().count("\n| ") == 3
