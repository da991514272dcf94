#!/usr/bin/env python
"""Train or evaluate BlendMask (or any detectron2 model) with ``blendmask.engine.Trainer``.

    python train_net.py --config-file configs/Shapes/BlendMask_R18.yaml
    python train_net.py --config-file configs/Shapes/BlendMask_R18.yaml --resume
    python train_net.py --config-file configs/Shapes/BlendMask_R18.yaml --eval-only \
        MODEL.WEIGHTS output/shapes/blendmask_R18/model_final.pth
    python train_net.py --num-gpus 8 --config-file configs/BlendMask/R_50_1x.yaml

Trailing ``KEY VALUE`` pairs override the config. ``--coco-dataset NAME JSON IMAGE_ROOT``
registers your own COCO-format data. The number of classes is taken from the training datasets'
``thing_classes`` (``blendmask.data.set_num_classes``). Datasets named ``shapes_*`` are the
built-in synthetic dataset, generated on first use. Checkpoints (MODEL.WEIGHTS, --resume) load
weights-only: one that needs pickled code is refused (exit code 2) unless BLENDMASK_ALLOW_PICKLE=1
is set.
"""

import sys

import torch
from detectron2.engine import default_argument_parser, default_setup, launch

import blendmask
from blendmask.checkpoint import BlendMaskCheckpointer, UnsafeCheckpointError
from blendmask.data import set_num_classes
from blendmask.engine import Trainer, register_datasets


def setup(args):
    cfg = blendmask.load_config(args.config_file, args.opts)  # unknown keys name the closest valid key
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"  # a laptop: run where we can rather than fail
    register_datasets(cfg, args.coco_dataset or ())
    set_num_classes(cfg)
    cfg.freeze()
    default_setup(cfg, args)
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:  # as blendmask.build_model_and_load, or the last checkpoint in OUTPUT_DIR with --resume
        model = Trainer.build_model(cfg)
        BlendMaskCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        return Trainer.test(cfg, model)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def argument_parser():
    parser = default_argument_parser()
    parser.add_argument(
        "--coco-dataset", nargs=3, action="append", metavar=("NAME", "JSON", "IMAGE_ROOT"),
        help="register a COCO-format dataset under NAME (repeatable); use NAME in DATASETS.TRAIN/TEST",
    )
    return parser


if __name__ == "__main__":
    args = argument_parser().parse_args()
    print("Command Line Args:", args)
    try:
        launch(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        )
    except UnsafeCheckpointError as e:  # one process; with several, each worker's traceback names it
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
