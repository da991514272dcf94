"""Config of BlendMask and FCOS: AdelaiDet's keys and defaults, plus this package's speed-up switches.

- ``fcos.py``       ``add_fcos_config``: ``MODEL.FCOS.*``, the FCOS backbone keys, FCOS-level ``TEST.*``
- ``blendmask.py``  ``add_blendmask_config``: ``MODEL.BLENDMASK.*``, ``MODEL.BASIS_MODULE.*``
- ``solov2.py``    ``add_solov2_config``: ``MODEL.SOLOV2.*``
- ``aggmask.py``   ``add_aggmask_config``: ``MODEL.AGGMASK.*`` (AggMask*'s additions to SOLOv2)
- ``centermask.py`` ``add_centermask_config``: ``MODEL.VOVNET.*``, ``MODEL.MASKIOU_*``, ``MODEL.ROI_MASKIOU_HEAD.*``
- ``ignored.py``    AdelaiDet keys accepted but ignored; ``warn_ignored_keys``
- ``keys.py``       full key names, unknown-key checks for overrides and yaml files (with ``_BASE_``)
- ``load.py``       ``get_cfg`` and ``load_config``
"""

from .aggmask import add_aggmask_config
from .blendmask import add_blendmask_config
from .centermask import add_centermask_config, resolve_centermask_meta_architecture
from .fcos import add_fcos_config
from .ignored import IGNORED_KEYS, warn_ignored_keys
from .keys import UnknownConfigKeyError, all_keys, check_opts_keys, check_yaml_keys
from .load import get_cfg, load_config
from .solov2 import add_solov2_config

__all__ = [
    "IGNORED_KEYS",
    "UnknownConfigKeyError",
    "add_aggmask_config",
    "add_blendmask_config",
    "add_centermask_config",
    "add_fcos_config",
    "add_solov2_config",
    "all_keys",
    "check_opts_keys",
    "check_yaml_keys",
    "get_cfg",
    "load_config",
    "resolve_centermask_meta_architecture",
    "warn_ignored_keys",
]
