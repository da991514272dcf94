"""CenterMask-Lite VoVNetV2-19, 4x schedule, as a detectron2 LazyConfig: the model of
CenterMask/centermask_lite_V_19_eSE_FPN_ms_4x.yaml.

    blendmask-lazy-train --config-file configs/Lazy/CenterMask_Lite_V_19_eSE_FPN_ms_4x.py --num-gpus 8

``_keys`` are the yaml keys that differ from ``blendmask.get_cfg()``'s defaults, as python.
"""

from detectron2.config import LazyCall as L

from blendmask.lazy import config, training
from blendmask.modeling import CenterMask

zoo = dict(yaml_twin="CenterMask/centermask_lite_V_19_eSE_FPN_ms_4x.yaml")

_keys = dict(
    MODEL=dict(
        META_ARCHITECTURE="CenterMask",
        MASK_ON=True,
        MASKIOU_ON=True,
        BACKBONE=dict(NAME="build_fcos_vovnet_fpn_backbone", FREEZE_AT=0),
        VOVNET=dict(CONV_BODY="V-19-eSE", OUT_FEATURES=["stage3", "stage4", "stage5"]),
        FPN=dict(IN_FEATURES=["stage3", "stage4", "stage5"], OUT_CHANNELS=128),
        PROPOSAL_GENERATOR=dict(NAME="FCOS"),
        FCOS=dict(POST_NMS_TOPK_TEST=50, NUM_CLS_CONVS=2, NUM_BOX_CONVS=2),
        ROI_HEADS=dict(NAME="CenterROIHeads", IN_FEATURES=["p3", "p4", "p5"]),
        ROI_MASK_HEAD=dict(NAME="SpatialAttentionMaskHead", NUM_CONV=2, CONV_DIM=128, ASSIGN_CRITERION="ratio"),
        ROI_MASKIOU_HEAD=dict(CONV_DIM=128, NUM_CONV=2),
    ),
    INPUT=dict(MIN_SIZE_TRAIN=[580, 600], MAX_SIZE_TRAIN=1000, MIN_SIZE_TEST=600, MAX_SIZE_TEST=1000),
    DATASETS=dict(TRAIN=["coco_2017_train"], TEST=["coco_2017_val"]),
)

model = L(CenterMask)(cfg=L(config)(**_keys))

dataloader, optimizer, lr_multiplier, train = training(
    keys=_keys, max_iter=360000, steps=(300000, 340000), base_lr=0.01, ims_per_batch=16, checkpoint_period=10000,
    output_dir="output/centermask/CenterMask-Lite-V-19-ms-4x_lazy",
    init_checkpoint="https://www.dropbox.com/s/rptgw6stppbiw1u/vovnet19_ese_detectron2.pth?dl=1",
)
