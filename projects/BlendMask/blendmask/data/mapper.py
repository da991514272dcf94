"""Training data that survives unreadable images.

A corrupt, truncated, missing or non-image file in a large dataset should cost one record, not the
training run. :class:`SkipUnreadableMapper` is detectron2's ``DatasetMapper`` that turns such a
record into ``None`` with a warning naming the file; :class:`SkipNoneDataset` hands out another
record in its place; :func:`build_train_loader` puts the two into detectron2's training loader.
:func:`build_test_loader` skips such records in evaluation (with the same warning).

Why not rely on detectron2 for the second part: its map-style ``MapDataset`` retries other indices
when the mapper returns ``None``, but it draws them with ``random.sample`` from a ``set``, which
Python 3.11 and later reject (``TypeError: Population must be a sequence``), in 0.6 and on main.

Grayscale, palette and RGBA images need nothing here: ``detection_utils.read_image`` converts
them to the 3 channels of ``cfg.INPUT.FORMAT``. Masks follow the data: with ``INPUT.MASK_FORMAT``
"polygon" (detectron2's default), an image whose annotations hold RLE masks (what most annotation
tools export) is read with bitmask masks instead of failing, with one log line.
"""

import logging
import random
import warnings
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

    _told_rle = False

    def __call__(self, dataset_dict):
        mask_format = self.instance_mask_format
        if mask_format == "polygon" and has_rle_masks(dataset_dict):
            if not SkipUnreadableMapper._told_rle:
                SkipUnreadableMapper._told_rle = True
                logger.info(f"{dataset_dict.get('file_name', 'an image')} has RLE masks: with INPUT.MASK_FORMAT "
                            "'polygon', images with RLE masks are read as bitmasks (set INPUT.MASK_FORMAT bitmask "
                            "to read every image so)", extra={"rle_image": dataset_dict.get("file_name")})
            self.instance_mask_format = "bitmask"
        try:
            with warnings.catch_warnings():
                # detectron2 wraps pycocotools' read-only decoded masks; nothing writes to them
                warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                return super().__call__(dataset_dict)
        except Exception:
            file_name = dataset_dict.get("file_name")
            problem = image_read_error(file_name, self.image_format) if file_name else None
            if problem is None:
                raise
        finally:
            self.instance_mask_format = mask_format
        stage = "training" if self.is_train else "evaluation"
        logger.warning(f"skipping {stage} image {file_name}: cannot read it as an image ({problem})")
        return None


def has_rle_masks(dataset_dict) -> bool:
    """Whether any annotation of a detectron2 dataset record has an RLE ("counts") segmentation."""
    return any(isinstance(a.get("segmentation"), dict) for a in dataset_dict.get("annotations", ()))


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


class _MappedOrNone(torch.utils.data.Dataset):
    """``dataset[i]`` is ``mapper(records[i])``, which may be ``None``."""

    def __init__(self, records, mapper: Callable):
        self.records, self.mapper = records, mapper

    def __len__(self):
        return len(self.records)

    def __getitem__(self, index):
        return self.mapper(self.records[index])


def _drop_none(batch):
    return [x for x in batch if x is not None]


class SkipEmptyBatches:
    """Iterates a loader's batches, leaving out the empty ones (every image of the batch skipped);
    ``len`` is the loader's (the number of images for a batch size of 1)."""

    def __init__(self, loader):
        self.loader = loader

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        return (batch for batch in self.loader if batch)


def build_test_loader(cfg, dataset_name: str, mapper: Optional[Callable] = None):
    """detectron2's inference loader for ``dataset_name`` (one image per batch, each process its
    share with ``InferenceSampler``, ``DATALOADER.NUM_WORKERS`` workers), with records whose image
    cannot be read skipped with the training loader's one-line warning. The objects of a skipped
    image are not predicted, so the evaluator counts them as missed."""
    from detectron2.data import get_detection_dataset_dicts
    from detectron2.data.samplers import InferenceSampler

    mapper = mapper if mapper is not None else SkipUnreadableMapper(cfg, is_train=False)
    records = get_detection_dataset_dicts([dataset_name], filter_empty=False)
    dataset = _MappedOrNone(DatasetFromList(records, copy=False), mapper)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=1, sampler=InferenceSampler(len(dataset)), num_workers=cfg.DATALOADER.NUM_WORKERS,
        collate_fn=_drop_none,
    )
    return SkipEmptyBatches(loader)


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
