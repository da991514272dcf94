#!/usr/bin/env python
"""Print how far our SOLOv2 is from AdelaiDet's on ../shared/reference/solov2.

    python tools/compare_solov2.py [--nchw]      (or: python tools/compare_reference.py solov2)

Per image the detection count, the candidate count, the largest differences of category logits,
kernels, mask feature, candidate scores, soft masks, maskness, NMS input/output scores and final
scores, ``sum_masks`` (px), rank swaps, flipped mask pixels and the smallest mask IoU (detections
matched by grid cell and class); then the training targets (exact or not) and each loss's relative
difference. tests/test_solov2_equivalence.py checks the same quantities. Exits 1 when an image is
out of tolerance.
"""

import copy
import sys

import numpy as np


def compare_solov2(nchw: bool) -> int:
    from solov2_fixtures import (
        check_image,
        compare_image,
        load_fixture_model,
        reference_outputs,
        run_image,
        solov2_file,
        training_inputs,
    )

    from blendmask.modeling.solov2 import solov2_targets_single

    model = load_fixture_model(["TEST.CHANNELS_LAST_ON_CPU", not nchw])
    failed = 0
    ref = reference_outputs()
    for i in range(3):
        h, w = (int(v) for v in ref[f"img{i}_orig_hw"])
        result, record = run_image(model, ref[f"img{i}_input_bgr_chw_u8"], h, w)
        m, problems = compare_image(ref, i, result, record)
        failures = check_image(m, problems)
        failed += bool(failures)
        details = ", ".join(f"{k} {v:.5f}" if k == "min_mask_iou" else f"{k} {v:.2e}" if isinstance(v, float)
                            else f"{k} {v}" for k, v in m.items() if k not in ("count", "ref_count"))
        print(f"solov2 image {i}: {m['count']} detections (AdelaiDet {m['ref_count']}); {details}; "
              f"{'within tolerance' if not failures else 'OUT OF TOLERANCE: ' + '; '.join(failures)}", flush=True)
    inputs, ref_losses = training_inputs()
    targets = np.load(solov2_file("solov2_tiny_train_targets.npz"))
    inst = inputs["instances"]
    levels = solov2_targets_single(inst.gt_boxes.tensor, inst.gt_classes, inst.gt_masks.tensor, (120, 160),
                                   model.ins_head.num_grids, model.scale_ranges, model.sigma, model.num_classes)
    exact = all(
        np.array_equal(getattr(t, key).numpy(), targets[f"level{level}_{key}"])
        for level, t in enumerate(levels) for key in ("cate_label", "ins_ind_label", "grid_order", "ins_label")
    )
    print(f"solov2 training targets: {'identical' if exact else 'DIFFERENT'} "
          f"(positives per level {[len(t.grid_order) for t in levels]})")
    losses = copy.deepcopy(model).train()([inputs])
    losses["_total"] = sum(losses.values())
    for key, value in losses.items():
        rel = abs(value.item() / ref_losses[key] - 1)
        print(f"solov2 {key}: {value.item():.7f} (AdelaiDet {ref_losses[key]:.7f}), relative difference {rel:.1e}")
    return int(failed > 0)


def main(argv=None) -> int:
    from compare_reference import run_comparison

    return run_comparison(compare_solov2, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
