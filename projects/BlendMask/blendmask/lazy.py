"""Pieces for detectron2's LazyConfig (python configs) of this package's models.

The python configs in ``blendmask/model_zoo/configs/Lazy`` build the same models as their yaml twins::

    from detectron2.config import LazyConfig, instantiate
    from blendmask import model_zoo

    cfg = LazyConfig.load(model_zoo.get_config_file("Lazy/BlendMask_R_50_1x.py"))
    cfg.model.cfg.MODEL.FCOS.NUM_CLASSES = 5          # any key, as python attributes
    model = instantiate(cfg.model)

``model`` is ``L(BlendMask)(cfg=L(config)(MODEL=..., ...))``: the meta-architecture class (swappable)
built by detectron2's ``@configurable`` from the config keys the python file spells out (what
differs from ``blendmask.get_cfg()``'s defaults). ``dataloader``, ``optimizer``, ``lr_multiplier`` and
``train`` follow detectron2's lazy training layout; ``blendmask-lazy-train`` (:mod:`blendmask.cli.lazy_train`)
runs them.
"""

from typing import Mapping

from detectron2.config import LazyCall as L

__all__ = ["config", "training"]


def _plain(value):
    """omegaconf containers -> plain python (lists stay lists; CfgNode accepts both)."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(value, (DictConfig, ListConfig)):
            return OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover (omegaconf comes with detectron2)
        pass
    return value


def _merge(root, node, updates: Mapping, prefix: str = ""):
    from .config.keys import check_opts_keys

    for key, value in _plain(updates).items():
        name = f"{prefix}{key}"
        if key not in node:
            check_opts_keys(root, [name, value])  # raises naming the closest valid key
        if isinstance(value, Mapping) and key in node:
            _merge(root, node[key], value, prefix=f"{name}.")
        elif key in node and isinstance(node[key], tuple) and isinstance(value, list):
            node[key] = tuple(value)
        else:
            node[key] = value


def config(**sections):
    """``blendmask.get_cfg()`` updated with nested sections (``MODEL={"FCOS": {...}}``, ``INPUT=...``):
    the keys a yaml file would set. An unknown key raises naming the closest valid keys."""
    from .config import get_cfg
    from .config.centermask import resolve_centermask_meta_architecture

    cfg = get_cfg()
    _merge(cfg, cfg, sections)
    resolve_centermask_meta_architecture(cfg)
    return cfg


def training(*, keys: Mapping, max_iter: int, steps, base_lr: float, ims_per_batch: int = 16,
             warmup_iters: int = 1000, warmup_factor: float = 0.001, output_dir: str, init_checkpoint: str = "",
             checkpoint_period: int = 5000, eval_period: int = 0, device: str = "cuda"):
    """(dataloader, optimizer, lr_multiplier, train) in detectron2's lazy layout, for a model whose
    data keys (DATASETS, INPUT, DATALOADER) are in ``keys``; the package's loaders (unreadable
    images skipped, RLE masks read as bitmasks) and a COCO evaluator that ranks CenterMask's masks by
    their mask scores."""
    import torch
    from detectron2.config import LazyConfig  # noqa: F401  (the layout is detectron2's)
    from detectron2.solver import WarmupParamScheduler
    from detectron2.solver.build import get_default_optimizer_params
    from fvcore.common.param_scheduler import MultiStepParamScheduler
    from omegaconf import OmegaConf

    from .data.mapper import build_test_loader, build_train_loader
    from .evaluation import MaskScoringCOCOEvaluator

    data_keys = {k: v for k, v in keys.items() if k in ("DATASETS", "INPUT", "DATALOADER", "MODEL")}
    data_keys["SOLVER"] = {"IMS_PER_BATCH": ims_per_batch}
    datasets = keys.get("DATASETS", {})
    test_name = (datasets.get("TEST") or ("coco_2017_val",))[0]
    dataloader = OmegaConf.create()
    dataloader.train = L(build_train_loader)(cfg=L(config)(**data_keys))
    dataloader.test = L(build_test_loader)(cfg=L(config)(**data_keys), dataset_name=test_name)
    dataloader.evaluator = L(MaskScoringCOCOEvaluator)(dataset_name=test_name, output_dir=f"{output_dir}/inference")
    optimizer = L(torch.optim.SGD)(params=L(get_default_optimizer_params)(weight_decay_norm=0.0), lr=base_lr,
                                   momentum=0.9, weight_decay=1e-4)
    values = [0.1 ** i for i in range(len(steps) + 1)]
    lr_multiplier = L(WarmupParamScheduler)(
        scheduler=L(MultiStepParamScheduler)(values=values, milestones=list(steps), num_updates=max_iter),
        warmup_length=warmup_iters / max_iter, warmup_factor=warmup_factor)
    train = dict(output_dir=output_dir, init_checkpoint=init_checkpoint, max_iter=max_iter,
                 ddp=dict(broadcast_buffers=False, find_unused_parameters=False, fp16_compression=False),
                 checkpointer=dict(period=checkpoint_period, max_to_keep=100), eval_period=eval_period,
                 log_period=20, device=device)
    return dataloader, optimizer, lr_multiplier, train
