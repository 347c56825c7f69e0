"""LRA Pathfinder (and Path-X): are the two dots in a grayscale image joined by a dashed path? 2 classes.

On disk (from ``lra_release.gz``; see ``lra_common`` for the other layouts searched)::

    lra_release/pathfinder{R}/{curv_baseline | curv_contour_length_9 | curv_contour_length_14}/
        metadata/<batch>.npy       one image per line, space separated:
                                   ``imgs/<k> sample_<n>.png <n> <label> <continuity> <contour length> ...``
        imgs/<k>/sample_<n>.png    R x R grayscale PNG

Despite their name, the release's metadata files are plain text (as the LRA loaders read them); a real ``.npy``
array of strings with the same columns is accepted too. Only columns 0 (folder), 1 (file) and 3 (label) are used.
``curv_baseline`` at R = 32 holds one known corrupt image (``imgs/0/sample_172.png``), skipped as LRA loaders do.

Pixels are scaled to [0, 1] and then normalised with mean 0.5 and std 0.5, i.e. to [-1, 1] (the original used
[0, 1]). The release has no splits: a seeded random 80/10/10 train/val/test split is drawn from ``seed``.
Decoded images are cached (as uint8) under ``<data_dir>/cache``.
"""

from __future__ import annotations

import math
import typing
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset, random_split

from argcheck import PositiveInt, check_arguments
from datamodules.base import CCNNDataModule, DataError, DataMeta, StoredDataset
from datamodules.cache import cached_tensors
from datamodules.layouts import Layout
from datamodules.lra_common import (
    LRA_SOURCE,
    LRA_URL,
    PathfinderDifficulty,
    PathfinderSide,
    fetch_release,
    files_fingerprint,
    lra_layouts,
    pathfinder_folder,
)
from datamodules.vision import DataType, flattened_refusal, image_meta, image_transform

RESOLUTIONS = typing.get_args(PathfinderSide)
KNOWN_CORRUPT = {"pathfinder32/curv_baseline/imgs/0/sample_172.png"}
_NPY_MAGIC = b"\x93NUMPY"


def read_metadata(path: Path) -> list[tuple[str, str, int]]:
    """The ``(image folder, file name, label)`` rows of one metadata file (text, or a real ``.npy`` array).

    Raises:
        DataError: the file cannot be parsed or a row has fewer than 4 columns or a label other than 0/1.
    """
    fix = f"Delete {path.parent.parent} and extract {LRA_URL} again."
    try:
        raw = path.read_bytes()
        if raw.startswith(_NPY_MAGIC):
            table = np.load(path, allow_pickle=False)
            rows = [[str(v) for v in row] for row in np.atleast_2d(table)]
        else:
            rows = [line.split() for line in raw.decode("utf-8").splitlines() if line.strip()]
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise DataError(f"Cannot read Pathfinder metadata file {path} ({error}). {fix}") from error
    entries = []
    for number, row in enumerate(rows, start=1):
        if len(row) < 4 or row[3] not in ("0", "1"):
            raise DataError(
                f"Pathfinder metadata file {path}, row {number}: expected 'folder file index label ...' "
                f"with label 0 or 1, got {' '.join(row)!r}. {fix}"
            )
        entries.append((row[0], row[1], int(row[3])))
    return entries


def read_png(path: Path, resolution: int) -> np.ndarray:
    """One Pathfinder image as a ``(resolution, resolution)`` uint8 array.

    Raises:
        DataError: the file is not a readable image of that size.
    """
    try:
        with Image.open(path) as image:
            pixels = np.array(image.convert("L"), dtype=np.uint8)
    except (OSError, SyntaxError, ValueError) as error:  # what PIL raises for missing, truncated or bad files
        raise DataError(
            f"Cannot read Pathfinder image {path} ({error}). Delete {path.parent.parent.parent} and extract "
            f"{LRA_URL} again."
        ) from error
    if pixels.shape != (resolution, resolution):
        raise DataError(f"Pathfinder image {path} is {pixels.shape}, expected {(resolution, resolution)}.")
    return pixels


class PathFinderDataModule(CCNNDataModule):
    """LRA Pathfinder at resolution R: ``x`` is ``(B, 1, R, R)`` (``default``) or ``(B, 1, R*R)`` (sequence).

    Path-X is ``resolution=128``. Splits are a seeded random 80/10/10 train/val/test split of all images.

    Args:
        data_dir, batch_size, test_batch_size, num_workers, seed, download: see :class:`CCNNDataModule`
            (``seed`` also draws the 80/10/10 split).
        resolution: image side, one of 32, 64, 128, 256.
        difficulty: ``easy`` (curv_baseline), ``intermediate`` (curv_contour_length_9) or ``hard``
            (curv_contour_length_14).
        data_type: ``default`` for 2D images, ``sequence`` for flattened 1D sequences of length R*R.
    """

    name = "PathFinder"
    source = LRA_SOURCE
    resolution_option = "resolution"  # the release's images at each side: the same task drawn more finely

    def __init__(
        self,
        data_dir: str | Path = "data",
        batch_size: PositiveInt = 32,
        test_batch_size: PositiveInt | None = None,
        num_workers: int = -1,
        seed: int = 0,
        download: bool = True,
        resolution: PathfinderSide = 32,
        difficulty: PathfinderDifficulty = "hard",
        data_type: DataType = "default",
    ) -> None:
        super().__init__(data_dir, batch_size, test_batch_size, num_workers, seed, download)
        check_arguments(PathFinderDataModule.__init__, locals())
        self.resolution = resolution
        self.difficulty = difficulty
        self.data_type = data_type

    @property
    def meta(self) -> DataMeta:
        return image_meta(self.data_type, 1, 2, self.resolution)

    def held_bytes(self, examples: int | None = None) -> int | None:
        return None if examples is None else examples * math.prod(self.meta.size)  # the release's uint8 images

    def resolution_refusal(self) -> str | None:
        return flattened_refusal(self.name, self.data_type)

    def layouts(self) -> list[Layout]:
        folder = pathfinder_folder(self.resolution, self.difficulty)
        return lra_layouts(self.data_dir, folder, f"pathfinder/{folder}", ("metadata", "imgs"))

    def fetch(self) -> None:
        fetch_release(self.data_dir)

    def _metadata_files(self, root: Path) -> list[Path]:
        # Batch files are named <int>.npy: read them in numeric order (others after them, by name).
        files = sorted(
            (root / "metadata").glob("*.npy"),
            key=lambda p: (not p.stem.isdigit(), int(p.stem) if p.stem.isdigit() else 0, p.stem),
        )
        if not files:
            raise DataError(
                f"No Pathfinder metadata files (*.npy) in {root / 'metadata'}. Delete {root} and extract {LRA_URL} "
                "again."
            )
        return files

    def _listed(self, root: Path, metadata_files: list[Path]) -> list[tuple[Path, int]]:
        """(image path, label) of every image the metadata lists, without the release's known corrupt one."""
        prefix = pathfinder_folder(self.resolution, self.difficulty)
        return [
            (root / folder / name, label)
            for path in metadata_files
            for folder, name, label in read_metadata(path)
            if f"{prefix}/{folder}/{name}" not in KNOWN_CORRUPT
        ]

    def _build(self, listed: list[tuple[Path, int]], root: Path) -> dict[str, Tensor]:
        images = [torch.from_numpy(read_png(path, self.resolution)) for path, _ in listed]
        labels = [label for _, label in listed]
        if len(images) < 3:
            raise DataError(
                f"Pathfinder under {root} lists {len(images)} images; the train/val/test split needs at least 3."
            )
        return {"images": torch.stack(images), "labels": torch.tensor(labels)}

    def load_splits(self) -> tuple[Dataset, Dataset, Dataset]:
        root = self.locate().root
        metadata_files = self._metadata_files(root)
        listed = self._listed(root, metadata_files)
        # The images' sizes and times too, as Speech Commands' clips: a cache keyed on the metadata alone kept
        # serving an image that had been replaced or truncated since.
        try:
            fingerprint = files_fingerprint([*metadata_files, *(path for path, _ in listed)])
        except FileNotFoundError as error:
            raise DataError(
                f"Pathfinder image {error.filename} is listed in {root / 'metadata'} but missing. Delete {root} and "
                f"extract {LRA_URL} again."
            ) from error
        settings = {"resolution": self.resolution, "difficulty": self.difficulty, "files": fingerprint}
        data = cached_tensors(self.data_dir / "cache", "lra_pathfinder", settings, lambda: self._build(listed, root))
        # [0, 1], then mean 0.5 and std 0.5: the image datamodules' transform, on images stored (N, R, R).
        transform = image_transform((0.5,), (0.5,), self.resolution, sequence=self.data_type == "sequence")
        full = StoredDataset(data["images"].unsqueeze(1), data["labels"], transform)
        n_eval = max(1, len(full) // 10)
        generator = torch.Generator().manual_seed(self.seed)
        val, test, train = random_split(full, [n_eval, n_eval, len(full) - 2 * n_eval], generator=generator)
        return train, val, test
