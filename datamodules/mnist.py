"""MNIST through torchvision's MNIST reader: 2D images, row-major sequences of 784 pixels, or permuted sequences."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor
from torchvision.datasets import MNIST
from torchvision.datasets.mnist import read_image_file, read_label_file

from argcheck import InvalidArgument, PositiveInt
from datamodules.base import DataError
from datamodules.download import FolderError, download_url, extract_archive
from datamodules.layouts import Layout
from datamodules.vision import EARLIER_LAYOUT, TORCHVISION_LAYOUT, VisionDataModule

GZ_FILES = tuple(name for name, _ in MNIST.resources)  # train images, labels; t10k images, labels
RAW_FILES = tuple(name.removesuffix(".gz") for name in GZ_FILES)
LEGACY_LAYOUT = "torchvision before 0.9"


class MNISTDataModule(VisionDataModule):
    """MNIST digits: 60k training images (``val_size`` of them held out for validation) and the 10k test set.

    Files: torchvision's ``data_dir/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (the decompressed IDX
    files), read with torchvision's IDX readers. Also read: ``MNIST/processed/{training,test}.pt`` (torchvision
    before 0.9) and the project's earlier ``MNIST/*-ubyte.gz`` (the downloaded files, decompressed to a temporary
    folder for reading). Normalize(0.1307, 0.3081).

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
        batch_size: PositiveInt = 32,
        test_batch_size: PositiveInt | None = None,
        num_workers: int = -1,
        seed: int = 0,
        download: bool = True,
        data_type: Literal["default", "sequence"] = "default",
        augment: bool = False,
        val_size: PositiveInt = 5000,
        permuted: bool = False,
        resolution: int = 28,
    ) -> None:
        super().__init__(
            data_dir, batch_size, test_batch_size, num_workers, seed, download, data_type, augment, val_size, resolution
        )
        if augment:
            raise InvalidArgument("augment", "augment=True is not supported for MNIST (crops and flips change digits).")
        if permuted and data_type != "sequence":
            raise InvalidArgument(
                "permuted", f"permuted=True needs data_type='sequence' for MNIST, got data_type={data_type!r}."
            )
        self.permuted = permuted

    def permutation(self) -> torch.Tensor | None:
        """The pixel permutation (a function of ``seed`` alone), or ``None`` when ``permuted`` is off."""
        if not self.permuted:
            return None
        return torch.randperm(28 * 28, generator=torch.Generator().manual_seed(self.seed))

    def _transform_options(self) -> dict:
        return {"permutation": self.permutation()}

    def layouts(self) -> list[Layout]:
        return [
            Layout(TORCHVISION_LAYOUT, self.data_dir / "MNIST" / "raw", RAW_FILES),
            Layout(LEGACY_LAYOUT, self.data_dir / "MNIST" / "processed", ("training.pt", "test.pt")),
            Layout(EARLIER_LAYOUT, self.data_dir / "MNIST", GZ_FILES),
        ]

    def split_files(self, train: bool, layout: Layout) -> list[Path]:
        half = len(layout.expected) // 2  # each layout lists the training split's files first
        return [layout.root / name for name in (layout.expected[:half] if train else layout.expected[half:])]

    def fetch(self) -> None:
        """Download (MD5-checked) and decompress each missing file, trying torchvision's mirrors in turn."""
        folder = self.layouts()[0].root
        for gz_name, md5 in MNIST.resources:
            if (folder / gz_name.removesuffix(".gz")).is_file():
                continue
            failures = []
            for mirror in MNIST.mirrors:
                try:
                    archive = download_url(mirror + gz_name, folder / gz_name, md5=md5)
                    break
                except FolderError:  # no other mirror will do better
                    raise
                except DataError as error:
                    failures.append(str(error))
            else:
                raise DataError(f"MNIST: every mirror failed for {gz_name}: " + " | ".join(failures))
            extract_archive(archive, folder)

    def read(self, train: bool, layout: Layout) -> tuple[Tensor, Tensor]:
        if layout.name == LEGACY_LAYOUT:  # torchvision's MNIST reads processed/<split>.pt before raw/
            dataset = MNIST(self.data_dir, train=train, download=False)
            return dataset.data.unsqueeze(1), dataset.targets  # (N, 1, 28, 28) uint8, (N,) int64
        images, labels = self.split_files(train, layout)
        with tempfile.TemporaryDirectory() as tmp:
            if layout.name == EARLIER_LAYOUT:  # torchvision's readers take decompressed IDX files only
                images, labels = (extract_archive(path, Path(tmp)) / path.stem for path in (images, labels))
            # What MNIST._load_data runs on raw/, without its preference for processed/ when both exist.
            return read_image_file(str(images)).unsqueeze(1), read_label_file(str(labels))
