"""tools/plot_runs.py: several main-job runs in one figure, one table and a per-group spread."""

import json

import pytest

from conftest import import_script


def write_run(path, segm, bbox, iterations=100, minutes=2.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    curve = [{"minutes": minutes / 2, "iteration": iterations // 2, "segm AP": segm / 2, "bbox AP": bbox / 2},
             {"minutes": minutes, "iteration": iterations, "segm AP": segm, "bbox AP": bbox}]
    path.write_text(json.dumps({"model": "BlendMask", "iterations": iterations, "s/iter": minutes * 60 / iterations,
                                "train min": minutes, "bbox AP": bbox, "segm AP": segm, "segm AP50": None,
                                "curve": curve}))
    return path


def test_table_groups_figure_and_bad_arguments(tmp_path, capsys):
    plot_runs = import_script("tools/plot_runs.py")
    a = write_run(tmp_path / "a" / "run.json", 60.0, 62.0)
    b = write_run(tmp_path / "b" / "run.json", 58.0, 61.0)
    c = write_run(tmp_path / "c" / "run.json", 59.5, 60.0, minutes=1.3)
    out = tmp_path / "curves.png"
    plot_runs.main(["--output", str(out), f"fp32, seed 0={a}", f"fp32, seed 1={b}", f"bf16, seed 0={c}"])
    printed = capsys.readouterr().out
    assert "| fp32, seed 1 | 100 | 1.200 | 2.0 | 61.00 | 58.00 | nan |" in printed
    assert "| fp32 | 2 | 61.50 (61.00-62.00) | 59.00 (58.00-60.00) | nan |" in printed
    assert "| bf16 | 1 | 60.00 (60.00-60.00) | 59.50 (59.50-59.50) | nan |" in printed
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000

    with pytest.raises(SystemExit):
        plot_runs.main([f"no label {a}"])
    with pytest.raises(SystemExit):
        plot_runs.main([f"x={tmp_path / 'missing.json'}"])
    failed = tmp_path / "failed.json"
    failed.write_text(json.dumps({"model": "BlendMask", "error": "FloatingPointError: nan"}))
    with pytest.raises(SystemExit):
        plot_runs.main([f"x={failed}"])
    assert "the run failed: FloatingPointError" in capsys.readouterr().err
