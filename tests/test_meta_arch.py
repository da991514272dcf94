"""BlendMask and OneStageDetector end to end on tiny configs: shapes, empty cases, settings."""

import logging

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model

from conftest import tiny_cfg
from conftest import training_input as _inputs

SETTINGS = {
    "default": {},
    "attn8_res28_k3": {"MODEL.BLENDMASK.ATTN_SIZE": 8, "MODEL.BLENDMASK.BOTTOM_RESOLUTION": 28,
                       "MODEL.BASIS_MODULE.NUM_BASES": 3},
    "shared_tower_p3_p6": {"MODEL.FCOS.NUM_SHARE_CONVS": 2, "MODEL.FCOS.NUM_CLS_CONVS": 0,
                           "MODEL.FCOS.NUM_BOX_CONVS": 1, "MODEL.FCOS.TOP_LEVELS": 1,
                           "MODEL.FCOS.IN_FEATURES": ["p3", "p4", "p5", "p6"],
                           "MODEL.FCOS.FPN_STRIDES": [8, 16, 32, 64],
                           "MODEL.FCOS.SIZES_OF_INTEREST": [64, 128, 256]},
    "bn_head_p3_p5": {"MODEL.FCOS.NORM": "SyncBN", "MODEL.FCOS.TOP_LEVELS": 0,
                      "MODEL.FCOS.IN_FEATURES": ["p3", "p4", "p5"], "MODEL.FCOS.FPN_STRIDES": [8, 16, 32],
                      "MODEL.FCOS.SIZES_OF_INTEREST": [64, 128], "MODEL.FCOS.NUM_CLS_CONVS": 1,
                      "MODEL.FCOS.NUM_BOX_CONVS": 1},
    "deformable_head_no_loss_on": {"MODEL.FCOS.USE_DEFORMABLE": True, "MODEL.BASIS_MODULE.LOSS_ON": False,
                                   "MODEL.FCOS.NUM_CLS_CONVS": 2, "MODEL.FCOS.NUM_BOX_CONVS": 2},
}


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_blendmask_trains_and_predicts_on_any_setting(setting):
    cfg = tiny_cfg(**SETTINGS[setting])
    cfg.MODEL.FCOS.INFERENCE_TH_TEST = 0.0  # random init: keep detections so masks are exercised
    cfg.MODEL.FCOS.POST_NMS_TOPK_TEST = 7
    model = build_model(cfg)
    torch.nn.init.constant_(model.proposal_generator.fcos_head.bbox_pred.bias, 2.0)  # boxes of non-zero size
    model.train()
    losses = model([_inputs()])
    expected = {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr", "loss_mask"}
    if cfg.MODEL.BASIS_MODULE.LOSS_ON:
        expected.add("loss_basis_sem")
    assert set(losses) == expected
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert model.top_layer.weight.grad.abs().sum() > 0, "mask loss reaches the attention layer"

    model.eval()
    with torch.no_grad():
        out = model([{"image": torch.rand(3, 90, 121) * 255, "height": 45, "width": 60}])[0]["instances"]
    assert out.image_size == (45, 60)
    assert 0 < len(out) <= 7
    assert out.pred_masks.shape == (len(out), 45, 60) and out.pred_masks.dtype == torch.bool
    boxes = out.pred_boxes.tensor
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 60).all()


def test_zero_detections_give_empty_masks_of_the_right_shape():
    cfg = tiny_cfg()
    cfg.MODEL.FCOS.INFERENCE_TH_TEST = 1.0
    model = build_model(cfg).eval()
    with torch.no_grad():
        out = model([{"image": torch.rand(3, 64, 64) * 255, "height": 128, "width": 100}])[0]["instances"]
    assert len(out) == 0
    assert out.pred_masks.shape == (0, 128, 100)
    assert out.pred_boxes.tensor.shape == (0, 4)


def test_images_without_annotations_train_with_finite_losses():
    model = build_model(tiny_cfg()).train()
    empty = _inputs(boxes=np.zeros((0, 4)), classes=[])
    losses = model([empty, _inputs()])
    assert all(torch.isfinite(v) for v in losses.values())
    losses = model([empty])
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_mask"].item() == 0 and losses["loss_fcos_loc"].item() == 0
    sum(losses.values()).backward()


@pytest.mark.parametrize("size", [(33, 47), (20, 20), (129, 70)])
def test_sizes_not_multiple_of_the_largest_stride(size):
    model = build_model(tiny_cfg()).train()
    h, w = size
    image = _inputs(h, w, boxes=((2, 2, w - 3, h - 3),), classes=(0,))
    # two images per batch: BatchNorm (basis module) needs > 1 value per channel on 1x1 levels
    losses = model([image, image])
    assert all(torch.isfinite(v) for v in losses.values())
    model.eval()
    with torch.no_grad():
        out = model([{"image": torch.rand(3, h, w) * 255}])[0]["instances"]
    assert out.image_size == (h, w)


def test_one_stage_detector_outputs_boxes_only():
    cfg = tiny_cfg("OneStageDetector")
    cfg.MODEL.FCOS.INFERENCE_TH_TEST = 0.0
    model = build_model(cfg)
    torch.nn.init.constant_(model.proposal_generator.fcos_head.bbox_pred.bias, 2.0)
    assert not any(k.startswith("pixel_") for k in model.state_dict())  # non-persistent buffers
    losses = model.train()([_inputs()])
    assert set(losses) == {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr"}
    with torch.no_grad():
        out = model.eval()([{"image": torch.rand(3, 64, 96) * 255, "height": 128, "width": 192}])[0]["instances"]
    assert len(out) > 0 and not out.has("pred_masks")
    assert out.pred_boxes.tensor[:, 2].max() <= 192


def test_syncbn_runs_as_bn_on_one_process(caplog):
    cfg = tiny_cfg(**{"MODEL.RESNETS.NORM": "SyncBN", "MODEL.FCOS.NORM": "SyncBN"})
    with caplog.at_level(logging.INFO):
        model = build_model(cfg)
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
    assert any("SyncBatchNorm layers run as BatchNorm2d" in r.message for r in caplog.records)
    losses = model.train()([_inputs()])
    assert all(torch.isfinite(v) for v in losses.values())


def test_bad_image_input_gives_a_clear_error():
    model = build_model(tiny_cfg()).eval()
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        model([{"image": torch.rand(1, 32, 32)}])
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        model([{"image": torch.rand(32, 32, 3)}])


def test_training_needs_instances():
    model = build_model(tiny_cfg()).train()
    with pytest.raises(ValueError, match="instances"):
        model([{"image": torch.rand(3, 32, 32)}])


def test_cpu_inference_runs_the_backbone_channels_last_with_the_same_results():
    """TEST.CHANNELS_LAST_ON_CPU switches the backbone's input layout, nothing else."""
    image = torch.rand(3, 96, 128, generator=torch.Generator().manual_seed(3)) * 255
    results, layouts, state = {}, [], None
    for channels_last in (True, False):
        cfg = tiny_cfg(**{"MODEL.FCOS.INFERENCE_TH_TEST": 0.0, "MODEL.FCOS.POST_NMS_TOPK_TEST": 20,
                          "TEST.CHANNELS_LAST_ON_CPU": channels_last})
        model = build_model(cfg).eval()
        if state is None:
            torch.nn.init.constant_(model.proposal_generator.fcos_head.bbox_pred.bias, 2.0)
            state = model.state_dict()
        model.load_state_dict(state)
        model.backbone.register_forward_pre_hook(
            lambda _, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last)))
        with torch.no_grad():
            results[channels_last] = model([{"image": image}])[0]["instances"]
    assert layouts == [True, False]
    nhwc, nchw = results[True], results[False]
    assert len(nhwc) == len(nchw) == 20
    # float rounding only: same detections in the same order, scores and boxes within 1e-5
    torch.testing.assert_close(nhwc.scores, nchw.scores, rtol=0, atol=1e-5)
    torch.testing.assert_close(nhwc.pred_boxes.tensor, nchw.pred_boxes.tensor, rtol=0, atol=1e-3)
    assert (nhwc.pred_masks != nchw.pred_masks).float().mean() < 1e-3
