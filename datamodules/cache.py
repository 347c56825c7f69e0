"""An on-disk cache for preprocessed tensors, keyed by the settings that produced them.

Decoding 100k WAV or PNG files, or tokenising a few GB of text, takes minutes; the result is a handful of tensors,
stored once per set of settings. The key, a hash of the settings (sorted JSON plus a format version), is in the file
name: changing any setting builds a new file instead of reading a stale one. Files are written atomically (temporary
file + ``os.replace``); a cache file that cannot be read anyway is rebuilt with a warning. A cache file that cannot be
written is a warning for a run (its tensors are still good) and an error within :func:`cache_writes_required`
(``python -m datamodules.prepare``, whose job is to leave the cache behind).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from datamodules.base import DataError
from datamodules.download import missing_folders, remove_empty

# Bump when the layout of cached files changes: every existing cache file then misses and is rebuilt.
CACHE_FORMAT_VERSION = 1

_writes_required: ContextVar[bool] = ContextVar("cache_writes_required", default=False)


@contextlib.contextmanager
def cache_writes_required() -> Iterator[None]:
    """Within this block, :func:`cached_tensors` raises :class:`~datamodules.base.DataError` when it cannot write
    its file, instead of warning and going on with the tensors in memory."""
    token = _writes_required.set(True)
    try:
        yield
    finally:
        _writes_required.reset(token)


def settings_key(settings: Mapping[str, Any]) -> str:
    """A stable 16-hex-digit hash of ``settings`` (and the cache format version).

    Args:
        settings: JSON-serialisable values (paths and other objects are hashed through ``str``).

    Returns:
        The same key for equal settings, in any key order and in any process.
    """
    text = json.dumps(
        {"format": CACHE_FORMAT_VERSION, "settings": dict(settings)},
        sort_keys=True,
        default=str,
        separators=(",", ":"),
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def cache_path(cache_dir: Path, name: str, settings: Mapping[str, Any]) -> Path:
    """Where ``cached_tensors`` keeps the tensors for ``name`` built with ``settings``."""
    return Path(cache_dir) / f"{name}-{settings_key(settings)}.pt"


def _check_tensors(data: Any, origin: str) -> dict[str, Tensor]:
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in data.items()):
        raise TypeError(f"{origin} must be a dict of str -> Tensor, got {type(data).__name__}.")
    return data


def cached_tensors(
    cache_dir: Path,
    name: str,
    settings: Mapping[str, Any],
    build: Callable[[], dict[str, Tensor]],
) -> dict[str, Tensor]:
    """Load the tensors built with ``settings`` from ``cache_dir``, or build and store them.

    Args:
        cache_dir: folder of the cache files (created when needed).
        name: a readable prefix of the file name, e.g. ``"speech_commands"``.
        settings: everything the result depends on (options, a hash of the input file list, ...).
        build: computes the tensors on a cache miss.

    Returns:
        A dict of CPU tensors, either read from the cache or fresh from ``build``.

    Raises:
        DataError: within :func:`cache_writes_required` only: the cache file could not be written.
    """
    path = cache_path(cache_dir, name, settings)
    if path.is_file():
        try:
            return _check_tensors(torch.load(path, map_location="cpu", weights_only=True), str(path))
        except Exception as error:  # a corrupt cache must never stop a run: rebuild it
            warnings.warn(f"Cache file {path} is unreadable ({error}); rebuilding it.", stacklevel=2)
    data = _check_tensors(build(), f"The build function of cache {name!r}")
    try:
        _write_atomically(path, data)
    except OSError as error:  # e.g. a read-only data folder: the tensors are still good, just not kept
        problem = f"Could not write cache file {path} ({error.strerror or error})"
        if _writes_required.get():
            raise DataError(f"{problem}. Free space there, or choose another data folder.") from error
        warnings.warn(f"{problem}; continuing without a cache.", stacklevel=2)
    return data


def _write_atomically(path: Path, data: dict[str, Tensor]) -> None:
    """``torch.save`` to a temporary file renamed to ``path`` once complete; a failure or Ctrl-C leaves neither the
    temporary file nor the folders made for it."""
    created = missing_folders(path.parent)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                umask = os.umask(0)
                os.umask(umask)
                os.fchmod(handle.fileno(), 0o666 & ~umask)  # mkstemp makes 0600: others sharing the folder need it
                torch.save(data, handle)
            os.replace(tmp_name, path)
        except BaseException:
            with contextlib.suppress(OSError):  # the clean-up must not hide what failed
                os.unlink(tmp_name)
            raise
    except BaseException:
        remove_empty(created)
        raise
