"""benchmarks/benchmark_solov2.py --tiny: the forced detection counts are met, every stage is timed and
BlendMask runs in the same rounds."""


from conftest import import_script


def test_benchmark_forces_the_detection_counts(tmp_path):
    benchmark_solov2 = import_script("benchmarks/benchmark_solov2.py")

    results = benchmark_solov2.main(["--tiny", "--runs", "1", "--warmup", "0", "--counts", "3", "7",
                                     "--out", str(tmp_path)])
    solo = {n: r for (name, n), r in results.items() if name == "SOLOv2 R50"}
    assert {n: r["detections"] for n, r in solo.items()} == {3: 3, 7: 7}
    assert {key for key in results if key[0] == "BlendMask R_50"} == {("BlendMask R_50", 3), ("BlendMask R_50", 7)}
    for r in solo.values():
        assert set(benchmark_solov2.STAGES) <= set(r["stages_ms"]) and r["median_ms"] > 0
        assert sum(r["stages_ms"].values()) <= r["max_ms"] * 1.01
    table = (tmp_path / "solov2_inference.md").read_text()
    assert table.count("\n| SOLOv2 R50 |") == 2 and table.count("\n| SOLOv2 / BlendMask |") == 2
