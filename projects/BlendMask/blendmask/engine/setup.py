"""Start-up of a training or evaluation run: output folder, logging, config copy, seeds.

What detectron2's ``default_setup`` does, with a quieter console: the environment report, the
config file and the full config go to ``OUTPUT_DIR/log.txt`` and ``OUTPUT_DIR/config.yaml`` only,
not to the terminal (twice, with colour codes), and the console says where they are.
"""

import logging
import os
import sys

import detectron2.utils.comm as comm
import torch
from detectron2.utils.collect_env import collect_env_info
from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger


def setup_run(cfg, args) -> None:
    """Set up logging ("detectron2", "fvcore", "blendmask" loggers; console and
    ``OUTPUT_DIR/log.txt``), write ``OUTPUT_DIR/config.yaml``, seed every RNG with ``cfg.SEED``
    (+ rank) when it is >= 0 and set ``cudnn.benchmark`` from ``cfg.CUDNN_BENCHMARK`` in training."""
    output_dir = cfg.OUTPUT_DIR
    rank = comm.get_rank()
    if comm.is_main_process() and output_dir:
        os.makedirs(output_dir, exist_ok=True)
    for name in ("fvcore", "blendmask"):
        setup_logger(output_dir, distributed_rank=rank, name=name, abbrev_name=name)
    logger = setup_logger(output_dir, distributed_rank=rank)
    logger.info(f"Rank of current process: {rank}. World size: {comm.get_world_size()}")
    # a logger writing to log.txt only: the handlers of detectron2's logger that are not the console
    file_only = logging.getLogger("blendmask.run_details")
    file_only.propagate = False
    file_only.setLevel(logging.INFO)
    for handler in logging.getLogger("detectron2").handlers:
        if not _is_console(handler) and handler not in file_only.handlers:
            file_only.addHandler(handler)
    file_only.info("Environment info:\n" + collect_env_info())
    file_only.info(f"Command line arguments: {args}")
    if comm.is_main_process() and output_dir:
        path = os.path.join(output_dir, "config.yaml")
        with open(path, "w") as f:
            f.write(cfg.dump())
        logger.info(f"Full config saved to {path} (environment report and config in {output_dir}/log.txt)")
        file_only.info(f"Running with full config:\n{cfg.dump()}")
    seed_all_rng(None if cfg.SEED < 0 else cfg.SEED + rank)
    if not getattr(args, "eval_only", False):
        torch.backends.cudnn.benchmark = cfg.CUDNN_BENCHMARK


def _is_console(handler) -> bool:
    return getattr(handler, "stream", None) in (sys.stdout, sys.stderr)
