"""MNIST-1D (Greydanus, 2020): procedural 1D digits of length 40, generated locally by the ``mnist1d`` package.

No download: ``mnist1d.data.make_dataset`` builds the data from its templates with a fixed seed (42 by default, the
standard dataset: 4000 train and 1000 test examples). The result is cached under ``data_dir/MNIST1D/``.

Other lengths (``seq_length``, the generator's ``final_seq_length``) sample the same signals more or less densely:
the generator draws every random choice on a fixed 72-point signal and interpolates it linearly onto
``linspace(0, 1, seq_length)`` as its last step, so one seed gives the same digits at every length, and a length of
``39 k + 1`` holds the length-40 examples at every k-th position (``tests/test_resolution_data.py``). Both ends are
sampled, so the step is ``1 / (seq_length - 1)``. That holds above 40. A shorter length would sample the signals
without anti-aliasing (linear interpolation), folding what lies between its Nyquist frequency and 40's onto lower
frequencies: below 40 the standard signals are low-passed to the shorter grid's Nyquist frequency and resampled
there (band-limited interpolation, ``downsampled``), as an image is resized with anti-aliasing. The generator
standardises each set it makes by its own mean and standard deviation, which differ from one length to another by a
fraction of a percent (0.3% between 40 and 157).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, TensorDataset

from argcheck import InvalidArgument, PositiveInt, Seed, check_arguments
from datamodules.base import CCNNDataModule, DataMeta, check_generated_sizes, seeded_split
from datamodules.cache import cached_tensors

SEQUENCE_LENGTH = 40  # the standard dataset's
TRAIN_SPLIT = 0.8  # the package's get_dataset_args().train_split: the first int(0.8 N) examples are the training set


def generate_mnist1d(
    num_samples: int = 5000, data_seed: int = 42, seq_length: int = SEQUENCE_LENGTH
) -> dict[str, Tensor]:
    """Run the package's generator; returns float32 ``x``/``x_test`` ``(N, seq_length)`` and int64 ``y``/``y_test``."""
    from mnist1d.data import get_dataset_args, make_dataset  # heavy import (matplotlib): only on a cache miss

    args = get_dataset_args()
    args.num_samples = num_samples
    args.seed = data_seed
    args.final_seq_length = seq_length
    data = make_dataset(args)
    return {
        "x": torch.as_tensor(data["x"], dtype=torch.float32),
        "y": torch.as_tensor(data["y"], dtype=torch.int64),
        "x_test": torch.as_tensor(data["x_test"], dtype=torch.float32),
        "y_test": torch.as_tensor(data["y_test"], dtype=torch.int64),
    }


def downsampled(data: dict[str, Tensor], seq_length: int) -> dict[str, Tensor]:
    """``data``'s signals on ``seq_length`` points over the same interval, low-passed to that grid's Nyquist frequency
    first (``ckconv.functional.resample``), so that nothing above it folds onto lower frequencies."""
    from ckconv.functional import resample

    def signals(x: Tensor) -> Tensor:
        return resample(x.double().unsqueeze(1), (seq_length,), grid="ends").squeeze(1).float()

    return {**data, "x": signals(data["x"]), "x_test": signals(data["x_test"])}


class MNIST1DDataModule(CCNNDataModule):
    """MNIST-1D as ``(B, 1, seq_length)`` sequences, 10 classes, standardised with the training mean and std.

    Validation is carved from the training examples (``val_size``, seeded); the test set is the package's own.

    Args:
        num_samples: examples generated in all (80% train, 20% test, as the package splits them).
        data_seed: seed of the generator (42 gives the standard dataset).
        val_size: training examples held out for validation.
        seq_length: samples per signal (40 in the standard dataset); the same signals at any length.
        **kwargs: the arguments of :class:`~datamodules.base.CCNNDataModule`.
    """

    name = "MNIST1D"
    resolution_option = "seq_length"

    def __init__(
        self,
        num_samples: int = 5000,
        data_seed: Seed = 42,
        val_size: PositiveInt = 500,
        seq_length: int = SEQUENCE_LENGTH,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_arguments(MNIST1DDataModule.__init__, locals())
        if isinstance(seq_length, bool) or not isinstance(seq_length, int) or seq_length < 2:
            raise InvalidArgument(
                "seq_length", f"seq_length must be an integer >= 2 (samples per signal), got {seq_length!r}."
            )
        # Checked here, not by seeded_split once the data exists: a refused run must not generate (and cache) it.
        check_generated_sizes(num_samples, int(num_samples * TRAIN_SPLIT), val_size, "examples")
        self.num_samples = num_samples
        self.data_seed = data_seed
        self.val_size = val_size
        self.seq_length = seq_length

    @property
    def meta(self) -> DataMeta:
        return DataMeta(data_dim=1, in_channels=1, num_classes=10, size=(self.seq_length,), grid="ends")

    def held_bytes(self, examples: int | None = None) -> int | None:
        # The generator (mnist1d.data.make_dataset) holds per-example float64 arrays, their np.stack, its shuffled
        # copy and the standardisation's temporary, then our float32 copy: measured 32 bytes per value at the peak
        # (1000 signals of length 20000, 5000 of length 4000).
        return self.num_samples * self.seq_length * (4 * 8 + 4)

    def _tensors(self) -> dict[str, Tensor]:
        if self.seq_length < SEQUENCE_LENGTH:
            return downsampled(self._generated(SEQUENCE_LENGTH), self.seq_length)
        return self._generated(self.seq_length)

    def _generated(self, seq_length: int) -> dict[str, Tensor]:
        settings: dict[str, Any] = {"num_samples": self.num_samples, "data_seed": self.data_seed}
        if seq_length != SEQUENCE_LENGTH:  # only then, so that the files of the standard length stay valid
            settings["seq_length"] = seq_length
        return cached_tensors(
            self.data_dir / "MNIST1D",
            "mnist1d",
            settings,
            lambda: generate_mnist1d(self.num_samples, self.data_seed, seq_length),
        )

    def prepare_data(self) -> None:
        self._tensors()

    def load_splits(self) -> tuple[Dataset, Dataset, Dataset]:
        data = self._tensors()
        mean, std = data["x"].mean(), data["x"].std()
        x = ((data["x"] - mean) / std).unsqueeze(1)  # (N, 1, seq_length)
        x_test = ((data["x_test"] - mean) / std).unsqueeze(1)
        train, val = seeded_split(TensorDataset(x, data["y"]), self.val_size, self.seed)
        return train, val, TensorDataset(x_test, data["y_test"])
