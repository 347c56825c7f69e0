"""CIFAR-10 and CIFAR-100 through ``torchvision.datasets``, from torchvision's ``cifar-10-batches-py/`` and
``cifar-100-python/`` folders.

torchvision compares every batch file with its published MD5 before unpickling it, so a tampered file is refused
before any of its code could run (the project's own restricted unpickler is gone: ``tests`` show the refusal).
CIFAR-10 with ``grayscale=True`` and ``data_type="sequence"`` is the LRA Image task.
"""

from __future__ import annotations

import os
from typing import Literal

import torch
from torch import Tensor
from torchvision.datasets import CIFAR10, CIFAR100

from argcheck import InvalidArgument, PositiveInt
from datamodules.layouts import Layout
from datamodules.vision import VisionDataModule


class _CIFARDataModule(VisionDataModule):
    """CIFAR, 32x32 colour images; ``val_size`` training images are held out (seeded) for validation.

    Files: torchvision's ``data_dir/<base folder>/`` as extracted from the official archive (or the project's
    earlier ``data_dir/<name>/<base folder>/``).

    Args:
        data_dir, batch_size, test_batch_size, num_workers, seed, download, data_type, val_size:
            see :class:`~datamodules.vision.VisionDataModule`.
        augment: RandomCrop(32, padding 4, symmetric) + horizontal flip on the training subset only.
        grayscale: CIFAR-10 only: one luma channel 0.299R + 0.587G + 0.114B, normalised with
            (122.6/255, 61/255) (the LRA Image task with ``data_type="sequence"``).
        resolution: side of the image the model sees; images are resized (bilinear, antialiased) when it is not
            32. Images only: sequences keep the stored side.
    """

    supports_grayscale = False

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
        grayscale: bool = False,
        resolution: int = 32,
    ) -> None:
        super().__init__(
            data_dir, batch_size, test_batch_size, num_workers, seed, download, data_type, augment, val_size, resolution
        )
        if grayscale and not self.supports_grayscale:
            raise InvalidArgument("grayscale", f"grayscale=True is only supported for CIFAR10, not {self.name}.")
        self.grayscale = grayscale

    @property
    def in_channels(self) -> int:
        return 1 if self.grayscale else 3

    def _normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return ((122.6 / 255,), (61.0 / 255,)) if self.grayscale else (self.mean, self.std)

    def _transform_options(self) -> dict:
        return {"grayscale": self.grayscale}

    def read(self, train: bool, layout: Layout) -> tuple[Tensor, Tensor]:
        dataset = self.checked_class(layout.root)(layout.root.parent, train=train, download=False)
        images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()  # stored (N, H, W, C)
        return images, torch.tensor(dataset.targets, dtype=torch.int64)


class CIFAR10DataModule(_CIFARDataModule):
    __doc__ = _CIFARDataModule.__doc__

    name = "CIFAR10"
    torchvision_class = CIFAR10
    source = f"{CIFAR10.url} (163 MB)"
    supports_grayscale = True
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.247, 0.243, 0.261)
    num_classes = 10


class CIFAR100DataModule(_CIFARDataModule):
    __doc__ = _CIFARDataModule.__doc__

    name = "CIFAR100"
    torchvision_class = CIFAR100
    source = f"{CIFAR100.url} (161 MB)"
    mean = (0.5071, 0.4867, 0.4408)
    std = (0.2675, 0.2565, 0.2761)
    num_classes = 100
