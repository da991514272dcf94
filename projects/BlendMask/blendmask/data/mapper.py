"""Training data that survives unreadable images.

A corrupt, truncated, missing or non-image file in a large dataset should cost one record, not the
training run. :class:`SkipUnreadableMapper` is detectron2's ``DatasetMapper`` that turns such a
record into ``None`` with a warning naming the file; :class:`SkipNoneDataset` hands out another
record in its place; :func:`build_train_loader` puts the two into detectron2's training loader.

Why not rely on detectron2 for the second part: its map-style ``MapDataset`` retries other indices
when the mapper returns ``None``, but it draws them with ``random.sample`` from a ``set``, which
Python 3.11 and later reject (``TypeError: Population must be a sequence``), in 0.6 and on main.

Grayscale, palette and RGBA images need nothing here: ``detection_utils.read_image`` converts
them to the 3 channels of ``cfg.INPUT.FORMAT``.
"""

import logging
import random
from typing import Callable, Optional

import torch
from detectron2.data import DatasetFromList, DatasetMapper, build_detection_train_loader
from detectron2.data.detection_utils import read_image

logger = logging.getLogger(__name__)


def image_read_error(file_name: str, image_format: str) -> Optional[str]:
    """Why ``file_name`` cannot be read as an image (``"ErrorType: message"``), or None if it can."""
    try:
        read_image(file_name, format=image_format)
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... for broken files
        return f"{type(e).__name__}: {e}"
    return None


class SkipUnreadableMapper(DatasetMapper):
    """``DatasetMapper`` that maps a record whose image cannot be read to ``None``, with a warning.

    Only unreadable images are skipped: when mapping fails and the image reads fine (say, a record
    whose height/width disagree with the file), the original error is raised.
    """

    def __call__(self, dataset_dict):
        try:
            return super().__call__(dataset_dict)
        except Exception:
            file_name = dataset_dict.get("file_name")
            problem = image_read_error(file_name, self.image_format) if file_name else None
            if problem is None:
                raise
        logger.warning(f"skipping training image {file_name}: cannot read it as an image ({problem})")
        return None


class SkipNoneDataset(torch.utils.data.Dataset):
    """``dataset[i]`` is ``mapper(records[i])``; when that is ``None``, another record, drawn at
    random among those not yet found bad, takes its place. A bad record is never mapped again (in
    this process). Raises ``RuntimeError`` when every record is bad."""

    def __init__(self, records, mapper: Callable, seed: int = 0):
        self.records = records
        self.mapper = mapper
        self._bad = set()
        self._rng = random.Random(seed)

    def __len__(self):
        return len(self.records)

    def __getitem__(self, index):
        index = int(index)
        while True:
            if index not in self._bad:
                mapped = self.mapper(self.records[index])
                if mapped is not None:
                    return mapped
                self._bad.add(index)
            if len(self._bad) >= len(self):
                raise RuntimeError(
                    f"none of the {len(self)} training records could be loaded (the warnings above name "
                    "each file): check the dataset's image root and files"
                )
            index = self._rng.randrange(len(self))


def build_train_loader(cfg, mapper: Optional[Callable] = None):
    """detectron2's training loader for ``cfg`` (same datasets, sampler, batching and workers),
    with records whose image cannot be read skipped. ``mapper`` defaults to
    ``SkipUnreadableMapper(cfg, is_train=True)``; any mapper may return None to skip a record."""
    mapper = mapper if mapper is not None else SkipUnreadableMapper(cfg, is_train=True)
    args = build_detection_train_loader.from_config(cfg, mapper=mapper)
    records = args["dataset"]
    if isinstance(records, list):
        records = DatasetFromList(records, copy=False)
    args["dataset"] = SkipNoneDataset(records, args["mapper"], seed=cfg.SEED if cfg.SEED >= 0 else 0)
    args["mapper"] = None  # already applied by SkipNoneDataset
    return build_detection_train_loader(**args)
