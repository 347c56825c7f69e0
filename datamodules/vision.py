"""What the image datamodules (MNIST, CIFAR-10/100, STL-10) share: torchvision reads the files,
``torchvision.transforms.v2`` builds the per-example transform, one base class fetches, checks and splits.

Files are found in torchvision's layout under ``data_dir`` (``MNIST/raw/``, ``cifar-10-batches-py/``, ...), which
the original CCNN code used too, or in the project's earlier one (the same folders inside ``data_dir/<name>/``,
e.g. ``CIFAR10/cifar-10-batches-py/``), and read by ``torchvision.datasets`` with its integrity checks (the MD5 of
every CIFAR and STL-10 file, MNIST's IDX headers). A download is the archive torchvision records, verified against
torchvision's MD5 of it. Added here, as torchvision leaves them unchecked: images of the
expected size, one label per image, every label a class index (its STL-10 reader turns a label byte 0 into 255).

Images stay uint8 ``(N, C, H, W)`` and are converted per example (150 MB rather than 600 MB for 50k images). The
validation subset, carved from the training files, reads through the *evaluation* transform: augmentation never
reaches validation (the original applied it there).

``resolution`` resizes every image to that side (bilinear, antialiased: ``v2.Resize``); the normalisation is a fixed
per-channel map, so a pixel value means the same at every resolution and a model trained at one side can be
evaluated at another (``test.resolutions``). Images flattened to sequences keep their stored side: a row-major
position ``t`` is the pixel ``(t // side, t % side)``, which moves when the side changes.

Test hook: when ``CCNN_FIXTURE_CHECKSUMS`` names a JSON file ``{"<absolute file path>": "<md5>", ...}``, the CIFAR
and STL-10 files listed there are checked against those digests instead of the published ones, which small fixture
files cannot match; every other file keeps its published digest. Only ``tests/fixtures/vision_files.py`` sets it.
"""

from __future__ import annotations

import functools
import os
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Literal

from torch import Tensor
from torch.utils.data import Dataset, Subset
from torchvision.datasets.utils import check_integrity
from torchvision.transforms import v2

from argcheck import InvalidArgument, PositiveInt, check_arguments
from datamodules.base import CCNNDataModule, DataError, DataMeta, StoredDataset, fixture_hook, seeded_split
from datamodules.download import download_and_extract
from datamodules.layouts import Layout

DataType = Literal["default", "sequence"]
DATA_TYPES = typing.get_args(DataType)
FIXTURE_CHECKSUMS = "CCNN_FIXTURE_CHECKSUMS"
TORCHVISION_LAYOUT = "torchvision (also the original CCNN code's)"
EARLIER_LAYOUT = "project's earlier"  # before the move to torchvision: data_dir/<name>/<torchvision's folder>


def scale_to_unit(image: Tensor) -> Tensor:
    """uint8 ``(C, H, W)`` -> float32 in [0, 1], dividing by 255 as ``transforms.ToTensor`` (the original's) does.

    ``v2.ToDtype(torch.float32, scale=True)`` multiplies by ``1 / 255`` instead, one ulp away in 126 of the 256
    values: kept so that every tensor stays what it was.
    """
    return image.float().div_(255.0)


def luma(image: Tensor) -> Tensor:
    """RGB ``(3, H, W)`` -> ``(1, H, W)``: 0.299 R + 0.587 G + 0.114 B (ITU-R 601-2, as PIL's ``convert("L")``).

    ``v2.Grayscale`` weighs red by 0.2989: kept so that the LRA Image inputs stay what they were.
    """
    return (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]).unsqueeze(0)


def to_sequence(image: Tensor, permutation: Tensor | None = None) -> Tensor:
    """``(C, H, W)`` -> ``(C, H·W)`` row-major, then the positions reordered by ``permutation`` (if any)."""
    x = image.flatten(1)
    return (x if permutation is None else x[:, permutation]).contiguous()


def image_transform(
    mean: Sequence[float],
    std: Sequence[float],
    size: int,
    resize: bool = False,
    grayscale: bool = False,
    crop_padding: int = 0,
    flip: bool = False,
    sequence: bool = False,
    permutation: Tensor | None = None,
) -> v2.Compose:
    """uint8 image ``(C, H, W)`` -> float ``(C', S, S)`` or, for sequences, ``(C', S·S)``, with ``S = size``.

    Steps, in order: scale to [0, 1]; luma (``grayscale``); resize to ``size``² (``resize``), bilinear and
    antialiased (the one place the resolution changes); random crop from a symmetric padding of ``crop_padding``
    pixels; random horizontal flip (``flip``); per-channel normalisation; flatten to a sequence (``sequence``).
    Random choices use torch's global generator (seeded per DataLoader worker by Lightning).
    """
    steps: list = [v2.Lambda(scale_to_unit)]
    if grayscale:
        steps.append(v2.Lambda(luma))
    if resize:
        steps.append(v2.Resize((size, size), interpolation=v2.InterpolationMode.BILINEAR, antialias=True))
    if crop_padding > 0:
        steps.append(v2.RandomCrop(size, padding=crop_padding, padding_mode="symmetric"))
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    steps.append(v2.Normalize(list(mean), list(std)))
    if sequence:
        steps.append(v2.Lambda(functools.partial(to_sequence, permutation=permutation)))
    return v2.Compose(steps)


def image_meta(data_type: str, channels: int, num_classes: int, side: int) -> DataMeta:
    """The metadata of square images of ``side`` pixels, or of the row-major sequences they flatten to."""
    if data_type == "sequence":
        return DataMeta(1, channels, num_classes, (side * side,))
    return DataMeta(2, channels, num_classes, (side, side))


def flattened_refusal(name: str, data_type: str) -> str | None:
    """Why images flattened to sequences cannot be evaluated at another side (``None`` for 2D images)."""
    if data_type != "sequence":
        return None
    return (
        f"{name} images flattened to sequences (data_type='sequence') do not keep the image's geometry at another "
        "side: position t is pixel (t // side, t % side), which moves with the side. Train on 2D images "
        "(data_type='default') to evaluate at other resolutions"
    )


def with_fixture_checksums(cls: type, folder: Path) -> type:
    """torchvision's class ``cls`` or, under the test hook (module docstring), a same-named subclass expecting the
    fixture's MD5s for the files of ``folder``."""
    digests = fixture_hook(FIXTURE_CHECKSUMS) if hasattr(cls, "train_list") else {}  # MNIST checks no MD5
    if not digests:
        return cls

    def swap(entries: list[list[str]]) -> list[list[str]]:
        return [[name, digests.get(str(folder / name), md5)] for name, md5 in entries]

    replaced: dict = {"train_list": swap(cls.train_list), "test_list": swap(cls.test_list)}
    if isinstance(getattr(cls, "meta", None), dict):
        replaced["meta"] = {**cls.meta, "md5": digests.get(str(folder / cls.meta["filename"]), cls.meta["md5"])}
    return type(cls.__name__, (cls,), replaced)


class VisionDataModule(CCNNDataModule):
    """Base of the image datamodules: torchvision reads the files, a seeded val split, train-only augmentation.

    Subclasses set the class attributes and implement ``read``; ``fetch`` downloads and extracts the archive that
    ``torchvision_class`` records (URL, file name, MD5).

    Args:
        data_dir, batch_size, test_batch_size, num_workers, seed, download: see :class:`CCNNDataModule`.
        data_type: ``"default"`` (images ``(C, H, W)``) or ``"sequence"`` (``(C, H·W)``, row-major).
        augment: random crop from a padded image plus horizontal flip, on the training subset only.
        val_size: number of training images held out (seeded by ``seed``) for validation.
        resolution: side of the square image the model sees (``None``: the stored side); images only, not sequences.
    """

    resolution_option = "resolution"

    torchvision_class: ClassVar[type]
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    channels: int = 3
    image_size: int = 32  # side of the stored images
    num_classes: int = 10

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
        resolution: PositiveInt | None = None,
    ) -> None:
        super().__init__(data_dir, batch_size, test_batch_size, num_workers, seed, download)
        check_arguments(VisionDataModule.__init__, locals())
        resolution = self.image_size if resolution is None else resolution
        if data_type == "sequence" and resolution != self.image_size:
            raise InvalidArgument(
                "resolution",
                f"resolution={resolution} with data_type='sequence': {self.name} images flattened to sequences keep "
                f"their stored side ({self.image_size}), as their 1D positions do not keep the image's geometry at "
                "another side. Use data_type='default' (2D images) to change the resolution.",
            )
        self.data_type = data_type
        self.augment = augment
        self.val_size = val_size
        self.resolution = resolution

    def read(self, train: bool, layout: Layout) -> tuple[Tensor, Tensor]:
        """The training or test split of the copy in ``layout`` as uint8 images ``(N, C, H, W)`` and int64 labels
        ``(N,)``. torchvision's classes take the folder above their own (``layout.root.parent``)."""
        raise NotImplementedError

    def split_files(self, train: bool, layout: Layout) -> list[Path]:
        """The files ``read(train, layout)`` reads, for messages."""
        entries = getattr(self.torchvision_class, "train_list" if train else "test_list")
        return [layout.root / name for name, _ in entries]

    def layouts(self) -> list[Layout]:
        cls = self.torchvision_class
        names = [name for name, _ in cls.train_list + cls.test_list]
        if isinstance(getattr(cls, "meta", None), dict):  # CIFAR's label names, MD5-checked as well
            names.append(cls.meta["filename"])
        return [
            Layout(TORCHVISION_LAYOUT, self.data_dir / cls.base_folder, tuple(names)),
            Layout(EARLIER_LAYOUT, self.data_dir / self.name / cls.base_folder, tuple(names)),
        ]

    def _normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel (mean, std) applied after scaling to [0, 1]."""
        return self.mean, self.std

    def _transform_options(self) -> dict:
        """Extra :func:`image_transform` arguments (grayscale, permutation)."""
        return {}

    @property
    def size(self) -> int:
        """Side of the square image the model sees."""
        return self.resolution

    def held_bytes(self, examples: int | None = None) -> int | None:
        return 0  # the stored images, at their own side, are resized one at a time as the loader reads them

    def resolution_refusal(self) -> str | None:
        return flattened_refusal(self.name, self.data_type)

    @property
    def in_channels(self) -> int:
        return self.channels

    @property
    def meta(self) -> DataMeta:
        return image_meta(self.data_type, self.in_channels, self.num_classes, self.size)

    def checked_class(self, folder: Path) -> type:
        """torchvision's class for reading the files in ``folder`` (with the fixture digests under the test hook)."""
        return with_fixture_checksums(self.torchvision_class, folder)

    def fetch(self) -> None:
        cls = self.torchvision_class
        # The archive's top folder is torchvision's base_folder.
        download_and_extract(cls.url, self.data_dir / cls.filename, self.data_dir, md5=cls.tgz_md5)

    def evaluation_transform(self) -> v2.Compose:
        """What validation and test apply to one stored image (no augmentation); also for a user's own images."""
        return self._transform(train=False)

    def _transform(self, train: bool) -> v2.Compose:
        augment = train and self.augment
        mean, std = self._normalization()
        return image_transform(
            mean,
            std,
            self.size,
            resize=self.size != self.image_size,
            crop_padding=self.size // 8 if augment else 0,  # 4 px at 32, 12 px at 96
            flip=augment,
            sequence=self.data_type == "sequence",
            **self._transform_options(),
        )

    def _checked_read(self, train: bool, layout: Layout) -> tuple[Tensor, Tensor]:
        split, folder = "train" if train else "test", layout.root
        refetch = (
            f"Delete {folder} and run `python -m datamodules.prepare {self.name} --data-dir {self.data_dir}` "
            "(or set dataset.download=True) to download it again."
        )
        try:
            images, labels = self.read(train, layout)
        except DataError:
            raise
        except Exception as error:  # torchvision reports a bad file as RuntimeError, ValueError, KeyError, ...
            cls = self.checked_class(folder)  # CIFAR and STL-10 check the MD5 of all their files at each load
            entries = getattr(cls, "train_list", []) + getattr(cls, "test_list", [])
            bad = [folder / name for name, md5 in entries if not check_integrity(str(folder / name), md5)]
            problem = f"{self.name} {split} data: cannot read {', '.join(map(str, self.split_files(train, layout)))}"
            problem += f" ({error!r})"
            if bad:  # torchvision checks every file of both splits whichever it reads: name the files, not a split
                bad_files = ", ".join(map(str, bad))
                problem = f"{self.name}: {bad_files} failed torchvision's MD5 check (corrupt, truncated or altered)"
            raise DataError(f"{problem}. {refetch}") from error
        files, expected = (
            ", ".join(map(str, self.split_files(train, layout))),
            (self.channels, self.image_size, self.image_size),
        )
        if tuple(images.shape[1:]) != expected or len(images) != len(labels):
            raise DataError(
                f"{self.name} {split} data in {files}: {len(images)} images of shape {tuple(images.shape[1:])} and "
                f"{len(labels)} labels, expected images of shape {expected}, one label each. {refetch}"
            )
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise DataError(
                f"{self.name} {split} labels in {files} span [{int(labels.min())}, {int(labels.max())}], expected "
                f"[0, {self.num_classes - 1}]. {refetch}"
            )
        return images, labels

    def load_splits(self) -> tuple[Dataset, Dataset, Dataset]:
        layout = self.locate()
        images, labels = self._checked_read(True, layout)
        evaluation = StoredDataset(images, labels, self._transform(train=False))
        train, val = seeded_split(evaluation, self.val_size, self.seed)
        # Same indices, but the training subset reads through the (possibly augmenting) train transform.
        train = Subset(StoredDataset(images, labels, self._transform(train=True)), train.indices)
        test_images, test_labels = self._checked_read(False, layout)
        return train, val, StoredDataset(test_images, test_labels, self._transform(train=False))
