"""Checkpoint downloads into a cache, through detectron2's PathManager, checked against a sha256
where one is known."""

import hashlib
import logging
import os
from typing import Optional

logger = logging.getLogger(__name__)


class ChecksumError(RuntimeError):
    """A downloaded file's sha256 is not the one recorded for its URL (the bad copy is deleted)."""


def cache_dir() -> Optional[str]:
    """``$BLENDMASK_CACHE`` if set, otherwise None: iopath's default (``$FVCORE_CACHE``, or
    ``~/.torch/iopath_cache``), where detectron2 caches its own model-zoo downloads."""
    return os.environ.get("BLENDMASK_CACHE") or None


def sha256_of(path: str, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def is_url(path: str) -> bool:
    return isinstance(path, str) and path.startswith(("http://", "https://"))


def known_sha256(url: str) -> Optional[str]:
    from .catalog import CATALOG

    for entry in CATALOG.values():
        if entry.url == url:
            return entry.sha256
    return None


def download(url: str, sha256: Optional[str] = None) -> str:
    """The local path of ``url``, downloaded into the cache on first use (detectron2's PathManager:
    a partial download never takes the final name). With ``sha256`` (default: the model zoo's
    record for ``url``, if any) the file is checked, and a mismatching file is deleted and
    :class:`ChecksumError` raised, so that the next call downloads it again."""
    from detectron2.utils.file_io import PathManager

    expected = sha256 if sha256 is not None else known_sha256(url)
    kwargs = {"cache_dir": cache_dir()} if cache_dir() else {}
    try:
        local = PathManager.get_local_path(url, **kwargs)
    except Exception as e:  # urllib's errors, with the URL named
        raise OSError(f"could not download {url}: {e}") from e
    if expected:
        actual = sha256_of(local)
        if actual != expected.lower():
            os.remove(local)
            raise ChecksumError(
                f"{url}: the downloaded file {local} has sha256 {actual}, expected {expected}; it was deleted "
                "(a partial or changed file). Try again, or report the new checksum if the file was re-published."
            )
        logger.info(f"{local}: sha256 verified")
    return local


def local_checkpoint(path: str) -> str:
    """``path`` itself, or for a URL its verified local copy (see :func:`download`)."""
    return download(path) if is_url(path) else path
