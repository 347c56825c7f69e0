"""MNIST through ``torchvision.datasets.MNIST``: 2D images, row-major sequences of 784 pixels, or permuted sequences."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor
from torchvision.datasets import MNIST

from datamodules.base import DataError
from datamodules.download import FolderError, download_url, extract_archive
from datamodules.layouts import Layout
from datamodules.vision import TORCHVISION_LAYOUT, VisionDataModule

RAW_FILES = tuple(name.removesuffix(".gz") for name, _ in MNIST.resources)  # train images, labels; t10k images, labels


class MNISTDataModule(VisionDataModule):
    """MNIST digits: 60k training images (``val_size`` of them held out for validation) and the 10k test set.

    Files: torchvision's ``data_dir/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (the decompressed IDX
    files; torchvision before 0.9 kept ``MNIST/processed/{training,test}.pt``, which is read too).
    Normalize(0.1307, 0.3081).

    Args:
        data_dir, batch_size, test_batch_size, num_workers, seed, download, data_type, val_size:
            see :class:`~datamodules.vision.VisionDataModule`.
        augment: refused (no augmentation is defined for digits); kept so every image datamodule has the flag.
        permuted: apply a fixed permutation of the 784 pixel positions, drawn from ``seed`` (pMNIST).
            Only with ``data_type="sequence"``.
        resolution: side of the image the model sees; images are resized (bilinear, antialiased) when it is not
            28. Images only: sequences keep the stored side.
    """

    name = "MNIST"
    torchvision_class = MNIST
    source = f"the four files of {MNIST.mirrors[0]} (11 MB)"
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
        resolution: int = 28,
    ) -> None:
        super().__init__(
            data_dir, batch_size, test_batch_size, num_workers, seed, download, data_type, augment, val_size, resolution
        )
        if augment:
            raise ValueError("augment=True is not supported for MNIST (crops and flips change digits).")
        if permuted and data_type != "sequence":
            raise ValueError(f"permuted=True needs data_type='sequence' for MNIST, got data_type={data_type!r}.")
        self.permuted = permuted

    @property
    def folder(self) -> Path:
        return self.data_dir / "MNIST" / "raw"

    def permutation(self) -> torch.Tensor | None:
        """The pixel permutation (a function of ``seed`` alone), or ``None`` when ``permuted`` is off."""
        if not self.permuted:
            return None
        return torch.randperm(28 * 28, generator=torch.Generator().manual_seed(self.seed))

    def _transform_options(self) -> dict:
        return {"permutation": self.permutation()}

    def layouts(self) -> list[Layout]:
        return [
            Layout(TORCHVISION_LAYOUT, self.folder, RAW_FILES),
            Layout("torchvision before 0.9", self.data_dir / "MNIST" / "processed", ("training.pt", "test.pt")),
        ]

    def split_files(self, train: bool) -> list[Path]:
        return [self.folder / name for name in (RAW_FILES[:2] if train else RAW_FILES[2:])]

    def fetch(self) -> None:
        """Download (MD5-checked) and decompress each missing file, trying torchvision's mirrors in turn."""
        for gz_name, md5 in MNIST.resources:
            if (self.folder / gz_name.removesuffix(".gz")).is_file():
                continue
            failures = []
            for mirror in MNIST.mirrors:
                try:
                    archive = download_url(mirror + gz_name, self.folder / gz_name, md5=md5)
                    break
                except FolderError:  # no other mirror will do better
                    raise
                except DataError as error:
                    failures.append(str(error))
            else:
                raise DataError(f"MNIST: every mirror failed for {gz_name}: " + " | ".join(failures))
            extract_archive(archive, self.folder)

    def read(self, train: bool) -> tuple[Tensor, Tensor]:
        dataset = MNIST(self.data_dir, train=train, download=False)
        return dataset.data.unsqueeze(1), dataset.targets  # (N, 1, 28, 28) uint8, (N,) int64
