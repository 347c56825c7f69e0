"""MNIST-1D (Greydanus, 2020): procedural 1D digits of length 40, generated locally by the ``mnist1d`` package.

No download: ``mnist1d.data.make_dataset`` builds the data from its templates with a fixed seed (42 by default, the
standard dataset: 4000 train and 1000 test examples). The result is cached under ``data_dir/MNIST1D/``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, TensorDataset

from datamodules.base import CCNNDataModule, DataMeta, seeded_split
from datamodules.cache import cached_tensors

SEQUENCE_LENGTH = 40


def generate_mnist1d(num_samples: int = 5000, data_seed: int = 42) -> dict[str, Tensor]:
    """Run the package's generator; returns float32 ``x``/``x_test`` ``(N, 40)`` and int64 ``y``/``y_test``."""
    from mnist1d.data import get_dataset_args, make_dataset  # heavy import (matplotlib): only on a cache miss

    args = get_dataset_args()
    args.num_samples = num_samples
    args.seed = data_seed
    data = make_dataset(args)
    return {
        "x": torch.as_tensor(data["x"], dtype=torch.float32),
        "y": torch.as_tensor(data["y"], dtype=torch.int64),
        "x_test": torch.as_tensor(data["x_test"], dtype=torch.float32),
        "y_test": torch.as_tensor(data["y_test"], dtype=torch.int64),
    }


class MNIST1DDataModule(CCNNDataModule):
    """MNIST-1D as ``(B, 1, 40)`` sequences, 10 classes, standardised with the training mean and std.

    Validation is carved from the training examples (``val_size``, seeded); the test set is the package's own.

    Args:
        num_samples: examples generated in all (80% train, 20% test, as the package splits them).
        data_seed: seed of the generator (42 gives the standard dataset).
        val_size: training examples held out for validation.
        **kwargs: the arguments of :class:`~datamodules.base.CCNNDataModule`.
    """

    name = "MNIST1D"

    def __init__(self, num_samples: int = 5000, data_seed: int = 42, val_size: int = 500, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if num_samples < 10:
            raise ValueError(f"num_samples must be at least 10, got {num_samples}.")
        self.num_samples = num_samples
        self.data_seed = data_seed
        self.val_size = val_size

    @property
    def meta(self) -> DataMeta:
        return DataMeta(data_dim=1, in_channels=1, num_classes=10, size=(SEQUENCE_LENGTH,))

    def _tensors(self) -> dict[str, Tensor]:
        settings = {"num_samples": self.num_samples, "data_seed": self.data_seed}
        return cached_tensors(
            self.data_dir / "MNIST1D",
            "mnist1d",
            settings,
            lambda: generate_mnist1d(self.num_samples, self.data_seed),
        )

    def prepare_data(self) -> None:
        self._tensors()

    def load_splits(self) -> tuple[Dataset, Dataset, Dataset]:
        data = self._tensors()
        mean, std = data["x"].mean(), data["x"].std()
        x = ((data["x"] - mean) / std).unsqueeze(1)  # (N, 1, 40)
        x_test = ((data["x_test"] - mean) / std).unsqueeze(1)
        train, val = seeded_split(TensorDataset(x, data["y"]), self.val_size, self.seed)
        return train, val, TensorDataset(x_test, data["y_test"])
