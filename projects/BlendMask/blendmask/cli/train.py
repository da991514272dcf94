"""``blendmask-train`` (and ``train_net.py``): train or evaluate any model of the package (or any
detectron2 model) with ``blendmask.engine.Trainer``.

    blendmask-train --config-file configs/Shapes/BlendMask_R18.yaml   # or python train_net.py ...

    python train_net.py --config-file configs/Shapes/BlendMask_R18.yaml
    python train_net.py --config-file configs/Shapes/BlendMask_R18.yaml --resume
    python train_net.py --config-file configs/Shapes/BlendMask_R18.yaml --eval-only \
        MODEL.WEIGHTS output/shapes/blendmask_R18/model_final.pth
    python train_net.py --num-gpus 8 --config-file configs/BlendMask/R_50_1x.yaml
    torchrun --nproc-per-node 2 train_net.py --config-file configs/Shapes/BlendMask_R18.yaml

``--num-gpus N`` starts N processes per machine: one per GPU with NCCL, or N sharing the CPU cores
with gloo on a machine without (enough) GPUs (``blendmask.engine.launch``).

Trailing ``KEY VALUE`` pairs override the config. ``--coco-dataset NAME JSON IMAGE_ROOT``
registers your own COCO-format data. The number of classes is taken from the training datasets'
``thing_classes`` (``blendmask.data.set_num_classes``). Datasets named ``shapes_*`` are the
built-in synthetic dataset, generated on first use. Checkpoints (MODEL.WEIGHTS, --resume) load
weights-only: one that needs pickled code is refused (exit code 2) unless BLENDMASK_ALLOW_PICKLE=1
is set.
"""

import logging
import os
import sys
import warnings

# fvcore and detectron2 script a few functions when imported: a torch deprecation nobody can act on
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)

import detectron2.utils.comm as comm
import torch
from detectron2.engine import default_argument_parser
from detectron2.utils.logger import setup_logger

import blendmask
from blendmask.checkpoint import CheckpointMismatchError, SafeCheckpointer, UnsafeCheckpointError
from blendmask.data import set_num_classes
from blendmask.engine import Trainer, register_datasets
from blendmask.engine.build import warn_if_trained_differently
from blendmask.engine.launch import launch
from blendmask.engine.setup import setup_run
from blendmask.model_zoo import resolve_config_file
from blendmask.utils.env import quiet_startup


def setup(args):
    quiet_startup()
    args.config_file = resolve_config_file(args.config_file)  # configs/... from any folder: the packaged file
    cfg = blendmask.load_config(args.config_file, args.opts)  # unknown keys name the closest valid key
    # our modules' log lines (class counts set from the data, mask format, ...) from the start
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="blendmask", abbrev_name="blendmask")
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logging.getLogger("blendmask").info("MODEL.DEVICE: cuda -> cpu (no CUDA device here)")
        cfg.MODEL.DEVICE = "cpu"  # a laptop: run where we can rather than fail
    register_datasets(cfg, args.coco_dataset or ())
    set_num_classes(cfg)
    cfg.freeze()
    setup_run(cfg, args)  # detectron2's default_setup with a quieter console
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:  # as blendmask.build_model_and_load, or the last checkpoint in OUTPUT_DIR with --resume
        model = Trainer.build_model(cfg)
        checkpointer = SafeCheckpointer(model, save_dir=cfg.OUTPUT_DIR, strict_shapes=True)  # mismatch: error
        checkpoint = checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        warn_if_trained_differently(cfg, checkpoint, cfg.MODEL.WEIGHTS)  # e.g. another test size
        return Trainer.test(cfg, model)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


FLAGS_ANYWHERE = ("--eval-only", "--resume")


def parse_args(argv=None):
    """detectron2's arguments, with ``--eval-only`` and ``--resume`` accepted after the KEY VALUE
    overrides too (argparse would otherwise take them as a config key)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    flags = [a for a in argv if a in FLAGS_ANYWHERE]
    return argument_parser().parse_args(flags + [a for a in argv if a not in FLAGS_ANYWHERE])


def config_device(args):
    """MODEL.DEVICE of the command line's config when several processes will run ("cpu" makes them
    use gloo, whatever GPUs the machine has); None for one process."""
    if args.num_gpus * args.num_machines == 1 and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return None
    return blendmask.load_config(resolve_config_file(args.config_file), args.opts).MODEL.DEVICE


def argument_parser():
    parser = default_argument_parser()
    parser.add_argument(
        "--coco-dataset", nargs=3, action="append", metavar=("NAME", "JSON", "IMAGE_ROOT"),
        help="register a COCO-format dataset under NAME (repeatable); use NAME in the config's datasets",
    )
    return parser


def launch_main(main_func, args, device) -> None:
    """``main_func(args)`` in ``--num-gpus`` processes per machine (``blendmask.engine.launch``); a
    checkpoint refused as unsafe or not fitting exits 2 with its message (one process; with several,
    each worker's traceback names it)."""
    try:
        launch(main_func, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
               dist_url=args.dist_url, args=(args,), device=device)
    except (UnsafeCheckpointError, CheckpointMismatchError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def cli(argv=None):
    """The ``blendmask-train`` command (``train_net.py``)."""
    args = parse_args(argv)
    print("Command Line Args:", args)
    launch_main(main, args, config_device(args))


if __name__ == "__main__":
    cli()
