"""SOLOv2 R-50, 3x schedule (36 epochs), as a detectron2 LazyConfig: the model of SOLOv2/R50_3x.yaml.

    blendmask-lazy-train --config-file configs/Lazy/SOLOv2_R50_3x.py --num-gpus 8

``_keys`` are the yaml keys that differ from ``blendmask.get_cfg()``'s defaults, as python.
"""

from detectron2.config import LazyCall as L

from blendmask.lazy import config, training
from blendmask.modeling import SOLOv2

zoo = dict(yaml_twin="SOLOv2/R50_3x.yaml")

_keys = dict(
    MODEL=dict(
        META_ARCHITECTURE="SOLOv2",
        MASK_ON=True,
        BACKBONE=dict(NAME="build_resnet_fpn_backbone"),
        RESNETS=dict(OUT_FEATURES=["res2", "res3", "res4", "res5"]),
        FPN=dict(IN_FEATURES=["res2", "res3", "res4", "res5"]),
    ),
    INPUT=dict(MIN_SIZE_TRAIN=[640, 672, 704, 736, 768, 800], MASK_FORMAT="bitmask"),
    DATASETS=dict(TRAIN=["coco_2017_train"], TEST=["coco_2017_val"]),
)

model = L(SOLOv2)(cfg=L(config)(**_keys))

dataloader, optimizer, lr_multiplier, train = training(
    keys=_keys, max_iter=270000, steps=(210000, 250000), base_lr=0.01, ims_per_batch=16, warmup_factor=0.01,
    output_dir="output/solov2/R50_3x_lazy", init_checkpoint="detectron2://ImageNetPretrained/MSRA/R-50.pkl",
)
