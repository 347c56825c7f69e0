"""STL-10 (labelled part) from the ``stl10_binary`` files: 5k training and 8k test images of 96x96 pixels."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from datamodules.base import DataError
from datamodules.vision import VisionDataModule, check_labels

_IMAGE_BYTES = 3 * 96 * 96


def read_stl10_images(path: Path) -> np.ndarray:
    """Read an STL-10 ``*_X.bin`` file as uint8 images ``(N, 3, 96, 96)`` (channel, row, column).

    Each image is stored as three 96x96 planes (red, green, blue), each plane column-major (as MATLAB writes
    it), so the raw layout per image is ``(channel, column, row)``: rows and columns are swapped on reading.
    """
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise DataError(f"Cannot read STL-10 file {path}: {error!r}. Delete it and download it again.") from error
    if raw.size == 0 or raw.size % _IMAGE_BYTES:
        raise DataError(
            f"Corrupt STL-10 file {path}: {raw.size} bytes is not a positive multiple of {_IMAGE_BYTES} "
            "(3x96x96 per image). Delete it and download it again."
        )
    return np.ascontiguousarray(raw.reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2))


def read_stl10_labels(path: Path) -> np.ndarray:
    """Read an STL-10 ``*_y.bin`` file (one byte per image, classes 1..10) as int64 labels 0..9."""
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise DataError(f"Cannot read STL-10 file {path}: {error!r}. Delete it and download it again.") from error
    return raw.astype(np.int64) - 1


class STL10DataModule(VisionDataModule):
    """STL-10, labelled split: ``val_size`` of the 5000 training images held out (seeded), 8000 test images.

    Files: ``data_dir/STL10/stl10_binary/{train,test}_{X,y}.bin`` as extracted from ``stl10_binary.tar.gz``.
    The unlabelled images are not used (nor required).

    Args:
        data_dir, batch_size, test_batch_size, num_workers, seed, download, data_type:
            see :class:`~datamodules.vision.VisionDataModule`.
        augment: random crop from a symmetric padding of ``resolution // 8`` pixels + horizontal flip, on the
            training subset only.
        val_size: training images held out for validation (500 by default).
        resolution: side of the image the model sees; images are resized (bilinear, antialiased) when it is
            not 96. The original upsampled to 256.
    """

    name = "STL10"
    mirrors = ("http://ai.stanford.edu/~acoates/stl10/",)
    archive = "stl10_binary.tar.gz"
    archive_md5 = "91f7769df0f17e558f3565bffb0c7dfb"
    folder = "stl10_binary"
    mean = (0.4467, 0.4398, 0.4066)  # STL-10 training-set statistics
    std = (0.2603, 0.2566, 0.2713)
    image_size = 96
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
        val_size: int = 500,
        resolution: int = 96,
    ) -> None:
        super().__init__(
            data_dir, batch_size, test_batch_size, num_workers, seed, download, data_type, augment, val_size
        )
        if resolution <= 0:
            raise ValueError(f"resolution must be a positive number of pixels, got {resolution}.")
        self.resolution = resolution

    @property
    def size(self) -> int:
        return self.resolution

    def _transform_options(self) -> dict:
        return {"resolution": self.resolution}

    def _expected_files(self) -> list[Path]:
        return [self.root / self.folder / f"{split}_{kind}.bin" for split in ("train", "test") for kind in "Xy"]

    def _load(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        images_path = self.root / self.folder / f"{split}_X.bin"
        labels_path = self.root / self.folder / f"{split}_y.bin"
        images, labels = read_stl10_images(images_path), read_stl10_labels(labels_path)
        if len(images) != len(labels):
            raise DataError(
                f"STL-10 files disagree: {images_path} holds {len(images)} images but {labels_path} holds "
                f"{len(labels)} labels. Delete both and download them again."
            )
        labels_t = torch.from_numpy(labels)
        check_labels(labels_t, self.num_classes, labels_path)
        return torch.from_numpy(images), labels_t
