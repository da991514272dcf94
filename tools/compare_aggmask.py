#!/usr/bin/env python
"""Print how far our AggMask* head is from the authors' on ../shared/reference/aggmask.

    python tools/compare_aggmask.py      (or: python tools/compare_reference.py aggmask)

The fixture is head-only: its FPN features and its weights (the authors' parameter names mapped
to ours by blendmask.modeling.aggmask.convert_authors_state_dict) go into our AggMask* head. For
each fixture head (main: cross neighbours; halfgrid: coarser mask grid, corners) it prints the
largest differences of the towers, mask feature, context, per-mask-cell logits, the aggregated
logits and hidden layers of 55 fixed cells, the candidates' logits and scores, NMS input/output
scores, final scores, NMS/final order swaps, flipped mask pixels and the smallest mask IoU
(detections matched by level, cell and class), then the dense run (500/300 caps) and the training
targets and losses for one and two images; finally whether the neighbour tables of every real
config are the authors'. tests/test_aggmask_equivalence.py checks the same quantities. Exits 1
when anything is out of tolerance.
"""

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _fmt(m) -> str:
    out = []
    for k, v in m.items():
        if k.startswith("ref_") or k in ("loss_ins", "loss_cate"):
            continue
        if k == "min_mask_iou":
            out.append(f"{k} {v:.5f}")
        elif isinstance(v, float):
            out.append(f"{k} {v:.2e}")
        else:
            out.append(f"{k} {v}")
    return ", ".join(out)


def _report(label, failures) -> int:
    print(f"  -> {label}: {'within tolerance' if not failures else 'OUT OF TOLERANCE: ' + '; '.join(failures)}",
          flush=True)
    return int(bool(failures))


def compare_aggmask() -> int:
    import numpy as np
    from aggmask_fixtures import (
        VARIANTS,
        aggmask_file,
        cand_logit_diff,
        check,
        compare_heads,
        compare_inference,
        compare_training,
        fixture_json,
        load_fixture_model,
        neighbour_problems,
        reference,
        run_inference,
    )

    from blendmask.modeling.aggmask import neighbour_table, resolve_mode

    failed = 0
    for variant in VARIANTS:
        model, ref = load_fixture_model(variant), reference(variant)
        outputs, record, det, masks = run_inference(model)
        m = compare_heads(model, ref, outputs)
        print(f"aggmask {variant} heads ({model.neighbour_mode} neighbours, K {model.fcn.num_params}): {_fmt(m)}")
        failed += _report(f"{variant} heads", check(m, neighbour_problems(model, ref)))
        m, problems = compare_inference(model, ref, record, det, masks)
        if not problems:
            m["cand_logits"] = cand_logit_diff(model, ref, outputs, record)
        print(f"aggmask {variant} image 0: {_fmt(m)}")
        failed += _report(f"{variant} detections", check(m, problems))
        for run, images in (("train1", (0,)), ("train2", (0, 1))):
            m, problems = compare_training(model, ref, run, images)
            print(f"aggmask {variant} {run} ({len(images)} image{'s' if len(images) > 1 else ''}): "
                  f"loss_ins {m['loss_ins']:.7f} (authors {m['ref_loss_ins']:.7f}), "
                  f"loss_cate {m['loss_cate']:.7f} (authors {m['ref_loss_cate']:.7f}); {_fmt(m)}")
            failed += _report(f"{variant} {run} targets and losses", problems)

    model = load_fixture_model("main", dense=True)
    ref = reference("main")
    outputs, record, det, masks = run_inference(model)
    m, problems = compare_inference(model, ref, record, det, masks, prefix="dense_")
    print(f"aggmask main dense run (category bias + 0.75): {_fmt(m)}")
    failed += _report("dense run", check(m, problems))

    tables = np.load(aggmask_file("aggmask_full_config_spatial_index.npz"))
    bad = []
    for name, c in fixture_json()["full_size_configs"].items():
        mode = resolve_mode("cross" if c["interpolation_mode"] == 5 else "auto", c["cls_grid_number"],
                            c["mask_grid_number"])
        for level, (sc, sm) in enumerate(zip(c["cls_grid_number"], c["mask_grid_number"])):
            if not np.array_equal(neighbour_table(sc, sm, mode).numpy(), tables[f"{name}__l{level}"]):
                bad.append(f"{name} level {level}")
    print(f"aggmask neighbour tables of {len(fixture_json()['full_size_configs'])} real configs: "
          f"{'identical' if not bad else 'DIFFERENT: ' + ', '.join(bad)}")
    failed += bool(bad)
    return int(failed > 0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    sys.path.insert(0, str(REPO / "tests"))
    import torch

    torch.set_num_threads(2)
    return compare_aggmask()


if __name__ == "__main__":
    sys.exit(main())
