"""STL-10 (labelled part) through ``torchvision.datasets.STL10``: 5k training and 8k test images of 96x96 pixels."""

from __future__ import annotations

import os
from typing import Literal

import torch
from torch import Tensor
from torchvision.datasets import STL10

from argcheck import PositiveInt
from datamodules.layouts import Layout
from datamodules.vision import VisionDataModule


class STL10DataModule(VisionDataModule):
    """STL-10, labelled split: ``val_size`` of the 5000 training images held out (seeded), 8000 test images.

    Files: torchvision's ``data_dir/stl10_binary/`` as extracted from ``stl10_binary.tar.gz`` (or the project's
    earlier ``data_dir/STL10/stl10_binary/``). torchvision checks
    the MD5 of every file of the archive, the 2.6 GB ``unlabeled_X.bin`` included, although only the labelled
    images are used: it must be present, and checking it takes a few seconds per split.

    Args:
        data_dir, batch_size, test_batch_size, num_workers, seed, download, data_type:
            see :class:`~datamodules.vision.VisionDataModule`.
        augment: random crop from a symmetric padding of ``resolution // 8`` pixels + horizontal flip, on the
            training subset only.
        val_size: training images held out for validation (500 by default).
        resolution: side of the image the model sees; images are resized (bilinear, antialiased) when it is
            not 96. The original upsampled to 256. Images only: sequences keep the stored side.
    """

    name = "STL10"
    torchvision_class = STL10
    source = f"{STL10.url} (2.5 GB)"
    mean = (0.4467, 0.4398, 0.4066)  # STL-10 training-set statistics
    std = (0.2603, 0.2566, 0.2713)
    image_size = 96
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
        val_size: PositiveInt = 500,
        resolution: int = 96,
    ) -> None:
        super().__init__(
            data_dir, batch_size, test_batch_size, num_workers, seed, download, data_type, augment, val_size, resolution
        )

    def read(self, train: bool, layout: Layout) -> tuple[Tensor, Tensor]:
        split = "train" if train else "test"
        dataset = self.checked_class(layout.root)(layout.root.parent, split=split, download=False)
        # torchvision subtracts 1 from the uint8 label bytes (1..10): a byte 0 wraps to 255, which the base refuses.
        images = torch.from_numpy(dataset.data).contiguous()  # (N, 3, 96, 96): torchvision un-transposes the planes
        return images, torch.from_numpy(dataset.labels.astype("int64"))
