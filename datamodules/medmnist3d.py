"""The six MedMNIST 3D sets (Yang et al., "MedMNIST v2", Scientific Data 2023; 64^3 versions from MedMNIST+):
volumes of 28^3 or 64^3 voxels with their official train/val/test splits.

Files: ``<flag>.npz`` (28^3) and ``<flag>_64.npz`` (64^3), named as the ``medmnist`` package (v3) names them, from
Zenodo record 10519652. They are looked for in ``data_dir/MedMNIST/`` (where they are downloaded) and then in
``data_dir`` itself, which is where the package keeps them: ``dataset.data_dir=~/.medmnist`` reuses the package's
downloads as they are. Each file is a NumPy ``.npz`` archive of six arrays: ``{train,val,test}_images``, uint8
``(N, R, R, R)`` (the package scales them by 1/255), and ``{train,val,test}_labels``, integer ``(N, 1)`` class
indices.

Why not the ``medmnist`` package itself: loading is one ``np.load`` of the documented format above, while the package
requires pandas, scikit-learn, scikit-image and fire (for its evaluator, montages and command line, none of which
loading uses) and creates ``~/.medmnist`` as a side effect of ``import medmnist``. What its downloader adds (an MD5
check) ``datamodules.download`` does as well, and atomically. The URLs and MD5 sums below are those of the
package's ``INFO`` table (medmnist 3.0.2).

Voxels are scaled to [-1, 1] (``v / 127.5 - 1``), a fixed map rather than dataset statistics, so that the same
voxel value means the same input at 28^3 and at 64^3 (a model trained at one resolution can be evaluated at the
other). Only the single-channel volumes are used (the package's ``as_rgb`` copies the channel three times).
"""

from __future__ import annotations

import os
import typing
import zipfile
import zlib
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from argcheck import PositiveInt, check_arguments
from datamodules.base import CCNNDataModule, DataError, DataMeta, StoredDataset
from datamodules.download import download_url
from datamodules.layouts import Layout, find_layout, not_found_message

Side = Literal[28, 64]  # the published sizes
RESOLUTIONS = typing.get_args(Side)
SPLITS = ("train", "val", "test")


# ---------------------------------------------------------------------------------------------- reading the file
def read_medmnist3d(path: Path, resolution: int, num_classes: int, fix: str) -> list[tuple[Tensor, Tensor]]:
    """The (train, val, test) splits of a MedMNIST 3D file at ``resolution``: uint8 volumes ``(N, 1, R, R, R)`` and
    int64 labels ``(N,)`` each.

    Args:
        path: the ``.npz`` file.
        resolution: the side its volumes must have.
        num_classes: labels must lie in ``[0, num_classes)``.
        fix: what to do about a bad file, appended to error messages.

    Raises:
        DataError: naming ``path``: it cannot be read or decompressed, lacks one of the six arrays, or holds arrays
            of another shape or type, or labels outside the classes.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, zipfile.BadZipFile, ValueError, EOFError, zlib.error) as error:
        raise DataError(f"Corrupt MedMNIST file {path}: cannot read its arrays ({error!r}). {fix}") from error
    splits = []
    for split in SPLITS:
        names = f"{split}_images", f"{split}_labels"
        if missing := [name for name in names if name not in arrays]:
            raise DataError(f"Corrupt MedMNIST file {path}: no array {missing[0]!r} (holds {sorted(arrays)}). {fix}")
        images, labels = (arrays[name] for name in names)
        if images.ndim != 4 or images.shape[1:] != (resolution,) * 3:
            raise DataError(
                f"MedMNIST file {path}: {names[0]} has shape {images.shape}, expected (N, {resolution}, {resolution}, "
                f"{resolution}). Is it the file of another resolution? {fix}"
            )
        if images.dtype != np.uint8:
            raise DataError(f"Corrupt MedMNIST file {path}: {names[0]} is {images.dtype}, expected uint8. {fix}")
        if labels.shape not in ((len(images),), (len(images), 1)):
            raise DataError(
                f"Corrupt MedMNIST file {path}: {names[1]} has shape {labels.shape} for {len(images)} volumes, "
                f"expected ({len(images)}, 1). {fix}"
            )
        if labels.dtype.kind not in "iu":
            raise DataError(f"Corrupt MedMNIST file {path}: {names[1]} is {labels.dtype}, expected integers. {fix}")
        labels = labels.reshape(-1).astype(np.int64)
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise DataError(
                f"Corrupt MedMNIST file {path}: {names[1]} span [{labels.min()}, {labels.max()}], expected "
                f"[0, {num_classes - 1}]. {fix}"
            )
        splits.append((torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels)))
    return splits


def voxels_to_unit_range(volume: Tensor) -> Tensor:
    """uint8 voxels ``(1, R, R, R)`` -> float in [-1, 1]: ``v / 127.5 - 1``."""
    return volume.float().div_(127.5).sub_(1.0)


# ---------------------------------------------------------------------------------------------------- datamodule
class MedMNIST3DDataModule(CCNNDataModule):
    """A MedMNIST 3D set as ``(B, 1, R, R, R)`` volumes with its official splits. Subclasses name the set.

    Args:
        data_dir: parent folder of ``MedMNIST/`` (or the medmnist package's root folder itself).
        batch_size, test_batch_size, num_workers, seed, download: see
            :class:`~datamodules.base.CCNNDataModule` (``seed`` only shuffles: the splits are the official ones).
        resolution: 28 (the MedMNIST v2 files) or 64 (MedMNIST+).
    """

    flag: ClassVar[str] = ""  # the file name stem of the medmnist package
    resolution_option = "resolution"  # the published 28^3 and 64^3 files, with the same voxel scaling
    num_classes: ClassVar[int] = 2
    md5: ClassVar[dict[int, str]] = {}  # resolution -> MD5 of the file
    base_url: ClassVar[str] = "https://zenodo.org/records/10519652/files/"  # tests point it at a local server

    def __init__(
        self,
        data_dir: str | os.PathLike = "data",
        batch_size: PositiveInt = 32,
        test_batch_size: PositiveInt | None = None,
        num_workers: int = -1,
        seed: int = 0,
        download: bool = True,
        resolution: Side = 28,
    ) -> None:
        super().__init__(data_dir, batch_size, test_batch_size, num_workers, seed, download)
        check_arguments(MedMNIST3DDataModule.__init__, locals())  # resolution: the published sizes
        self.resolution = resolution

    @property
    def meta(self) -> DataMeta:
        return DataMeta(data_dim=3, in_channels=1, num_classes=self.num_classes, size=(self.resolution,) * 3)

    def held_bytes(self, examples: int | None = None) -> int | None:
        return None if examples is None else examples * self.resolution**3  # the published uint8 volumes

    @property
    def filename(self) -> str:
        return f"{self.flag}.npz" if self.resolution == 28 else f"{self.flag}_{self.resolution}.npz"

    @property
    def url(self) -> str:
        return f"{self.base_url}{self.filename}?download=1"

    @property
    def source(self) -> str:
        return f"{self.url} (md5 {self.md5[self.resolution]})"

    def layouts(self) -> list[Layout]:
        return [
            Layout("MedMNIST folder", self.data_dir / "MedMNIST", (self.filename,)),
            Layout("medmnist package root", self.data_dir, (self.filename,)),
        ]

    def fetch(self) -> None:
        download_url(self.url, self.layouts()[0].root / self.filename, md5=self.md5[self.resolution])

    def locate(self) -> Layout:
        if self.resolution == 28:
            return super().locate()
        # The base's hint, `python -m datamodules.prepare <name>`, would fetch the 28^3 file: name the right one.
        found = find_layout(self.layouts())
        if found is None:
            fix = f"set dataset.download=True to download {self.source}, or put the file at one of the paths above"
            raise DataError(not_found_message(self.name, self.data_dir, self.layouts(), fix))
        return found

    def load_splits(self) -> tuple[Dataset, Dataset, Dataset]:
        """The official splits of the file, after checking every array and every label."""
        path = self.locate().root / self.filename
        fix = f"Delete it and set dataset.download=True to download {self.source} again."
        splits = read_medmnist3d(path, self.resolution, self.num_classes, fix)
        train, val, test = (StoredDataset(*split, voxels_to_unit_range) for split in splits)
        return train, val, test


class OrganMNIST3DDataModule(MedMNIST3DDataModule):
    """OrganMNIST3D: 11 abdominal organs cropped from CT (971 / 161 / 610 volumes)."""

    name = "OrganMNIST3D"
    flag = "organmnist3d"
    num_classes = 11
    md5: ClassVar[dict[int, str]] = {28: "a0c5a1ff56af4f155c46d46fbb45a2fe", 64: "58a2205adf14a9d0a189cb06dc78bf10"}


class NoduleMNIST3DDataModule(MedMNIST3DDataModule):
    """NoduleMNIST3D: benign or malignant lung nodules in CT (1,158 / 165 / 310 volumes)."""

    name = "NoduleMNIST3D"
    flag = "nodulemnist3d"
    num_classes = 2
    md5: ClassVar[dict[int, str]] = {28: "8755a7e9e05a4d9ce80a24c3e7a256f3", 64: "c47c5b7d457bf6332200d2ea6d64ecd8"}


class AdrenalMNIST3DDataModule(MedMNIST3DDataModule):
    """AdrenalMNIST3D: normal or hyperplastic adrenal glands, shape masks from CT (1,188 / 98 / 298 volumes)."""

    name = "AdrenalMNIST3D"
    flag = "adrenalmnist3d"
    num_classes = 2
    md5: ClassVar[dict[int, str]] = {28: "bbd3c5a5576322bc4cdfea780653b1ce", 64: "17721accfe9fb005146a47d33bc54b2f"}


class FractureMNIST3DDataModule(MedMNIST3DDataModule):
    """FractureMNIST3D: buckle, non-displaced or displaced rib fractures in CT (1,027 / 103 / 240 volumes)."""

    name = "FractureMNIST3D"
    flag = "fracturemnist3d"
    num_classes = 3
    md5: ClassVar[dict[int, str]] = {28: "6aa7b0143a6b42da40027a9dda61302f", 64: "f01d7e6316aedf4210da0da5b7437b42"}


class VesselMNIST3DDataModule(MedMNIST3DDataModule):
    """VesselMNIST3D: healthy vessel segment or aneurysm, shape masks from MRA (1,335 / 191 / 382 volumes)."""

    name = "VesselMNIST3D"
    flag = "vesselmnist3d"
    num_classes = 2
    md5: ClassVar[dict[int, str]] = {28: "b41fd4f7e7e2feedddb201585ecafa1b", 64: "6bb274a8846e1097066dcd64e2c4520f"}


class SynapseMNIST3DDataModule(MedMNIST3DDataModule):
    """SynapseMNIST3D: inhibitory or excitatory synapses in electron microscopy (1,230 / 177 / 352 volumes)."""

    name = "SynapseMNIST3D"
    flag = "synapsemnist3d"
    num_classes = 2
    md5: ClassVar[dict[int, str]] = {28: "1235b78a3cd6280881dd7850a78eadb6", 64: "43bd14ebf3af9d3dd072446fedc14d5e"}
