"""Shared pieces of the Long Range Arena (LRA) datamodules: the release tarball, byte tokens, token datasets.

The LRA release (``lra_release.gz``, a gzipped tar of about 7.7 GB, top folder ``lra_release/``) holds ListOps,
Retrieval (AAN) and Pathfinder; LRA Text reads the Stanford IMDB archive (``text.py``). A task's folder is found
where the release puts it (``<data_dir>/lra_release/listops-1000``, the original CCNN code's layout), in a release
extracted into a folder of its own name (``lra_release/lra_release/...``), or where the S4 repository moves it
(``<data_dir>/listops``, ``aan``, ``pathfinder/pathfinder32/...``).

No checksum is published for the release, so nothing here is checksummed. A download is verified by its length
(the bytes received against the server's ``Content-Length``), then extracted into a temporary folder and checked
there by :func:`release_problems` (every file the token tasks read is present with the LRA paper's number of rows,
every Pathfinder folder holds metadata and images) before it is moved into place; a release that fails is deleted,
archive included, so the next run downloads it again rather than finding the same file. A copy already on disk
(any layout) is checked per task when it is read: the rows of each ListOps and AAN file against the same counts
(:func:`check_rows`), each Pathfinder folder's metadata and images as they are read.

Test hook: when ``CCNN_FIXTURE_LINES`` names a JSON file ``{"<absolute file path>": <non-empty lines>, ...}``, the
files listed there are checked against those counts instead of the release's, which small fixture files cannot
match; every other file keeps the release's count. Only ``tests/fixtures/sequence_files.py`` sets it.

Token sequences are stored as int16 (ids < 32768) to keep the cache and memory small, and returned as int64.
"""

from __future__ import annotations

import hashlib
import os
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar, Literal

import torch
from torch import Tensor
from torch.utils.data import Dataset

from argcheck import PositiveInt, check_arguments
from datamodules.base import CCNNDataModule, DataError, StoredDataset, fixture_hook
from datamodules.cache import cached_tensors
from datamodules.download import download_and_extract
from datamodules.layouts import Layout

LRA_URL = "https://storage.googleapis.com/long-range-arena/lra_release.gz"
LRA_FOLDER = "lra_release"
LRA_SIZE = "about 7.7 GB"
LRA_SOURCE = f"{LRA_URL} ({LRA_SIZE})"
FIXTURE_LINES = "CCNN_FIXTURE_LINES"

# Non-empty lines of the files the token tasks read (the LRA paper's counts; ListOps files start with a header).
RELEASE_LINES = {
    "listops-1000/basic_train.tsv": 96001,
    "listops-1000/basic_val.tsv": 2001,
    "listops-1000/basic_test.tsv": 2001,
    "tsv_data/new_aan_pairs.train.tsv": 147086,
    "tsv_data/new_aan_pairs.eval.tsv": 18090,
    "tsv_data/new_aan_pairs.test.tsv": 17437,
}
# Pathfinder in the release: each side at each difficulty, a folder of metadata/*.npy and imgs/.
PathfinderSide = Literal[32, 64, 128, 256]
PathfinderDifficulty = Literal["easy", "intermediate", "hard"]
PATHFINDER_DIFFICULTIES = dict(
    zip(typing.get_args(PathfinderDifficulty), ("curv_baseline", "curv_contour_length_9", "curv_contour_length_14"))
)
PATHFINDER_SETS = tuple(
    (resolution, name) for resolution in typing.get_args(PathfinderSide) for name in PATHFINDER_DIFFICULTIES
)

BYTE_VOCAB_SIZE = 257  # pad (0) + the 256 byte values (byte b has id b + 1)


def pathfinder_folder(resolution: int, difficulty: str) -> str:
    """``pathfinder<R>/<difficulty folder>``, relative to the release's top folder."""
    return f"pathfinder{resolution}/{PATHFINDER_DIFFICULTIES[difficulty]}"


def lra_layouts(data_dir: Path, release_path: str, s4_path: str, expected: tuple[str, ...]) -> list[Layout]:
    """Where one task's folder may be: ``release_path`` inside the release, ``s4_path`` in the S4 layout."""
    return [
        Layout("LRA release (also the original CCNN code's)", data_dir / LRA_FOLDER / release_path, expected),
        Layout(
            "LRA release extracted into its own folder", data_dir / LRA_FOLDER / LRA_FOLDER / release_path, expected
        ),
        Layout("S4 (state-spaces)", data_dir / s4_path, expected),
    ]


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


def release_problems(root: Path) -> list[str]:
    """What the release extracted at ``root`` lacks, relative to it: each file the token tasks read that is missing
    or has another number of non-empty lines than the release's, each Pathfinder folder without metadata or images.
    """
    problems = []
    for relative, lines in RELEASE_LINES.items():
        if not (root / relative).is_file():
            problems.append(f"{relative} is missing")
        elif (found := _count_lines(root / relative)) != lines:
            problems.append(f"{relative} has {found} non-empty lines, the release {lines}")
    for resolution, difficulty in PATHFINDER_SETS:
        folder = pathfinder_folder(resolution, difficulty)
        if not any((root / folder / "metadata").glob("*.npy")) or not (root / folder / "imgs").is_dir():
            problems.append(f"{folder} lacks metadata/*.npy or imgs/")
    return problems


def check_rows(files: Iterable[Path], release_folder: str) -> None:
    """Check the files of one task found on disk (in any layout) against the release's number of non-empty lines
    (or the test hook's, module docstring); ``release_folder`` is their folder in the release, e.g.
    ``listops-1000``.

    Raises:
        DataError: naming each file with another count (a truncated or altered copy).
    """
    registered = fixture_hook(FIXTURE_LINES)
    problems = []
    for path in files:
        expected = registered.get(os.path.abspath(path), RELEASE_LINES[f"{release_folder}/{path.name}"])
        if (found := _count_lines(path)) != expected:
            problems.append(f"{path} has {found} non-empty lines, the release {expected}")
    if problems:
        raise DataError(
            f"LRA files truncated or not the published ones: {'; '.join(problems)}. Delete them and extract "
            f"{LRA_URL} again."
        )


def fetch_release(data_dir: Path) -> None:
    """Download the release into ``data_dir`` (length-checked: no checksum is published), extract it into a temporary
    folder, check it there (:func:`release_problems`) and only then move it into place."""

    def check(extracted: Path) -> None:
        if problems := release_problems(extracted / LRA_FOLDER):
            raise DataError(
                f"The LRA release downloaded from {LRA_URL} is incomplete or not the published one: "
                f"{'; '.join(problems)}. It was deleted (archive included); run again to download it again."
            )

    print(f"Downloading the Long Range Arena release from {LRA_URL} ({LRA_SIZE}); this takes a while.", flush=True)
    download_and_extract(LRA_URL, data_dir / "lra_release.gz", data_dir, check=check)


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


class LRASplitsDataModule(CCNNDataModule):
    """An LRA task stored as official train/val/test files in the release: tokenised once, cached, split as given.

    Subclasses name the files (``folder`` in the release, ``s4_folder`` in the S4 layout, ``split_files``), the
    cache prefix, the default ``seq_length`` and ``read_split``, which turns one file into ``(x, y)`` tensors.

    Args:
        data_dir, batch_size, test_batch_size, num_workers, seed, download: see :class:`CCNNDataModule`.
        seq_length: every sequence is truncated or right-padded (id 0) to this length; ``None``: the task's own.
    """

    folder: ClassVar[str]
    s4_folder: ClassVar[str]
    split_files: ClassVar[dict[str, str]]
    cache_name: ClassVar[str]
    default_seq_length: ClassVar[int]
    source = LRA_SOURCE

    def __init__(
        self,
        data_dir: str | Path = "data",
        batch_size: PositiveInt = 32,
        test_batch_size: PositiveInt | None = None,
        num_workers: int = -1,
        seed: int = 0,
        download: bool = True,
        seq_length: PositiveInt | None = None,
    ) -> None:
        super().__init__(data_dir, batch_size, test_batch_size, num_workers, seed, download)
        check_arguments(LRASplitsDataModule.__init__, locals())
        seq_length = self.default_seq_length if seq_length is None else seq_length
        self.seq_length = seq_length

    def read_split(self, path: Path) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def layouts(self) -> list[Layout]:
        return lra_layouts(self.data_dir, self.folder, self.s4_folder, tuple(self.split_files.values()))

    def fetch(self) -> None:
        fetch_release(self.data_dir)

    def load_splits(self) -> tuple[Dataset, Dataset, Dataset]:
        root = self.locate().root
        files = {split: root / name for split, name in self.split_files.items()}

        def build() -> dict[str, Tensor]:
            data = {}
            for split, path in files.items():
                data[f"x_{split}"], data[f"y_{split}"] = self.read_split(path)  # a malformed row is named first
            check_rows(files.values(), self.folder)  # on a cache miss only: a cached copy was checked when built
            return data

        settings = {"files": files_fingerprint(files.values()), "seq_length": self.seq_length}
        data = cached_tensors(self.data_dir / "cache", self.cache_name, settings, build)
        # int16 ids (module docstring) become int64 one example at a time
        return tuple(StoredDataset(data[f"x_{s}"], data[f"y_{s}"], Tensor.long) for s in ("train", "val", "test"))
