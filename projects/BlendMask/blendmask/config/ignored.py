"""AdelaiDet keys that are accepted (so AdelaiDet's yaml files merge unchanged) but have no effect.

``warn_ignored_keys(cfg)`` logs one warning per key per process when such a key holds a value other
than AdelaiDet's default. ``load_config`` calls it after merging; model builders may call it too.
"""

import logging

logger = logging.getLogger(__name__)

# full key -> AdelaiDet's default (also the default in our config)
IGNORED_KEYS = {
    "MODEL.BLENDMASK.VISUALIZE": False,  # AdelaiDet's training-time visualisation of the blended masks
    "MODEL.BASIS_MODULE.ANN_SET": "coco",  # AdelaiDet's panoptic annotation set name
    "MODEL.FCOS.YIELD_BOX_FEATURES": False,  # AdelaiDet hands box-tower features to a second stage
}

_warned = set()  # keys already warned about in this process


def _lookup(cfg, full_key):
    node = cfg
    for part in full_key.split("."):
        if not hasattr(node, "keys") or part not in node:
            raise KeyError(full_key)
        node = node[part]
    return node


def warn_ignored_keys(cfg):
    """Warn (once per key per process) about ignored AdelaiDet keys set to a non-default value.

    Returns the keys warned about by this call.
    """
    warned = []
    for key, default in IGNORED_KEYS.items():
        try:
            value = _lookup(cfg, key)
        except KeyError:
            continue
        if value == default or key in _warned:
            continue
        _warned.add(key)
        warned.append(key)
        logger.warning(
            "Config key %s = %r has no effect in this BlendMask implementation (it is accepted "
            "only so that AdelaiDet's config files load; default %r).",
            key,
            value,
            default,
        )
    return warned
