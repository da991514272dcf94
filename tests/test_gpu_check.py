"""tools/gpu_check.py (make gpu-check): its CPU dry run on tiny settings runs every step and prints
one table (on a CUDA machine the same command measures fp16)."""


from conftest import import_script


def test_gpu_check_dry_run_on_cpu(tmp_path, monkeypatch):
    gpu_check = import_script("tools/gpu_check.py")

    from blendmask.engine import precision

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)  # bf16 stands in for fp16
    assert gpu_check.main(["--device", "cpu", "--tiny", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "gpu_check.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == 4 and all("| ok |" in row for row in rows), table
    assert "SOLOv2 R50" in table and "BlendMask R_50 bf16" in table
