"""``get_cfg`` (detectron2's defaults plus every key of this package) and ``load_config``."""

from .aggmask import add_aggmask_config
from .blendmask import add_blendmask_config
from .centermask import add_centermask_config, resolve_centermask_meta_architecture
from .ignored import warn_ignored_keys
from .keys import check_opts_keys, check_yaml_keys
from .solov2 import add_solov2_config


def get_cfg():
    """A fresh detectron2 config (``detectron2.config.get_cfg()``) with every key this package reads:
    FCOS, BlendMask, the basis module, SOLOv2, AggMask*, CenterMask and the speed-up switches."""
    from detectron2.config import get_cfg as detectron2_get_cfg

    return add_aggmask_config(add_centermask_config(add_solov2_config(add_blendmask_config(detectron2_get_cfg()))))


def load_config(config_file=None, opts=(), cfg=None):
    """A config with our keys (``get_cfg()`` unless ``cfg`` is given), merged with ``config_file``
    then ``opts`` (KEY VALUE pairs, as on a command line).

    Unknown keys fail with a KeyError (``UnknownConfigKeyError``) naming the key and the closest
    valid keys; an odd-length ``opts`` fails with a ValueError. Ignored AdelaiDet keys set to a
    non-default value log a warning.
    """
    opts = list(opts or ())
    if len(opts) % 2:
        raise ValueError(
            f"Config overrides must be KEY VALUE pairs; got {len(opts)} items: {opts}. "
            "Flags such as --eval-only or --num-gpus go before the overrides on the command line."
        )
    cfg = get_cfg() if cfg is None else add_aggmask_config(
        add_centermask_config(add_solov2_config(add_blendmask_config(cfg))))
    if config_file:
        check_yaml_keys(cfg, config_file)
        cfg.merge_from_file(str(config_file))
    if opts:
        check_opts_keys(cfg, opts)
        cfg.merge_from_list(opts)
    resolve_centermask_meta_architecture(cfg)
    warn_ignored_keys(cfg)
    return cfg
