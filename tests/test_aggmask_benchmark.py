"""benchmarks/benchmark_solov2.py --tiny times AggMask* beside SOLOv2 with the same settings:
the forced detection counts are met, every stage (weight and context heads too) is timed, and the
ratio rows are written."""


from conftest import import_script


def test_benchmark_times_aggmask_beside_solov2(tmp_path):
    benchmark_solov2 = import_script("benchmarks/benchmark_solov2.py")

    results = benchmark_solov2.main(["--tiny", "--runs", "1", "--warmup", "0", "--counts", "5", "--no-blendmask",
                                     "--out", str(tmp_path)])
    agg = results[(benchmark_solov2.AGGMASK, 5)]
    assert agg["detections"] == 5 and results[(benchmark_solov2.SOLOV2_AGGMASK_SETTINGS, 5)]["detections"] == 5
    assert set(benchmark_solov2.AGGMASK_STAGES) <= set(agg["stages_ms"]) and agg["median_ms"] > 0
    assert sum(agg["stages_ms"].values()) <= agg["max_ms"] * 1.01
    table = (tmp_path / "solov2_inference.md").read_text()
    assert "| AggMask* / SOLOv2 (same settings) | 5 |" in table and "| AggMask* / SOLOv2 (AdelaiDet's) | 5 |" in table
