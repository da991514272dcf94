"""TEST.PRECISION: resolving it, the model hooks, float32 post-processing, every entry point, and
bf16 agreement with float32 on the reference fixtures (tests/precision_fixtures.py)."""

import logging

import pytest
import torch
from torch import nn

from blendmask.engine import precision as P
from conftest import tiny_cfg


@pytest.fixture
def native_bf16(monkeypatch):
    """Run as on a CPU with native bfloat16 (the result does not depend on it; only speed does)."""
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: True)


def test_resolve_precision(monkeypatch, caplog):
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: True)
    assert P.resolve_precision("auto", "cpu") is torch.bfloat16
    assert P.resolve_precision("auto", "cuda") is torch.float16
    assert P.resolve_precision("fp32", "cpu") is torch.float32
    assert P.resolve_precision("BF16", "cpu") is torch.bfloat16
    with pytest.raises(ValueError, match="TEST.PRECISION"):
        P.resolve_precision("half", "cpu")
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: False)
    assert P.resolve_precision("auto", "cpu") is torch.float32
    with caplog.at_level(logging.WARNING, logger=P.__name__):
        assert P.resolve_precision("bf16", "cpu") is torch.float32
    assert "no native bf16" in caplog.text


class _Probe(nn.Module):
    """Records whether autocast is on during its forward; returns a conv output."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.seen = []

    def forward(self, x):
        self.seen.append(torch.is_autocast_enabled("cpu"))
        return {"y": self.conv(x)}


def test_hooks_autocast_only_in_eval_and_return_float32(native_bf16):
    probe = P.set_inference_precision(_Probe(), "bf16")
    x = torch.rand(1, 3, 8, 8)
    assert probe.eval()(x)["y"].dtype == torch.float32  # computed in bf16, returned float32
    probe.train()(x)
    assert probe.seen == [True, False]
    assert not torch.is_autocast_enabled("cpu")  # left after the forward
    P.set_inference_precision(probe, "fp32")  # replaces the hooks
    probe.eval()(x)
    assert probe.seen[-1] is False


def test_post_processing_decides_in_float32(native_bf16):
    """Same head outputs (bf16 values) -> the same detections whether autocast is on or off: the
    FCOS decode, NMS, top-k and matrix NMS do not run in bfloat16."""
    from blendmask.inference import matrix_nms
    from blendmask.modeling.fcos.inference import detect_single_image

    torch.manual_seed(0)
    logits = [torch.randn(3, 20, 24).bfloat16(), torch.randn(3, 10, 12).bfloat16()]
    reg = [torch.rand(4, 20, 24).bfloat16() * 4, torch.rand(4, 10, 12).bfloat16() * 4]
    ctr = [torch.randn(1, 20, 24).bfloat16(), torch.randn(1, 10, 12).bfloat16()]
    kw = dict(strides=[8, 16], thresh=0.05, pre_nms_topk=200, post_nms_topk=50, nms_thresh=0.6,
              thresh_with_ctr=False, num_classes=3)
    fp32 = detect_single_image([x.float() for x in logits], [x.float() for x in reg], [x.float() for x in ctr], **kw)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        amp = detect_single_image(logits, reg, ctr, **kw)
    assert amp["scores"].dtype == torch.float32
    assert len(amp["scores"]) == 50  # no ties at the cut
    for key in fp32:
        torch.testing.assert_close(amp[key], fp32[key], rtol=0, atol=0)
    # matrix NMS: overlap counts above 256 pixels are not exact in bfloat16
    masks = torch.rand(30, 40, 40) > 0.3
    scores, _ = torch.sort(torch.rand(30), descending=True)
    classes, areas = torch.zeros(30, dtype=torch.long), masks.sum((1, 2))
    ref = matrix_nms(masks, classes, scores, areas)
    with torch.autocast("cpu", dtype=torch.bfloat16), P.autocast_disabled("cpu"):
        torch.testing.assert_close(matrix_nms(masks, classes, scores, areas), ref, rtol=0, atol=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not torch.equal(matrix_nms(masks, classes, scores, areas), ref)  # why it is disabled


def test_every_entry_point_reads_test_precision(native_bf16, tmp_path):
    from blendmask import Predictor, build_model_and_load
    from blendmask.utils.visualize import DrawingPredictor

    cfg = tiny_cfg(**{"TEST.PRECISION": "bf16", "MODEL.FCOS.INFERENCE_TH_TEST": 0.0})
    model = build_model_and_load(cfg)
    assert model.inference_precision == "bf16" and P.inference_dtype(model) is torch.bfloat16
    image = (torch.rand(96, 128, 3) * 255).to(torch.uint8).numpy()
    instances = Predictor(cfg)(image)["instances"]
    assert len(instances) and instances.scores.dtype == torch.float32
    assert instances.pred_boxes.tensor.dtype == torch.float32 and instances.pred_masks.dtype == torch.bool
    assert DrawingPredictor(cfg).predictor.model.inference_precision == "bf16"
    # detectron2's own build_model (DefaultPredictor, DefaultTrainer.test) gets it from the config too
    from detectron2.modeling import build_model

    assert build_model(cfg).inference_precision == "bf16"
    assert build_model(tiny_cfg()).inference_precision == "fp32"


def test_trainer_test_model_in_precision(native_bf16):
    """train_net.py --eval-only builds its model with Trainer.build_model: TEST.PRECISION applies to
    detectron2's meta-architectures as well (here GeneralizedRCNN)."""
    from blendmask import get_cfg
    from blendmask.engine import Trainer

    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.RESNETS.DEPTH", 18, "MODEL.RESNETS.RES2_OUT_CHANNELS", 64,
                         "TEST.PRECISION", "bf16"])
    assert Trainer.build_model(cfg).inference_precision == "bf16"


# (fixture, images run): the fast ones whole, the others on one image to keep the suite short
AGREEMENT_CASES = [("cm_tiny", None), ("aggmask_main", None), ("aggmask_halfgrid", None), ("fcos_tiny", (1,)),
                   ("solov2_tiny", (1,)), ("tiny_blendmask", (0,))]


@pytest.mark.parametrize("name,images", AGREEMENT_CASES, ids=[c[0] for c in AGREEMENT_CASES])
def test_bf16_agrees_with_fp32_as_well_as_rounded_weights(native_bf16, name, images):
    from precision_fixtures import measure

    _, ours, control, problems = measure(name, images=images)
    assert ours["n_ref"] > 0 and ours["matched"] > 0
    assert not problems, problems
