"""The tiny shapes data and narrow-model overrides that the SOLOv2-family training tests share
(SOLOv2 and AggMask*, which is SOLOv2 plus the aggregation)."""

from blendmask.data.shapes import ShapesSpec

TINY = ShapesSpec(image_size=64, num_train=6, num_val=3, min_shape_size=12, max_shape_size=32)
# a narrow model on 64-pixel inputs; thresholds at 0 so an untrained model still predicts
TINY_OPTS = [
    "MODEL.DEVICE", "cpu", "MODEL.FPN.OUT_CHANNELS", "32", "MODEL.SOLOV2.INSTANCE_IN_CHANNELS", "32",
    "MODEL.SOLOV2.MASK_IN_CHANNELS", "32", "MODEL.SOLOV2.INSTANCE_CHANNELS", "32", "MODEL.SOLOV2.MASK_CHANNELS", "32",
    "MODEL.SOLOV2.SCORE_THR", "0.0", "MODEL.SOLOV2.MASK_THR", "0.0", "MODEL.SOLOV2.UPDATE_THR", "0.0",
    "MODEL.SOLOV2.NMS_PRE", "50", "MODEL.SOLOV2.MAX_PER_IMG", "20",
    "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64", "INPUT.MIN_SIZE_TEST", "64",
    "INPUT.MAX_SIZE_TEST", "64", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.BASE_LR", "0.01", "SOLVER.WARMUP_ITERS", "0",
    "SOLVER.STEPS", "()", "DATALOADER.NUM_WORKERS", "0", "SEED", "1",
]
