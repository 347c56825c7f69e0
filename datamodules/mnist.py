"""MNIST from its gzipped IDX files: 2D images, row-major sequences of 784 pixels, or permuted sequences."""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from datamodules.base import DataError
from datamodules.vision import VisionDataModule, check_labels, download_from_mirrors

# IDX: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions, then big-endian int32
# sizes, then the values.


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """Read a gzipped IDX file of unsigned bytes with ``ndim`` dimensions, validating its header and length.

    Raises:
        DataError: the file is unreadable, truncated, or its magic number or size is wrong.
    """
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(
            f"Corrupt MNIST file {path}: cannot decompress it ({error!r}). Delete it and download it again."
        ) from error
    header = 4 + 4 * ndim
    magic = 0x0800 | ndim
    found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if found != magic:
        shown = "none" if found is None else f"0x{found:08x}"
        raise DataError(
            f"Corrupt MNIST file {path}: IDX magic number {shown}, expected 0x{magic:08x} (unsigned bytes, "
            f"{ndim} dimensions). Delete it and download it again."
        )
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) != header + math.prod(shape):
        raise DataError(
            f"Corrupt MNIST file {path}: header announces shape {shape} ({header + math.prod(shape)} "
            f"bytes), but the file holds {len(raw)} bytes. Delete it and download it again."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


class MNISTDataModule(VisionDataModule):
    """MNIST digits: 60k training images (``val_size`` of them held out for validation) and the 10k test set.

    Files: ``data_dir/MNIST/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``. Normalize(0.1307, 0.3081).

    Args:
        data_dir, batch_size, test_batch_size, num_workers, seed, download, data_type, val_size:
            see :class:`~datamodules.vision.VisionDataModule`.
        augment: refused (no augmentation is defined for digits); kept so every image datamodule has the flag.
        permuted: apply a fixed permutation of the 784 pixel positions, drawn from ``seed`` (pMNIST).
            Only with ``data_type="sequence"``.
    """

    name = "MNIST"
    mirrors = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
    resources: ClassVar[dict[str, str]] = {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }
    mean = (0.1307,)
    std = (0.3081,)
    channels = 1
    image_size = 28
    num_classes = 10

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
        permuted: bool = False,
    ) -> None:
        super().__init__(
            data_dir, batch_size, test_batch_size, num_workers, seed, download, data_type, augment, val_size
        )
        if augment:
            raise ValueError("augment=True is not supported for MNIST (crops and flips change digits).")
        if permuted and data_type != "sequence":
            raise ValueError(f"permuted=True needs data_type='sequence' for MNIST, got data_type={data_type!r}.")
        self.permuted = permuted

    def permutation(self) -> torch.Tensor | None:
        """The pixel permutation (a function of ``seed`` alone), or ``None`` when ``permuted`` is off."""
        if not self.permuted:
            return None
        return torch.randperm(28 * 28, generator=torch.Generator().manual_seed(self.seed))

    def _transform_options(self) -> dict:
        return {"permutation": self.permutation()}

    def _expected_files(self) -> list[Path]:
        return [self.root / name for name in self.resources]

    def _fetch(self) -> None:
        for path in self._missing_files():
            download_from_mirrors(self.mirrors, path.name, path, self.resources[path.name])

    def _load(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        prefix = "train" if split == "train" else "t10k"
        images_path = self.root / f"{prefix}-images-idx3-ubyte.gz"
        labels_path = self.root / f"{prefix}-labels-idx1-ubyte.gz"
        images, labels = read_idx(images_path, 3), read_idx(labels_path, 1)
        if images.shape[1:] != (28, 28):
            raise DataError(
                f"Corrupt MNIST file {images_path}: images of size {images.shape[1:]}, expected (28, 28). "
                "Delete it and download it again."
            )
        if len(images) != len(labels):
            raise DataError(
                f"MNIST files disagree: {images_path} holds {len(images)} images but {labels_path} holds "
                f"{len(labels)} labels. Delete both and download them again."
            )
        labels_t = torch.from_numpy(labels.astype(np.int64))
        check_labels(labels_t, self.num_classes, labels_path)
        return torch.from_numpy(images.copy()).unsqueeze(1), labels_t  # (N, 1, 28, 28)
