"""CenterMask-Lite trains on the built-in shapes (train_net.py, tools/main_job.py) and evaluates with
mask_scores for segm AP."""


import torch

from blendmask.data import ShapesSpec, register_shapes
from conftest import REPO_ROOT, import_script

train_net = import_script("train_net.py")

CONFIG = str(REPO_ROOT / "configs" / "Shapes" / "CenterMask_Lite_V19.yaml")
TINY = ShapesSpec(image_size=64, num_train=4, num_val=2, min_shape_size=12, max_shape_size=32)
TINY_OPTS = [
    "MODEL.DEVICE", "cpu", "MODEL.FPN.OUT_CHANNELS", "32", "MODEL.ROI_MASK_HEAD.CONV_DIM", "32",
    "MODEL.ROI_MASKIOU_HEAD.CONV_DIM", "16", "MODEL.VOVNET.CONV_BODY", "V-19-slim-dw-eSE",
    "MODEL.FCOS.INFERENCE_TH_TEST", "0.0", "MODEL.FCOS.POST_NMS_TOPK_TEST", "10",
    "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64", "INPUT.MIN_SIZE_TEST", "64",
    "INPUT.MAX_SIZE_TEST", "64", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.BASE_LR", "0.01", "SOLVER.WARMUP_ITERS", "0",
    "SOLVER.STEPS", "()", "DATALOADER.NUM_WORKERS", "0", "SEED", "1",
]


def test_centermask_lite_trains_on_shapes_and_evaluates_segm_with_mask_scores(tmp_path):
    names = register_shapes(tmp_path, TINY, prefix="cm_tiny_shapes")
    out = tmp_path / "out"
    data = ["DATASETS.TRAIN", f"('{names['train']}',)", "DATASETS.TEST", f"('{names['val']}',)"]
    args = train_net.argument_parser().parse_args(
        ["--config-file", CONFIG, *TINY_OPTS, *data, "SOLVER.MAX_ITER", "2", "OUTPUT_DIR", str(out)])
    train_net.main(args)
    checkpoint = torch.load(out / "model_final.pth", weights_only=False)["model"]
    assert any(k.startswith("roi_heads.maskiou_head.") for k in checkpoint)
    args = train_net.argument_parser().parse_args(
        ["--config-file", CONFIG, "--eval-only", *TINY_OPTS, *data, "MODEL.WEIGHTS", str(out / "model_final.pth"),
         "OUTPUT_DIR", str(out)])
    results = train_net.main(args)
    results = results.get(names["val"], results)  # one dataset: detectron2 returns its results directly
    assert {"bbox", "segm"} <= set(results)
    # segm results were ranked by mask_scores (MaskScoringCOCOEvaluator writes them apart)
    assert (out / "inference" / names["val"] / "coco_instances_results_segm.json").exists()


def test_main_job_runs_centermask_beside_blendmask(tmp_path):
    main_job = import_script("tools/main_job.py")

    args = main_job.parse_args(["--models", "BlendMask", "CenterMask", "--iters", "10"])
    cfgs = {main_job.MODEL_CONFIGS[key][0]: main_job.model_cfg(args, tmp_path, key) for key in args.models}
    assert {n: c.MODEL.META_ARCHITECTURE for n, c in cfgs.items()} == {"BlendMask": "BlendMask",
                                                                      "CenterMask-Lite": "CenterMask"}
    assert cfgs["CenterMask-Lite"].OUTPUT_DIR == str(tmp_path / "centermask")
    assert cfgs["CenterMask-Lite"].SOLVER.MAX_ITER == 10
