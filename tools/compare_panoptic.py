#!/usr/bin/env python
"""Print how far our panoptic BlendMask is from AdelaiDet's on ../shared/reference/adelaidet/panoptic.

    python tools/compare_panoptic.py [--nchw]      (or: python tools/compare_reference.py panoptic)

Per image: detections (matched tie-tolerantly), the largest box, score, attention, bases and mask
probability differences, flipped mask pixels and the smallest mask IoU (detections with exact-0.5
mask probabilities apart), the largest semantic logit difference, the pixels where the semantic
argmax and the panoptic map (segment ids matched by instance or stuff class) differ, the segments;
then each training loss's relative difference. tests/test_panoptic_equivalence.py checks the same
quantities against the same tolerances (tests/panoptic_fixtures.py). Exits 1 beyond tolerance.
"""

import copy
import sys
import warnings

# fvcore and detectron2 script a few functions when imported: a torch deprecation nobody can act on
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)


def _fmt(value):
    return f"{value:.2e}" if isinstance(value, float) and not 0.5 < value <= 1 else (
        f"{value:.4f}" if isinstance(value, float) else str(value))


def compare_panoptic(nchw: bool) -> int:
    from panoptic_fixtures import (
        compare_image,
        compare_losses,
        load_fixture_model,
        reference_outputs,
        run_image,
        training_inputs,
    )

    model = load_fixture_model(["TEST.CHANNELS_LAST_ON_CPU", not nchw])
    ref = reference_outputs()
    failed = 0
    for i in range(3):
        h, w = (int(v) for v in ref[f"img{i}_orig_hw"])
        out, captured = run_image(model, ref[f"img{i}_input_bgr_chw_u8"], h, w)
        m, failures = compare_image(ref, i, out, captured)
        failed += bool(failures)
        print(f"panoptic image {i} ({h}x{w}): " + "; ".join(f"{k} {_fmt(v)}" for k, v in m.items())
              + f"; {'within tolerance' if not failures else 'OUT OF TOLERANCE: ' + '; '.join(failures)}", flush=True)
    inputs, expected = training_inputs()
    losses = copy.deepcopy(model).train()([inputs])
    rel, failures = compare_losses(losses, expected)
    failed += bool(failures)
    print("panoptic losses, relative difference: " + ", ".join(f"{k} {v:.1e}" for k, v in rel.items())
          + f"; {'within tolerance' if not failures else 'OUT OF TOLERANCE: ' + '; '.join(failures)}", flush=True)
    return int(failed > 0)


def main(argv=None) -> int:
    from compare_reference import run_comparison

    return run_comparison(compare_panoptic, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
