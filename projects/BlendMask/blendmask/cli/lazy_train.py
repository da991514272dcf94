"""``blendmask-lazy-train``: train or evaluate a python (LazyConfig) config, detectron2's lazy flow.

    blendmask-lazy-train --config-file configs/Lazy/BlendMask_R_50_1x.py --num-gpus 8
    blendmask-lazy-train --config-file configs/Lazy/SOLOv2_R50_3x.py --eval-only train.init_checkpoint=model.pth
    blendmask-lazy-train --config-file configs/Lazy/BlendMask_R_50_1x.py \\
        --coco-dataset mine data/train.json data/images \\
        'dataloader.train.cfg.DATASETS.TRAIN=[mine]' model.cfg.MODEL.FCOS.NUM_CLASSES=2 \\
        model.cfg.MODEL.BASIS_MODULE.NUM_CLASSES=2 train.device=cpu

Overrides are ``path.to.key=value`` (detectron2's ``LazyConfig.apply_overrides``). The config's
``model``, ``dataloader`` (``train``, ``test``, ``evaluator``), ``optimizer``, ``lr_multiplier`` and
``train`` sections are read as detectron2's ``tools/lazyconfig_train_net.py`` reads them; checkpoints
load weights-only (``SafeCheckpointer``) and the config is saved as OUTPUT/config.yaml.
"""

import logging
import os
import warnings

warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)

import detectron2.utils.comm as comm
import torch
from detectron2.config import LazyConfig, instantiate
from detectron2.engine import SimpleTrainer, default_setup, hooks
from detectron2.engine.defaults import default_writers
from detectron2.evaluation import inference_on_dataset, print_csv_format

from blendmask.checkpoint import SafeCheckpointer
from blendmask.cli.train import argument_parser, launch_main
from blendmask.engine.launch import create_ddp_model  # CPU processes (gloo) as well as GPUs
from blendmask.model_zoo import resolve_config_file

logger = logging.getLogger("blendmask")


def do_test(cfg, model):
    if "evaluator" not in cfg.dataloader:
        return {}
    results = inference_on_dataset(model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator))
    if comm.is_main_process() and results:
        print_csv_format(results)
    return results


def do_train(args, cfg):
    model = instantiate(cfg.model).to(cfg.train.device)
    logger.info(f"Model:\n{model}")
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    train_loader = instantiate(cfg.dataloader.train)
    model = create_ddp_model(model, **cfg.train.ddp)
    trainer = SimpleTrainer(model, train_loader, optimizer)
    checkpointer = SafeCheckpointer(model, cfg.train.output_dir, trainer=trainer)
    eval_period = cfg.train.get("eval_period", 0)
    trainer.register_hooks([
        hooks.IterationTimer(),
        hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
        hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if comm.is_main_process() else None,
        hooks.EvalHook(eval_period, lambda: do_test(cfg, model)) if eval_period else None,
        hooks.PeriodicWriter(default_writers(cfg.train.output_dir, cfg.train.max_iter),
                             period=cfg.train.log_period) if comm.is_main_process() else None,
    ])
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    start_iter = trainer.iter + 1 if args.resume and checkpointer.has_checkpoint() else 0
    trainer.train(start_iter, cfg.train.max_iter)


def main(args):
    from blendmask.utils.env import quiet_startup

    quiet_startup()
    cfg = load(args)
    if str(cfg.train.device).startswith("cuda") and not torch.cuda.is_available():
        logger.info(f"train.device: {cfg.train.device} -> cpu (no CUDA device here)")
        cfg.train.device = "cpu"
    for name, json_file, image_root in args.coco_dataset or ():
        from detectron2.data.datasets import register_coco_instances

        register_coco_instances(name, {}, json_file, image_root)
    default_setup(cfg, args)  # logging, OUTPUT (cfg.train.output_dir)/config.yaml, seed
    if args.eval_only:
        model = instantiate(cfg.model).to(cfg.train.device)
        model = create_ddp_model(model)
        SafeCheckpointer(model, strict_shapes=True).load(cfg.train.init_checkpoint)
        return do_test(cfg, model.eval())
    do_train(args, cfg)
    return None


def load(args):
    """The config file with the command line's ``key=value`` overrides."""
    return LazyConfig.apply_overrides(LazyConfig.load(resolve_config_file(args.config_file)), args.opts)


def config_device(args):
    """train.device when several processes will run ("cpu": gloo), None for one process."""
    if args.num_gpus * args.num_machines == 1 and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return None
    return str(load(args).train.device)


def cli(argv=None):
    """The ``blendmask-lazy-train`` command."""
    args = argument_parser().parse_args(argv)
    launch_main(main, args, config_device(args))


if __name__ == "__main__":
    cli()
