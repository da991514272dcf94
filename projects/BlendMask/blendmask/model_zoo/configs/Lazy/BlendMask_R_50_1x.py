"""BlendMask R-50, 1x schedule, as a detectron2 LazyConfig: the model of BlendMask/R_50_1x.yaml.

    blendmask-lazy-train --config-file configs/Lazy/BlendMask_R_50_1x.py --num-gpus 8
    blendmask-lazy-train --config-file configs/Lazy/BlendMask_R_50_1x.py model.cfg.MODEL.FCOS.NUM_CLASSES=5

``_keys`` are the yaml keys that differ from ``blendmask.get_cfg()``'s defaults, as python.
"""

from detectron2.config import LazyCall as L

from blendmask.lazy import config, training
from blendmask.modeling import BlendMask

zoo = dict(yaml_twin="BlendMask/R_50_1x.yaml")

_keys = dict(
    MODEL=dict(
        META_ARCHITECTURE="BlendMask",
        MASK_ON=True,
        BACKBONE=dict(NAME="build_fcos_resnet_fpn_backbone"),
        RESNETS=dict(OUT_FEATURES=["res3", "res4", "res5"]),
        FPN=dict(IN_FEATURES=["res3", "res4", "res5"]),
        PROPOSAL_GENERATOR=dict(NAME="FCOS"),
        PANOPTIC_FPN=dict(COMBINE=dict(ENABLED=False)),
        FCOS=dict(USE_SCALE=False, THRESH_WITH_CTR=True),
        BASIS_MODULE=dict(LOSS_ON=True),
    ),
    INPUT=dict(MIN_SIZE_TRAIN=[640, 672, 704, 736, 768, 800]),
    DATASETS=dict(TRAIN=["coco_2017_train"], TEST=["coco_2017_val"]),
)

model = L(BlendMask)(cfg=L(config)(**_keys))

dataloader, optimizer, lr_multiplier, train = training(
    keys=_keys, max_iter=90000, steps=(60000, 80000), base_lr=0.01, ims_per_batch=16,
    output_dir="output/blendmask/R_50_1x_lazy", init_checkpoint="detectron2://ImageNetPretrained/MSRA/R-50.pkl",
)
