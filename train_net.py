#!/usr/bin/env python
"""Train or evaluate BlendMask (or any detectron2 model) with detectron2's DefaultTrainer.

    python train_net.py --config-file configs/Shapes/BlendMask_R18.yaml
    python train_net.py --config-file configs/Shapes/BlendMask_R18.yaml --resume
    python train_net.py --config-file configs/Shapes/BlendMask_R18.yaml --eval-only \
        MODEL.WEIGHTS output/shapes/blendmask_R18/model_final.pth
    python train_net.py --num-gpus 8 --config-file configs/BlendMask/R_50_1x.yaml

Trailing ``KEY VALUE`` pairs override the config. ``--coco-dataset NAME JSON IMAGE_ROOT``
registers your own COCO-format data. The number of classes is taken from the training datasets'
``thing_classes`` (``blendmask.data.set_num_classes``). Datasets named ``shapes_*`` are the
built-in synthetic dataset, generated on first use.
"""

import logging
import os
import weakref

import detectron2.utils.comm as comm
import torch
from detectron2.data import DatasetCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.engine import DefaultTrainer, TrainerBase, default_argument_parser, default_setup, launch
from detectron2.evaluation import COCOEvaluator

import blendmask
from blendmask.checkpoint import BlendMaskCheckpointer
from blendmask.data import build_shapes_dataset, build_train_loader, register_shapes, set_num_classes

# detectron2 0.6's DefaultTrainer leaves the optimizer (momentum buffers, current learning rates)
# out of its checkpoints, so --resume restarted SGD momentum from zero and ran the first resumed
# iteration at the initial learning rate; later detectron2 saves it under "_trainer".
_D2_SAVES_OPTIMIZER = DefaultTrainer.state_dict is not TrainerBase.state_dict


class Trainer(DefaultTrainer):
    def build_hooks(self):
        # weights-only loading and atomic saves, also for the periodic checkpoints the hooks write
        self.checkpointer = BlendMaskCheckpointer(self.checkpointer.model, self.cfg.OUTPUT_DIR,
                                                  trainer=weakref.proxy(self))
        return super().build_hooks()

    @classmethod
    def build_train_loader(cls, cfg):
        # records whose image is corrupt, truncated or missing are skipped with a warning naming the file
        return build_train_loader(cfg)

    def state_dict(self):
        state = super().state_dict()
        if "_trainer" not in state:  # the layout of later detectron2, so checkpoints load in both
            state["_trainer"] = self._trainer.state_dict()
        return state

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        if _D2_SAVES_OPTIMIZER:
            return
        if "_trainer" in state_dict:
            self._trainer.load_state_dict(state_dict["_trainer"])
        else:
            logging.getLogger(__name__).warning(
                "the checkpoint has no optimizer state: SGD momentum restarts from zero"
            )

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        # the fast path needs detectron2's compiled ops (absent from a python-only install)
        return COCOEvaluator(
            dataset_name, output_dir=output_folder, use_fast_impl=blendmask.detectron2_has_compiled_ops()
        )


def register_datasets(cfg, coco_datasets=()):
    """Register ``--coco-dataset NAME JSON IMAGE_ROOT`` datasets and, if cfg names it, the
    built-in shapes dataset (generated once per machine, by the first local process)."""
    for name, json_file, image_root in coco_datasets:
        if name not in DatasetCatalog.list():
            register_coco_instances(name, {}, json_file, image_root)
    if any(name.startswith("shapes_") for name in (*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST)):
        if comm.get_local_rank() == 0:
            build_shapes_dataset()
        comm.synchronize()
        register_shapes()


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
    if args.eval_only:
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
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
