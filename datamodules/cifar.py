"""CIFAR-10 and CIFAR-100 from their python pickle batches.

CIFAR-10 with ``grayscale=True`` and ``data_type="sequence"`` is the LRA Image task.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from datamodules.base import DataError
from datamodules.vision import VisionDataModule, check_labels

_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's array rebuilder, whatever module it lives in


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickle dicts, lists, numbers, strings and numpy arrays only: a CIFAR batch needs nothing else, and a
    tampered file cannot run code."""

    _allowed: ClassVar[dict] = {
        ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,  # files written with numpy 1 (the real ones)
        ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,  # files written with numpy 2
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): lambda text, encoding="utf-8": text.encode(encoding),  # py3 protocol-2 bytes
    }

    def find_class(self, module: str, name: str):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch") from None


def read_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR pickle batch as uint8 images ``(N, 3, 32, 32)`` and int64 labels ``(N,)``.

    Raises:
        DataError: the file is unreadable, not a CIFAR batch, or its arrays have the wrong size.
    """
    try:
        with open(path, "rb") as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as error:
        raise DataError(f"Corrupt CIFAR file {path}: {error!r}. Delete it and download it again.") from error
    if not isinstance(batch, dict):
        raise DataError(f"Corrupt CIFAR file {path}: expected a dict, got {type(batch).__name__}.")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or label_key not in batch:
        raise DataError(
            f"Corrupt CIFAR file {path}: keys {sorted(batch)}, expected 'data' and {label_key!r}. "
            "Delete it and download it again."
        )
    data = np.asarray(batch["data"])
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise DataError(
            f"Corrupt CIFAR file {path}: data {data.dtype}{data.shape} with {len(labels)} labels, expected "
            f"uint8 (N, 3072) with N labels. Delete it and download it again."
        )
    # Each row holds the red, green and blue 32x32 planes in turn, each row-major.
    return data.reshape(-1, 3, 32, 32), labels


class _CIFARDataModule(VisionDataModule):
    """CIFAR, 32x32 colour images; ``val_size`` training images are held out (seeded) for validation.

    Files: ``data_dir/<name>/<folder>/`` as extracted from the official ``<archive>``.

    Args:
        data_dir, batch_size, test_batch_size, num_workers, seed, download, data_type, val_size:
            see :class:`~datamodules.vision.VisionDataModule`.
        augment: RandomCrop(32, padding 4, symmetric) + horizontal flip on the training subset only.
        grayscale: CIFAR-10 only: one luma channel 0.299R + 0.587G + 0.114B, normalised with
            (122.6/255, 61/255) (the LRA Image task with ``data_type="sequence"``).
    """

    mirrors = ("https://www.cs.toronto.edu/~kriz/",)
    archive: str = ""
    archive_md5: str = ""
    folder: str = ""
    train_files: tuple[str, ...] = ()
    test_files: tuple[str, ...] = ()
    label_key: str = ""
    supports_grayscale = False

    def __init__(
        self,
        data_dir: str | os.PathLike = "data",
        batch_size: int = 32,
        test_batch_size: int | None = None,
        num_workers: int = -1,
        seed: int = 0,
        download: bool = True,
        data_type: str = "default",
        augment: bool = False,
        val_size: int = 5000,
        grayscale: bool = False,
    ) -> None:
        super().__init__(
            data_dir, batch_size, test_batch_size, num_workers, seed, download, data_type, augment, val_size
        )
        if grayscale and not self.supports_grayscale:
            raise ValueError(f"grayscale=True is only supported for CIFAR10, not {self.name}.")
        self.grayscale = grayscale

    @property
    def in_channels(self) -> int:
        return 1 if self.grayscale else 3

    def _normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return ((122.6 / 255,), (61.0 / 255,)) if self.grayscale else (self.mean, self.std)

    def _transform_options(self) -> dict:
        return {"grayscale": self.grayscale}

    def _expected_files(self) -> list[Path]:
        return [self.root / self.folder / name for name in self.train_files + self.test_files]

    def _load(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        names = self.train_files if split == "train" else self.test_files
        parts = [read_cifar_batch(self.root / self.folder / name, self.label_key) for name in names]
        labels = torch.from_numpy(np.concatenate([p[1] for p in parts]))
        check_labels(labels, self.num_classes, self.root / self.folder / names[0])
        return torch.from_numpy(np.concatenate([p[0] for p in parts])), labels


class CIFAR10DataModule(_CIFARDataModule):
    __doc__ = _CIFARDataModule.__doc__

    name = "CIFAR10"
    archive = "cifar-10-python.tar.gz"
    archive_md5 = "c58f30108f718f92721af3b95e74349a"
    folder = "cifar-10-batches-py"
    train_files = tuple(f"data_batch_{i}" for i in range(1, 6))
    test_files = ("test_batch",)
    label_key = "labels"
    supports_grayscale = True
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.247, 0.243, 0.261)
    num_classes = 10


class CIFAR100DataModule(_CIFARDataModule):
    __doc__ = _CIFARDataModule.__doc__

    name = "CIFAR100"
    archive = "cifar-100-python.tar.gz"
    archive_md5 = "eb9058c3a382ffc7106e4002c42a8d85"
    folder = "cifar-100-python"
    train_files = ("train",)
    test_files = ("test",)
    label_key = "fine_labels"
    mean = (0.5071, 0.4867, 0.4408)
    std = (0.2675, 0.2565, 0.2761)
    num_classes = 100
