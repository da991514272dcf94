"""The package's configs and the reference checkpoints trained with them, as detectron2's
``detectron2.model_zoo`` offers its own::

    from blendmask import model_zoo

    path = model_zoo.get_config_file("BlendMask/R_50_1x.yaml")     # a file inside the installed package
    cfg = model_zoo.get_config("CenterMask/centermask_lite_V_19_eSE_FPN_ms_4x.yaml", trained=True)
    model = model_zoo.get("SOLOv2/R50_3x.yaml", trained=True)        # built, weights loaded, eval mode
    model_zoo.get_checkpoint_url("BlendMask/R_50_1x.yaml")          # where the COCO-trained weights live

Names are paths relative to ``blendmask/model_zoo/configs`` (the repository's ``configs/`` is a link
to that folder). Python configs for detectron2's LazyConfig end in ``.py``:
``get_config("Lazy/BlendMask_R_50_1x.py")`` returns the LazyConfig object. Checkpoints download into a
cache through detectron2's PathManager (``$BLENDMASK_CACHE``, else ``$FVCORE_CACHE`` or
``~/.torch/iopath_cache``), checked against a sha256 where one is recorded, and load weights-only.
:data:`CATALOG` holds each released config's checkpoint URL, licence and published COCO AP.
"""

import difflib
from pathlib import Path
from typing import List

from .catalog import CATALOG, LOCAL_NOTE, Entry
from .download import ChecksumError, download

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

__all__ = [
    "CATALOG",
    "CONFIG_DIR",
    "ChecksumError",
    "Entry",
    "download",
    "get",
    "get_checkpoint_url",
    "get_config",
    "get_config_file",
    "list_configs",
    "resolve_config_file",
]


def list_configs() -> List[str]:
    """Every config name (yaml and python), sorted; bases (``Base-*``) excluded."""
    names = [p.relative_to(CONFIG_DIR).as_posix() for p in CONFIG_DIR.rglob("*") if p.suffix in (".yaml", ".py")]
    return sorted(n for n in names if not Path(n).name.startswith("Base-") and "__pycache__" not in n)


def get_config_file(name: str) -> str:
    """The absolute path of config ``name`` (e.g. ``"BlendMask/R_50_1x.yaml"``) inside the installed
    package. An unknown name raises FileNotFoundError naming the closest ones."""
    name = str(name).lstrip("/")
    for prefix in ("configs/", "./configs/"):
        if name.startswith(prefix):
            name = name[len(prefix):]
    path = (CONFIG_DIR / name).resolve()
    if CONFIG_DIR.resolve() not in path.parents or not path.is_file():
        close = difflib.get_close_matches(name, list_configs(), n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise FileNotFoundError(f"{name!r} is not a config of blendmask's model zoo ({CONFIG_DIR}).{hint} "
                                "blendmask.model_zoo.list_configs() lists them.")
    return str(path)


def resolve_config_file(path):
    """``path`` when it names a file; otherwise the packaged config of that name (``configs/X.yaml``
    or ``X.yaml``), so the commands take the repository's config paths from any folder. A path that is
    neither is returned as it is (loading it then fails naming it)."""
    if not path or Path(path).is_file():
        return path
    try:
        return get_config_file(path)
    except FileNotFoundError:
        return path


def get_checkpoint_url(name: str) -> str:
    """The URL of the COCO-trained reference checkpoint of config ``name``. A config with no known
    live checkpoint raises KeyError saying why (``CATALOG[name].note``)."""
    name = Path(get_config_file(name)).relative_to(CONFIG_DIR.resolve()).as_posix()
    entry = CATALOG.get(name)
    if entry is None:
        why = next((note for prefix, note in LOCAL_NOTE.items() if name.startswith(prefix)),
                   "not a released reference config")
        raise KeyError(f"{name}: no reference checkpoint ({why})")
    if not entry.url:
        raise KeyError(f"{name}: no reference checkpoint known ({entry.note}); see {entry.source}")
    return entry.url


def get_config(name: str, trained: bool = False):
    """The config of ``name``: a detectron2 CfgNode with every key of this package for a yaml file
    (``blendmask.load_config``), a LazyConfig (omegaconf DictConfig) for a ``.py`` file. With
    ``trained``, its weights are the reference checkpoint (:func:`get_checkpoint_url`) instead of
    the ImageNet backbone the training config starts from."""
    path = get_config_file(name)
    if path.endswith(".py"):
        from detectron2.config import LazyConfig

        cfg = LazyConfig.load(path)
        if trained:
            cfg.train.init_checkpoint = get_checkpoint_url(_yaml_twin(cfg, name))
        return cfg
    from ..config import load_config

    cfg = load_config(path)
    if trained:
        cfg.MODEL.WEIGHTS = get_checkpoint_url(name)
    return cfg


def _yaml_twin(cfg, name: str) -> str:
    twin = cfg.get("zoo", {}).get("yaml_twin")
    if not twin:
        raise KeyError(f"{name}: a python config names its yaml equivalent in `zoo.yaml_twin` to find its checkpoint")
    return twin


def get(name: str, trained: bool = False, device: str = None):
    """The model of config ``name``, built and in eval mode: with the reference checkpoint
    (downloaded into the cache, checked, loaded weights-only) when ``trained``, otherwise with the
    weights its config names. ``device`` overrides ``MODEL.DEVICE`` (default: cpu where there is
    no CUDA device)."""
    import torch

    path = get_config_file(name)
    if path.endswith(".py"):
        from detectron2.config import instantiate

        from ..checkpoint import SafeCheckpointer

        cfg = get_config(name, trained=trained)
        model = instantiate(cfg.model)
        model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        weights = cfg.train.get("init_checkpoint", "") if "train" in cfg else ""
        model.thing_classes = []
        if weights:
            checkpoint = SafeCheckpointer(model, strict_shapes=True).load(weights)
            model.thing_classes = list(checkpoint.get("thing_classes") or [])
        return model.eval()
    from ..engine import build_model_and_load

    cfg = get_config(name, trained=trained)
    if device:
        cfg.MODEL.DEVICE = device
    elif cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    return build_model_and_load(cfg)
