"""Shared pieces of the Long Range Arena (LRA) datamodules: the release tarball, byte tokens, token datasets.

The LRA release (``lra_release.gz``, a gzipped tar of about 7.7 GB whose top folder is ``lra_release/``) holds
ListOps, Retrieval (AAN) and Pathfinder; LRA Text reads the Stanford IMDB archive directly (see ``text.py``).
Token sequences are stored as int16 (ids < 32768) to keep the cache and memory small, and returned as int64.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor
from torch.utils.data import Dataset

from datamodules.base import CCNNDataModule, DataError
from datamodules.cache import cached_tensors
from datamodules.download import download_url, extract_archive

LRA_URL = "https://storage.googleapis.com/long-range-arena/lra_release.gz"
LRA_FOLDER = "lra_release"
LRA_SIZE = "about 7.7 GB"

PAD_ID = 0
BYTE_VOCAB_SIZE = 257  # pad (0) + the 256 byte values (byte b has id b + 1)


def ensure_lra_files(data_dir: Path, needed: Iterable[Path], download: bool) -> None:
    """Make sure the LRA files ``needed`` exist, downloading and extracting the release when allowed.

    Raises:
        DataError: a file is missing and ``download`` is ``False`` (or the release does not contain it).
    """
    missing = [path for path in needed if not path.exists()]
    if not missing:
        return
    if not download:
        raise DataError(
            f"Long Range Arena data not found: expected {missing[0]}. Download {LRA_URL} ({LRA_SIZE}, a "
            f"gzipped tar) and extract it into {data_dir} (`tar -xzf lra_release.gz -C {data_dir}`), so that "
            f"{data_dir / LRA_FOLDER} exists, or pass download=True."
        )
    print(f"Downloading the Long Range Arena release ({LRA_SIZE}) from {LRA_URL}; this takes a while.")
    archive = download_url(LRA_URL, data_dir / "lra_release.gz")
    extract_archive(archive, data_dir)
    still_missing = [path for path in missing if not path.exists()]
    if still_missing:
        raise DataError(
            f"{archive} was extracted into {data_dir} but {still_missing[0]} is still missing: the archive "
            f"is incomplete. Delete it and download {LRA_URL} again."
        )


def files_fingerprint(paths: Iterable[Path]) -> str:
    """A hash of the names, sizes and modification times of ``paths``: changes when any file is replaced."""
    digest = hashlib.sha256()
    for path in paths:
        status = path.stat()
        digest.update(f"{path.name}:{status.st_size}:{status.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def encode_bytes(data: bytes, seq_length: int) -> Tensor:
    """Byte-level token ids: byte ``b`` becomes ``b + 1``, truncated to ``seq_length``, right-padded with 0.

    The original left-padded; right padding keeps the text at the start of every sequence, as LRA does.
    """
    ids = torch.zeros(seq_length, dtype=torch.int16)
    data = data[:seq_length]
    if data:
        ids[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(torch.int16) + 1
    return ids


def decode_bytes(ids: Tensor) -> bytes:
    """Invert ``encode_bytes``: drop the padding and subtract 1 (gives the bytes, possibly truncated)."""
    ids = ids[ids != PAD_ID]
    return bytes((ids - 1).tolist())


class TokenDataset(Dataset):
    """``(x, y)`` pairs of int64 token ids (stored compactly as int16) and int64 labels.

    Args:
        tokens: ``(N, L)`` or ``(N, 2, L)`` integer token ids.
        labels: ``(N,)`` class indices.
    """

    def __init__(self, tokens: Tensor, labels: Tensor) -> None:
        if len(tokens) != len(labels):
            raise ValueError(f"{len(tokens)} token sequences but {len(labels)} labels.")
        self.tokens = tokens
        self.labels = labels.long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.tokens[index].long(), self.labels[index]


class LRASplitsDataModule(CCNNDataModule):
    """An LRA task stored as official train/val/test files in the release: tokenised once, cached, split as given.

    Subclasses name the files (``folder`` under ``lra_release/`` and ``split_files``), the cache prefix, the default
    ``seq_length`` and ``read_split``, which turns one file into ``(x, y)`` tensors.

    Args:
        data_dir, batch_size, test_batch_size, num_workers, seed: as in :class:`~datamodules.base.CCNNDataModule`.
        download: fetch the LRA release (about 7.7 GB) in ``prepare_data`` when files are missing.
        seq_length: every sequence is truncated or right-padded (id 0) to this length; ``None``: the task's own.
    """

    folder: ClassVar[str]
    split_files: ClassVar[dict[str, str]]
    cache_name: ClassVar[str]
    default_seq_length: ClassVar[int]

    def __init__(
        self,
        data_dir: str | Path = "data",
        batch_size: int = 32,
        test_batch_size: int | None = None,
        num_workers: int = -1,
        seed: int = 0,
        download: bool = True,
        seq_length: int | None = None,
    ) -> None:
        super().__init__(data_dir, batch_size, test_batch_size, num_workers, seed, download)
        seq_length = self.default_seq_length if seq_length is None else seq_length
        if seq_length <= 0:
            raise ValueError(f"seq_length must be positive, got {seq_length}.")
        self.seq_length = seq_length

    def read_split(self, path: Path) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def _files(self) -> dict[str, Path]:
        root = self.data_dir / LRA_FOLDER / self.folder
        return {split: root / name for split, name in self.split_files.items()}

    def prepare_data(self) -> None:
        ensure_lra_files(self.data_dir, self._files().values(), self.download)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        files = self._files()
        ensure_lra_files(self.data_dir, files.values(), download=False)

        def build() -> dict[str, Tensor]:
            data = {}
            for split, path in files.items():
                data[f"x_{split}"], data[f"y_{split}"] = self.read_split(path)
            return data

        settings = {"files": files_fingerprint(files.values()), "seq_length": self.seq_length}
        data = cached_tensors(self.data_dir / "cache", self.cache_name, settings, build)
        self.train_set = TokenDataset(data["x_train"], data["y_train"])
        self.val_set = TokenDataset(data["x_val"], data["y_val"])
        self.test_set = TokenDataset(data["x_test"], data["y_test"])
