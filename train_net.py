#!/usr/bin/env python
"""Train or evaluate a model of the package: the ``blendmask-train`` command (``blendmask.cli.train``).

    python train_net.py --config-file configs/Shapes/BlendMask_R18.yaml
    python train_net.py --config-file configs/Shapes/BlendMask_R18.yaml --resume
    python train_net.py --config-file configs/Shapes/BlendMask_R18.yaml --eval-only \
        MODEL.WEIGHTS output/shapes/blendmask_R18/model_final.pth
    python train_net.py --num-gpus 8 --config-file configs/BlendMask/R_50_1x.yaml
    torchrun --nproc-per-node 2 train_net.py --config-file configs/Shapes/BlendMask_R18.yaml

See ``blendmask.cli.train`` for the options (``--coco-dataset NAME JSON IMAGE_ROOT`` registers your own data).
"""

from blendmask.cli.train import (  # noqa: F401  (tests and scripts use these names from train_net)
    FLAGS_ANYWHERE,
    Trainer,
    argument_parser,
    cli,
    config_device,
    main,
    parse_args,
    register_datasets,
    setup,
)

if __name__ == "__main__":
    cli()
