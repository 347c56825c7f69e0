"""What the image datamodules (MNIST, CIFAR-10/100, STL-10) share: the per-example transform, an in-memory
uint8 dataset, and a base class that downloads, splits and builds train/val/test sets.

Images are held as uint8 tensors ``(N, C, H, W)`` and converted per example, so a 50k-image set costs 150 MB
rather than 600 MB of floats. The validation subset is carved from the training files with
:func:`seeded_split` but reads through the *evaluation* transform: augmentation never reaches validation (the
original applied it there).

The datamodules themselves live in ``datamodules.mnist``, ``datamodules.cifar`` and ``datamodules.stl10``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Subset

from datamodules.base import CCNNDataModule, DataError, DataMeta, seeded_split
from datamodules.download import download_url, extract_archive

DATA_TYPES = ("default", "sequence")


def symmetric_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Pad the last two dims of ``(C, H, W)`` by mirroring, edge pixel repeated (numpy's 'symmetric')."""
    x = torch.cat([x[..., :pad, :].flip(-2), x, x[..., -pad:, :].flip(-2)], dim=-2)
    return torch.cat([x[..., :pad].flip(-1), x, x[..., -pad:].flip(-1)], dim=-1)


class ImageTransform:
    """uint8 image ``(C, H, W)`` -> float tensor ``(C', H', W')`` or, for sequences, ``(C', H'·W')``.

    Steps, in order: scale to [0, 1]; luma (optional, 1 channel); resize (bilinear, antialiased) when
    ``resolution`` differs from the stored size; random crop from a symmetric padding (``crop_padding > 0``);
    horizontal flip (``flip``); per-channel normalisation; flatten to a sequence and permute its positions
    (optional).

    Random choices use torch's global generator (seeded per DataLoader worker by Lightning).
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        grayscale: bool = False,
        resolution: int | None = None,
        crop_padding: int = 0,
        flip: bool = False,
        sequence: bool = False,
        permutation: torch.Tensor | None = None,
    ) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        self.grayscale = grayscale
        self.resolution = resolution
        self.crop_padding = crop_padding
        self.flip = flip
        self.sequence = sequence
        self.permutation = permutation

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        x = image.float().div_(255.0)
        if self.grayscale:
            x = (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]).unsqueeze(0)
        if self.resolution is not None and tuple(x.shape[-2:]) != (self.resolution, self.resolution):
            size = (self.resolution, self.resolution)
            x = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
        if self.crop_padding > 0:
            height, width = x.shape[-2:]
            padded = symmetric_pad(x, self.crop_padding)
            top, left = (int(v) for v in torch.randint(0, 2 * self.crop_padding + 1, (2,)))
            x = padded[..., top : top + height, left : left + width]
        if self.flip and bool(torch.rand(()) < 0.5):
            x = x.flip(-1)
        x = (x - self.mean) / self.std
        if self.sequence:
            x = x.flatten(1)  # (C, H, W) -> (C, H·W), row-major
            if self.permutation is not None:
                x = x[:, self.permutation]
        return x.contiguous()


class ImageDataset(Dataset):
    """uint8 images ``(N, C, H, W)`` with int64 labels ``(N,)``; items are ``(transform(image), label)``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: ImageTransform) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or len(images) != len(labels):
            raise ValueError(f"expected uint8 (N, C, H, W) images and N labels, got {images.shape}, {labels.shape}")
        self.images = images
        self.labels = labels.long()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(self.images[index]), self.labels[index]


class VisionDataModule(CCNNDataModule):
    """Base of the image datamodules: files in ``data_dir/<name>/``, seeded val split, train-only augment.

    Subclasses set the class attributes and implement ``_expected_files``, ``_fetch`` and ``_load``.

    Args:
        data_dir: parent folder; this dataset's files live in ``data_dir/<name>/``.
        batch_size, test_batch_size, num_workers, seed, download: see :class:`CCNNDataModule`.
        data_type: ``"default"`` (images ``(C, H, W)``) or ``"sequence"`` (``(C, H·W)``, row-major).
        augment: random crop from a padded image plus horizontal flip, on the training subset only.
        val_size: number of training images held out (seeded by ``seed``) for validation.
    """

    name: str = ""
    mirrors: tuple[str, ...] = ()  # base URLs tried in order; tests point them at a local server
    archive: str = ""  # file name, at each mirror, of the archive holding the whole dataset (if any)
    archive_md5: str | None = None
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    channels: int = 3
    image_size: int = 32
    num_classes: int = 10

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
    ) -> None:
        super().__init__(data_dir, batch_size, test_batch_size, num_workers, seed, download)
        if data_type not in DATA_TYPES:
            raise ValueError(f"data_type must be one of {DATA_TYPES} for {self.name}, got {data_type!r}.")
        if val_size <= 0:
            raise ValueError(f"val_size must be a positive number of images, got {val_size}.")
        self.data_type = data_type
        self.augment = augment
        self.val_size = val_size

    # ------------------------------------------------------------------------------------------ to override
    def _expected_files(self) -> list[Path]:
        """Every file ``setup`` reads."""
        raise NotImplementedError

    def _fetch(self) -> None:
        """Download the files into ``self.root``: by default fetch ``archive`` from a mirror, extract it."""
        path = download_from_mirrors(self.mirrors, self.archive, self.root / self.archive, self.archive_md5)
        extract_archive(path, self.root)

    def _load(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Read ``split`` ("train" or "test") as uint8 images ``(N, C, H, W)`` and int64 labels ``(N,)``."""
        raise NotImplementedError

    def _normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel (mean, std) applied after scaling to [0, 1]."""
        return self.mean, self.std

    def _transform_options(self) -> dict:
        """Extra :class:`ImageTransform` arguments (grayscale, resolution, permutation)."""
        return {}

    def _transform(self, train: bool) -> ImageTransform:
        augment = train and self.augment
        mean, std = self._normalization()
        return ImageTransform(
            mean,
            std,
            crop_padding=self.size // 8 if augment else 0,  # 4 px at 32, 12 px at 96
            flip=augment,
            sequence=self.data_type == "sequence",
            **self._transform_options(),
        )

    # ------------------------------------------------------------------------------------------------- shared
    @property
    def root(self) -> Path:
        return self.data_dir / self.name

    @property
    def size(self) -> int:
        """Side of the square image the model sees."""
        return self.image_size

    @property
    def in_channels(self) -> int:
        return self.channels

    @property
    def meta(self) -> DataMeta:
        if self.data_type == "sequence":
            return DataMeta(1, self.in_channels, self.num_classes, (self.size * self.size,))
        return DataMeta(2, self.in_channels, self.num_classes, (self.size, self.size))

    def _missing_files(self) -> list[Path]:
        return [path for path in self._expected_files() if not path.is_file()]

    def _fix_hint(self) -> str:
        if self.archive:
            by_hand = f"download {self.mirrors[0]}{self.archive} and extract it into {self.root}"
        else:
            by_hand = f"download the files from {self.mirrors[0]} into {self.root}"
        return f"construct the datamodule with download=True, or {by_hand}"

    def prepare_data(self) -> None:
        if not self.download or not self._missing_files():
            return
        self._fetch()
        if missing := self._missing_files():
            raise DataError(
                f"{self.name}: after downloading, still missing: {[str(p) for p in missing]}. "
                f"Delete {self.root} and run again, or {self._fix_hint()}."
            )

    def _check_files(self) -> None:
        if missing := self._missing_files():
            raise DataError(
                f"{self.name} files not found in {self.root}: missing {[p.name for p in missing]} "
                f"(expected {[str(p.relative_to(self.data_dir)) for p in self._expected_files()]} "
                f"under {self.data_dir}). To fix, {self._fix_hint()}."
            )

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit", "validate") and self.train_set is None:
            self._check_files()
            images, labels = self._load("train")
            if not 0 < self.val_size < len(images):
                raise DataError(
                    f"{self.name}: val_size={self.val_size} must be below the {len(images)} training images "
                    f"found in {self.root}."
                )
            evaluation = ImageDataset(images, labels, self._transform(train=False))
            train, self.val_set = seeded_split(evaluation, self.val_size, self.seed)
            # Same indices, but the training subset reads through the (possibly augmenting) train transform.
            self.train_set = Subset(ImageDataset(images, labels, self._transform(train=True)), train.indices)
        if stage in (None, "test", "predict") and self.test_set is None:
            self._check_files()
            images, labels = self._load("test")
            self.test_set = ImageDataset(images, labels, self._transform(train=False))


def download_from_mirrors(mirrors: Sequence[str], filename: str, dest: Path, md5: str | None) -> Path:
    """Try ``mirror + filename`` for each mirror in turn; raise one DataError listing every failure."""
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + filename
        try:
            return download_url(url, dest, md5=md5)
        except DataError as error:
            failures.append(str(error))
    raise DataError(
        f"Could not download {filename} to {dest} from any mirror:\n  " + "\n  ".join(failures) + "\n"
        f"Download it by hand (md5 {md5}) and place it at {dest}."
    )


def check_labels(labels: torch.Tensor, num_classes: int, path: Path) -> None:
    """Raise DataError when a label falls outside ``[0, num_classes)``."""
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise DataError(
            f"Corrupt labels in {path}: values span [{int(labels.min())}, {int(labels.max())}], expected "
            f"[0, {num_classes - 1}]. Delete the file and download it again."
        )
