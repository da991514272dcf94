"""benchmarks/benchmark_adelaidet_solov2.py: its logic without AdelaiDet (forced threshold, placeholder
modules, matching, summary, our worker on a tiny model), and the whole run against AdelaiDet when
ADELAIDET_PATH names a checkout."""

import importlib
import os
import sys

import pytest
import torch

from conftest import import_script


@pytest.fixture(scope="module")
def bench():
    return import_script("benchmarks/benchmark_adelaidet_solov2.py")


def test_forced_threshold_lets_exactly_count_through(bench):
    scores = torch.tensor([0.5, 0.01, 0.3, 0.2, 0.02, 0.4])
    for count in range(1, 6):
        threshold = bench.forced_threshold(scores, count)
        assert int((scores > threshold).sum()) == count
    assert int((scores > bench.forced_threshold(scores, 6)).sum()) == 6
    with pytest.raises(ValueError, match="equal"):
        bench.forced_threshold(torch.tensor([0.5, 0.3, 0.3]), 2)


def test_placeholder_modules_stand_in_only_for_missing_modules(bench):
    finder = bench.PlaceholderModules({"bench_missing_pkg.ext", "colorsys"}, packages={"bench_missing_pkg"})
    sys.meta_path.append(finder)
    try:
        from bench_missing_pkg import ext

        with pytest.raises(NotImplementedError, match="placeholder"):
            ext.anything(1, 2)
        with pytest.raises(AttributeError):
            _ = ext.__wrapped__  # dunder lookups are not answered
        sys.modules.pop("colorsys", None)
        assert importlib.import_module("colorsys").rgb_to_hsv(1.0, 0.0, 0.0) == (0.0, 1.0, 1.0)  # the real one
    finally:
        sys.meta_path.remove(finder)
        for name in ("bench_missing_pkg", "bench_missing_pkg.ext"):
            sys.modules.pop(name, None)


def test_check_checkout_says_what_is_missing(bench, tmp_path):
    with pytest.raises(SystemExit, match="ADELAIDET_PATH"):
        bench.check_checkout(None)
    with pytest.raises(SystemExit, match="not an AdelaiDet checkout"):
        bench.check_checkout(tmp_path)


def _detections(scores, classes, masks):
    return {"scores": torch.tensor(scores), "classes": torch.tensor(classes), "masks": masks}


def test_agreement_matches_across_near_ties_and_measures_masks(bench):
    masks = torch.zeros(3, 16, 16, dtype=torch.bool)
    masks[0, :8], masks[1, 8:], masks[2, :, :4] = True, True, True
    ours = _detections([0.9, 0.5, 0.5 - 1e-6], [1, 2, 2], masks)
    # AdelaiDet's order swaps the near-tied pair; one pixel of the last mask differs
    theirs_masks = masks[[0, 2, 1]].clone()
    theirs_masks[2, 15, 15] = False
    theirs = _detections([0.9, 0.5 - 1e-6, 0.5], [1, 2, 2], theirs_masks)
    agree = bench.agreement(ours, theirs)
    assert agree["ok"] and agree["matched"] == 3 and agree["flipped_pixels"] == 1
    assert agree["min_mask_iou"] == pytest.approx(127 / 128)
    assert not bench.agreement(ours, _detections([0.9], [1], masks[:1]))["ok"]  # counts differ
    assert not bench.agreement(ours, _detections([0.9, 0.5, 0.5], [1, 2, 3], masks))["ok"]  # a class differs


def test_summary_and_table(bench):
    assert bench.schedule(3) == [("ours", "AdelaiDet"), ("AdelaiDet", "ours"), ("ours", "AdelaiDet")]
    stages = {k: 1.0 for k in bench.STAGES}
    rounds = [{"ours": {"totals_ms": [80.0, 82.0], "stages_ms": [stages, stages]},
               "AdelaiDet": {"totals_ms": [100.0, 100.0], "stages_ms": [dict(stages, boxes=0.0)] * 2}},
              {"ours": {"totals_ms": [90.0], "stages_ms": [stages]},
               "AdelaiDet": {"totals_ms": [100.0], "stages_ms": [stages]}}]
    summary = bench.summarize(rounds)
    assert summary["ratio"] == pytest.approx(0.82) and summary["round_ratios"] == pytest.approx([0.81, 0.9])
    assert summary["fastest_ratio"] == pytest.approx(0.8)
    agree = {"detections": (5, 5), "matched": 5, "max_score_diff": 0.0, "min_mask_iou": 1.0, "flipped_pixels": 0,
             "foreground_pixels": 10, "ok": True}
    table = bench.markdown(summary, agree, (96, 128), 1, 5)
    assert "| ours / AdelaiDet | | 0.820 |" in table and "(ok)" in table


def test_our_worker_forces_the_count(bench, tmp_path):
    threads = torch.get_num_threads()
    try:
        bench.prepare(tmp_path, 4, bench.TINY_SIZE, tiny=True)
        result = bench.worker(bench.OURS, tmp_path, runs=1, warmup=0, threads=1, save_outputs=True)
    finally:
        torch.set_num_threads(threads)
    assert result["detections"] == 4
    assert set(bench.STAGES) <= set(result["stages_ms"][0])
    ours = torch.load(tmp_path / "ours.pt")
    assert bench.agreement(ours, ours)["ok"]


@pytest.mark.skipif(not os.environ.get("ADELAIDET_PATH"),
                    reason="set ADELAIDET_PATH to an AdelaiDet checkout to run the comparison")
def test_against_adelaidet_tiny(bench, tmp_path):
    summary, agree = bench.main(["--adelaidet", os.environ["ADELAIDET_PATH"], "--tiny", "--count", "5",
                                 "--rounds", "2", "--warmup", "0", "--threads", "1", "--out", str(tmp_path)])
    assert agree["ok"] and agree["detections"] == (5, 5)
    assert summary["ours"]["runs"] == summary["AdelaiDet"]["runs"] == 2
    assert (tmp_path / "adelaidet_solov2.md").is_file()
