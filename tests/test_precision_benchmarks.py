"""--precision in the benchmarks: a row per model and precision, the forced detection counts reached
in bf16 too, and a "<precision> / fp32" ratio per model (tiny settings; no timing asserts)."""

import re

from conftest import import_script


def test_inference_benchmark_precision_rows(tmp_path, capsys):
    benchmark_inference = import_script("benchmarks/benchmark_inference.py")

    benchmark_inference.main(["--tiny", "--runs", "1", "--warmup", "0", "--counts", "6", "--models", "BlendMask R_50",
                              "CenterMask-Lite V-19", "--precision", "fp32", "bf16", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    for model in ("BlendMask R_50", "CenterMask-Lite V-19"):
        for name in (model, f"{model} bf16"):
            row = next(line for line in out.splitlines() if line.startswith(f"| {name} | "))
            cells = [c.strip() for c in row.strip("|").split("|")]
            assert int(cells[2]) == int(cells[5]) == 6, row  # forced count reached
        assert re.search(rf"\| {re.escape(model)} bf16 / {re.escape(model)} \| \d+\.\d\d \|", out), out


def test_solov2_benchmark_precision_rows(tmp_path):
    benchmark_solov2 = import_script("benchmarks/benchmark_solov2.py")

    results = benchmark_solov2.main(["--tiny", "--runs", "1", "--warmup", "0", "--counts", "4", "--no-blendmask",
                                     "--precision", "fp32", "bf16", "--out", str(tmp_path)])
    for name in ("SOLOv2 R50", "AggMask* R50"):
        assert results[(name, 4)]["detections"] == results[(f"{name} bf16", 4)]["detections"] == 4
    assert "| SOLOv2 R50 bf16 / SOLOv2 R50 | 4 |" in (tmp_path / "solov2_inference.md").read_text()


def test_training_benchmark_precision_rows():
    benchmark_training = import_script("benchmarks/benchmark_training.py")

    rows = benchmark_training.main(["--tiny", "--iters", "1", "--batch", "1", "--models", "BlendMask R_50",
                                    "--precision", "fp32", "bf16"])
    assert [r[0] for r in rows] == ["BlendMask R_50", "BlendMask R_50 bf16"]
    assert all(r[1] > 0 and r[5] == r[5] for r in rows)  # a time and a finite (not NaN) loss
