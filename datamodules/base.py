"""The contract every datamodule follows: metadata without data, every split checked at once, seeded splits.

Layout of a batch: ``(x, y)`` with ``x`` of shape ``(B, C, *spatial)`` (float) for signals and images, ``(B, L)``
(int64 token ids) for token tasks, ``(B, 2, L)`` (int64) for paired token tasks (LRA Retrieval), and ``y`` of shape
``(B,)`` (int64 class index).
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset, random_split

from argcheck import InvalidArgument, PositiveInt, Seed, check_arguments
from datamodules.layouts import Layout, find_layout, not_found_message, partial_copies
from datamodules.sampling import EpochShuffle

log = logging.getLogger(__name__)


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
        grid: where the samples sit in the extent they cover, which sets how their step changes with ``size``:
            ``"cells"``, at the centres of equal cells (an image's pixels, an audio clip's samples: a step of
            ``1 / n``), or ``"ends"``, from one end to the other (``linspace(0, 1, n)``: a step of ``1 / (n - 1)``).
    """

    data_dim: int
    in_channels: int
    num_classes: int
    size: tuple[int, ...]
    vocab_size: int | None = None
    paired: bool = False
    grid: Literal["cells", "ends"] = "cells"


class DataError(RuntimeError):
    """Missing, corrupt, misplaced or too little data: the message names the path (or flag) and what to do."""


@functools.cache
def _announce_hook(variable: str, path: str) -> None:
    log.warning(f"{variable} is set: the files listed in {path} are checked against its values.")


def fixture_hook(variable: str) -> dict[str, Any]:
    """The test hook that the environment variable ``variable`` names: a JSON object ``{absolute path: value}``
    read from that file, which replaces the published value (checksum, line count) of the files it lists and no
    other; ``{}`` when the variable is unset. Only the test fixtures set it (each hook is documented where it is
    read).

    Raises:
        DataError: the variable names no readable JSON file.
    """
    path = os.environ.get(variable)
    if not path:
        return {}
    try:
        values = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise DataError(f"{variable}={path} is not a readable JSON file ({error}); unset it.") from error
    _announce_hook(variable, path)
    return values


def resolve_num_workers(num_workers: int) -> int:
    """Map ``no_workers=-1`` to a sensible count: half the cores, at most 8, 0 on a 1-2 core machine."""
    if num_workers >= 0:
        return num_workers
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if cores <= 2 else min(8, cores // 2)


class StoredDataset(Dataset):
    """Examples kept compact in memory (uint8 images and volumes, int16 token ids) and converted one at a time:
    items are ``(transform(inputs[index]), labels[index])``, labels as int64. 50k CIFAR images take 150 MB as uint8
    and 600 MB as float32."""

    def __init__(self, inputs: Tensor, labels: Tensor, transform: Callable[[Tensor], Tensor]) -> None:
        if len(inputs) != len(labels):
            raise ValueError(f"{len(inputs)} inputs but {len(labels)} labels.")
        self.inputs = inputs
        self.labels = labels.long()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.transform(self.inputs[index]), self.labels[index]


def seeded_split(dataset: Dataset, val_size: int, seed: int) -> tuple[Subset, Subset]:
    """Split ``dataset`` into (train, val) subsets: ``random_split`` with a generator seeded by ``seed`` alone.

    Raises:
        DataError: ``val_size`` leaves no training example (or is not positive); the message gives the count. It
            names the flag itself: it is raised by ``setup``, once the data is read, where no config builder can
            reword it (constructor errors are :class:`~argcheck.InvalidArgument`, reworded by the builder).
    """
    n = len(dataset)  # type: ignore[arg-type]
    if not 0 < val_size < n:
        raise DataError(
            f"val_size={val_size} (flag dataset.params.val_size) must be between 1 and {n - 1}: the training data "
            f"holds {n} examples. Set a smaller dataset.params.val_size."
        )
    val, train = random_split(dataset, [val_size, n - val_size], generator=torch.Generator().manual_seed(seed))
    return train, val


def check_generated_sizes(num_samples: int, n_train: int, val_size: int, examples: str) -> None:
    """Refuse the sizes of a generated dataset before anything is generated (and cached): at least 10 examples, and
    a validation split that leaves training ``examples`` (``"examples"``, ``"scenes"``) out of ``n_train``.

    Raises:
        InvalidArgument: naming ``num_samples`` or ``val_size``.
    """
    if num_samples < 10:
        raise InvalidArgument("num_samples", f"num_samples must be at least 10, got {num_samples}.")
    if not 0 < val_size < n_train:
        raise InvalidArgument(
            "val_size",
            f"val_size must be between 1 and {n_train - 1} (num_samples={num_samples} gives {n_train} training "
            f"{examples}), got {val_size}.",
        )


class CCNNDataModule(pl.LightningDataModule):
    """Shared loader settings, download and split bookkeeping.

    Constructing a datamodule reads and writes no data (it only checks that ``data_dir`` is not a file): ``meta``
    comes from the arguments alone, so that ``train.dry_run`` can build a model without data. Subclasses say where
    their files may already be (``layouts``), how to fetch them (``fetch``) and how to read them (``load_splits``).

    Args:
        data_dir: folder that holds (or will receive) the dataset files.
        batch_size: training batch size.
        test_batch_size: evaluation batch size (defaults to ``batch_size``).
        num_workers: loader worker processes; ``-1`` picks a count from the machine.
        seed: seed of the train/val split and of any random preprocessing (e.g. a pixel permutation).
        download: fetch missing files from their public URL in ``prepare_data``.
    """

    name: ClassVar[str] = ""  # how messages call the dataset, e.g. "CIFAR10"
    source: ClassVar[str] = ""  # what ``fetch`` downloads and how much, for messages
    # The argument that samples the same signals more or less densely (an image side, a sequence length, a sample
    # rate), so that a model can be evaluated at another value of it (training.resolution); None: there is none.
    resolution_option: ClassVar[str | None] = None

    def __init__(
        self,
        data_dir: str | os.PathLike = "data",
        batch_size: PositiveInt = 32,
        test_batch_size: PositiveInt | None = None,
        num_workers: int = -1,
        seed: Seed = 0,
        download: bool = True,
    ) -> None:
        super().__init__()
        check_arguments(CCNNDataModule.__init__, locals())
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < -1:
            raise InvalidArgument(
                "num_workers", f"num_workers must be -1 (a count from the machine) or >= 0, got {num_workers!r}."
            )
        if Path(data_dir).exists() and not Path(data_dir).is_dir():  # the only look at the disk: a path, not data
            raise InvalidArgument("data_dir", f"data_dir {data_dir} is a file, not a folder; pass the data's folder.")
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

    def resolution_refusal(self) -> str | None:
        """Why the model of this dataset, as configured, cannot be evaluated at another resolution (in the terms of
        the constructor's arguments), or ``None`` when it can."""
        if self.resolution_option is None:
            return f"{self.name} has no resolution to change (no image side, sequence length or sample rate)"
        return None

    def held_bytes(self, examples: int | None = None) -> int | None:
        """Bytes this datamodule holds once it has read all its splits at its resolution, from its arguments alone
        (nothing is read), for the memory check of an evaluation at another resolution (training.evaluation.memory);
        ``None`` where it is not known (yet).

        Args:
            examples: how many examples all splits hold, where the datamodule cannot tell without reading them (the
                same examples are held at every resolution).
        """
        return None

    def layouts(self) -> list[Layout]:
        """Where this dataset's files may already be under ``data_dir``, in the order searched; the first is where
        ``fetch`` puts them. Empty for data generated locally."""
        return []

    def fetch(self) -> None:
        """Download, verify and extract the files into the first of ``layouts()``."""
        raise NotImplementedError

    def load_splits(self) -> tuple[Dataset, Dataset, Dataset]:
        """Read and check the (train, val, test) datasets; raise DataError naming the file at fault."""
        raise NotImplementedError

    def locate(self) -> Layout:
        """The first complete layout of this dataset under ``data_dir``.

        Raises:
            DataError: none is complete; the message lists every layout searched with the paths it expects.
        """
        layouts = self.layouts()
        found = find_layout(layouts)
        if found is None:
            fix = (
                f"run `python -m datamodules.prepare {self.name} --data-dir {self.data_dir}` or set "
                f"dataset.download=True to download {self.source}, or put the files at one of the paths above"
            )
            raise DataError(not_found_message(self.name, self.data_dir, layouts, fix))
        return found

    def prepare_data(self) -> None:
        """Fetch the files when they are in none of the known layouts (and ``download`` allows it).

        Raises:
            DataError: the files are missing and ``download`` is off, or the download failed its checks.
        """
        layouts = self.layouts()
        if not layouts or find_layout(layouts) is not None:
            return
        if not self.download:
            self.locate()  # raises, naming every layout searched
        for partial in partial_copies(layouts):
            log.warning(
                f"{self.name}: the copy at {partial.root} ({partial.name} layout) is incomplete (missing "
                f"{', '.join(p.name for p in partial.missing())}); downloading {self.source} into "
                f"{layouts[0].root} (files of the same name there are replaced)."
            )
        self.fetch()
        self.locate()  # the download must have produced a complete layout

    def setup(self, stage: str | None = None) -> None:
        """Load and check every split (train, val and test), whatever ``stage`` asks for, so that missing, corrupt
        or too small data fails before training starts. Later calls (Lightning makes one per stage) do nothing."""
        if self.test_set is None:
            self.train_set, self.val_set, self.test_set = self.load_splits()

    def _loader(self, dataset: Dataset | None, batch_size: int, train: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before its loaders are requested.")
        # Training batches come in an order drawn from (seed, epoch) alone, so a resumed run sees the same batches.
        order = EpochShuffle(len(dataset), self.seed) if train else None  # type: ignore[arg-type]
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=order,
            drop_last=train and len(dataset) > batch_size,  # type: ignore[arg-type]
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            generator=order.loader_generator if order is not None else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.batch_size, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.test_batch_size, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, self.test_batch_size, train=False)
