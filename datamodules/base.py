"""The contract every datamodule follows: metadata without data, seeded splits, one set of loader settings.

Layout of a batch: ``(x, y)`` with ``x`` of shape ``(B, C, *spatial)`` (float) for signals and images, ``(B, L)``
(int64 token ids) for token tasks, ``(B, 2, L)`` (int64) for paired token tasks (LRA Retrieval), and ``y`` of shape
``(B,)`` (int64 class index).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Subset


@dataclass(frozen=True)
class DataMeta:
    """What the model needs to know about the data, available before any file is read.

    Attributes:
        data_dim: number of spatial dimensions (1 for sequences, 2 for images, 3 for volumes).
        in_channels: channels of ``x`` (1 for token tasks: the token id sequence).
        num_classes: number of classes of ``y``.
        size: spatial size of one example, e.g. ``(784,)`` or ``(32, 32)``.
        vocab_size: number of token ids for token tasks (``x`` is int64), else ``None``.
        paired: ``True`` when each example holds two token sequences to be compared (LRA Retrieval).
    """

    data_dim: int
    in_channels: int
    num_classes: int
    size: tuple[int, ...]
    vocab_size: int | None = None
    paired: bool = False


class DataError(RuntimeError):
    """Missing, corrupt or misplaced data: the message names the path and what to do."""


def resolve_num_workers(num_workers: int) -> int:
    """Map ``no_workers=-1`` to a sensible count: half the cores, at most 8, 0 on a 1-2 core machine."""
    if num_workers >= 0:
        return num_workers
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if cores <= 2 else min(8, cores // 2)


def seeded_split(dataset: Dataset, val_size: int, seed: int) -> tuple[Subset, Subset]:
    """Split ``dataset`` into (train, val) subsets with a permutation drawn from ``seed`` alone."""
    n = len(dataset)  # type: ignore[arg-type]
    if not 0 < val_size < n:
        raise ValueError(f"val_size must be in (0, {n}) for a dataset of {n} examples, got {val_size}.")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return Subset(dataset, order[val_size:]), Subset(dataset, order[:val_size])


class CCNNDataModule(pl.LightningDataModule):
    """Shared loader settings and split bookkeeping. Subclasses implement ``meta``, ``prepare_data`` and ``setup``.

    Constructing a datamodule never touches the disk: ``meta`` is computed from the arguments alone, so that
    ``train.dry_run`` can build a model without data.

    Args:
        data_dir: folder that holds (or will receive) the dataset files.
        batch_size: training batch size.
        test_batch_size: evaluation batch size (defaults to ``batch_size``).
        num_workers: loader worker processes; ``-1`` picks a count from the machine.
        seed: seed of the train/val split and of any random preprocessing (e.g. a pixel permutation).
        download: fetch missing files from their public URL in ``prepare_data``.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike = "data",
        batch_size: int = 32,
        test_batch_size: int | None = None,
        num_workers: int = -1,
        seed: int = 0,
        download: bool = True,
    ) -> None:
        super().__init__()
        if batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}.")
        self.data_dir = Path(data_dir)
        self.batch_size = batch_size
        self.test_batch_size = test_batch_size or batch_size
        self.num_workers = resolve_num_workers(num_workers)
        self.seed = seed
        self.download = download
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    @property
    def meta(self) -> DataMeta:
        raise NotImplementedError

    def _loader(self, dataset: Dataset | None, batch_size: int, train: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before its loaders are requested.")
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=train,
            drop_last=train and len(dataset) > batch_size,  # type: ignore[arg-type]
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(self.seed) if train else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.batch_size, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.test_batch_size, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, self.test_batch_size, train=False)
