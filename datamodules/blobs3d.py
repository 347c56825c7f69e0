"""Blobs3D: a synthetic 3D task that cannot be solved without a large receptive field, generated locally.

Every volume holds one bright (+1) and one dark (-1) Gaussian blob at independent random positions, over faint,
wide clutter bumps of random sign. The label (8 classes) is the octant of the displacement from the dark blob to
the bright one: bit 2 is set when the bright blob lies further along the first spatial axis, bit 1 along the second,
bit 0 along the third. Each blob alone looks the same in every class, so a unit must see both blobs at once to
tell the classes apart: its receptive field has to span their distance, which is about a third of the volume's
side on average and up to all of it. Only a blob pressed against a face of the volume gives a hint on its own (the
other blob must lie inside); the small-kernel baseline in experiments/README.md measures how far that goes.

Scenes are continuous: positions and widths are in the volume's coordinates ``[-1, 1]^3``, and a volume is its scene
sampled at ``resolution^3`` voxel centres ``linspace(-1, 1, resolution)`` per axis (the convention of the kernel
grids, ``ckconv.functional.kernel_positions``). The scene parameters are drawn from ``data_seed`` alone, so one seed
gives the same scenes at every resolution, sampled more or less densely without interpolation (as ``mnist1d``'s
``final_seq_length`` does for MNIST-1D): a model trained at one resolution can be evaluated at another.

Volumes are generated in seconds and cached under ``data_dir/Blobs3D/`` (``datamodules.cache``), like MNIST-1D.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, TensorDataset

from argcheck import InvalidArgument, PositiveInt, Seed, check_arguments
from datamodules.base import CCNNDataModule, DataMeta, check_generated_sizes, seeded_split
from datamodules.cache import cached_tensors

# Bump when the generator changes: the cache key includes it, so stale volumes are never read.
GENERATOR_VERSION = 1
NUM_CLASSES = 8
BLOB_WIDTH = 0.15  # standard deviation of the two target blobs (about one voxel at resolution 16)
CENTRE_RANGE = 0.8  # target centres lie in [-0.8, 0.8]^3: whole blobs, away from the faces
MIN_GAP = 0.3  # per axis, |bright - dark| >= MIN_GAP: no octant is decided by a hair
CLUTTER_BUMPS = 6
CLUTTER_WIDTH = (0.25, 0.5)  # wider than the targets ...
CLUTTER_AMPLITUDE = 0.3  # ... and fainter: |a| <= 0.3 against 1
TEST_FRACTION = 0.2


def _separated_pairs(n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Centres ``(n, 3)`` of the bright and the dark blob, at least ``MIN_GAP`` apart along every axis."""
    bright = (torch.rand(n, 3, generator=generator) * 2 - 1) * CENTRE_RANGE
    dark = (torch.rand(n, 3, generator=generator) * 2 - 1) * CENTRE_RANGE
    # Redraw the dark coordinates that are too close. Each round draws a full (n, 3) tensor and keeps what it fixes,
    # so the scenes are a function of the seed (and n) alone.
    while (close := (bright - dark).abs() < MIN_GAP).any():
        redraw = (torch.rand(n, 3, generator=generator) * 2 - 1) * CENTRE_RANGE
        dark = torch.where(close, redraw, dark)
    return bright, dark


def _gaussian_profiles(axis: Tensor, centres: Tensor, widths: Tensor) -> Tensor:
    """``exp(-(axis - c)^2 / (2 w^2))`` per centre and axis.

    Centres ``(n, k, 3)`` and widths ``(n, k)`` give profiles ``(n, k, 3, R)`` for an axis of ``R`` points.
    """
    return torch.exp(-((axis - centres.unsqueeze(-1)) ** 2) / (2 * widths[..., None, None] ** 2))


def render(centres: Tensor, widths: Tensor, amplitudes: Tensor, resolution: int) -> Tensor:
    """Sample sums of axis-aligned Gaussian bumps on a ``resolution^3`` grid of voxel centres in ``[-1, 1]^3``.

    Args:
        centres: ``(n, k, 3)`` bump centres.
        widths: ``(n, k)`` standard deviations (the same along every axis).
        amplitudes: ``(n, k)`` peak values.
        resolution: voxels per side.

    Returns:
        ``(n, resolution, resolution, resolution)`` float32 volumes.
    """
    axis = torch.linspace(-1.0, 1.0, resolution)
    first, second, third = _gaussian_profiles(axis, centres, widths).unbind(2)  # each (n, k, R)
    # A Gaussian bump is separable: the outer product of its three 1D profiles, weighted and summed over bumps.
    planes = torch.einsum("nk,nka,nkb->nkab", amplitudes, first, second)  # (n, k, R, R)
    return torch.einsum("nkab,nkc->nabc", planes, third)


def generate_blobs3d(num_samples: int, resolution: int, data_seed: int = 0) -> dict[str, Tensor]:
    """Draw ``num_samples`` scenes from ``data_seed`` and sample them at ``resolution^3``.

    Returns:
        ``x`` ``(N, R, R, R)`` float32 and ``y`` ``(N,)`` int64 for the first 80% of the scenes (training),
        ``x_test`` and ``y_test`` for the rest, and ``bright``/``dark`` ``(num_samples, 3)`` target centres (all
        scenes, in order) from which the labels follow.
    """
    generator = torch.Generator().manual_seed(data_seed)
    bright, dark = _separated_pairs(num_samples, generator)
    clutter_centres = torch.rand(num_samples, CLUTTER_BUMPS, 3, generator=generator) * 2 - 1
    low, high = CLUTTER_WIDTH
    clutter_widths = low + (high - low) * torch.rand(num_samples, CLUTTER_BUMPS, generator=generator)
    clutter_amplitudes = (torch.rand(num_samples, CLUTTER_BUMPS, generator=generator) * 2 - 1) * CLUTTER_AMPLITUDE

    centres = torch.cat([bright[:, None], dark[:, None], clutter_centres], dim=1)  # (N, 2 + k, 3)
    widths = torch.cat([torch.full((num_samples, 2), BLOB_WIDTH), clutter_widths], dim=1)
    amplitudes = torch.cat([torch.tensor([1.0, -1.0]).expand(num_samples, 2), clutter_amplitudes], dim=1)
    labels = octant_labels(bright, dark)

    chunk = max(1, 2**22 // resolution**3)  # scenes rendered at a time: about 16 MiB of float32 volumes
    parts = zip(centres.split(chunk), widths.split(chunk), amplitudes.split(chunk))
    volumes = torch.cat([render(c, w, a, resolution) for c, w, a in parts])
    n_train = num_samples - int(TEST_FRACTION * num_samples)
    return {
        "x": volumes[:n_train],
        "y": labels[:n_train],
        "x_test": volumes[n_train:],
        "y_test": labels[n_train:],
        "bright": bright,
        "dark": dark,
    }


def octant_labels(bright: Tensor, dark: Tensor) -> Tensor:
    """Class of each scene: ``4 [d_0 > 0] + 2 [d_1 > 0] + [d_2 > 0]`` with ``d = bright - dark`` (``(n, 3)`` each)."""
    bits = (bright > dark).long()
    return 4 * bits[:, 0] + 2 * bits[:, 1] + bits[:, 2]


class Blobs3DDataModule(CCNNDataModule):
    """Blobs3D volumes ``(B, 1, R, R, R)``, 8 classes; no download, generated and cached on first use.

    Validation is carved from the training scenes (``val_size``, seeded by ``seed``); the test scenes are the last
    20% of the ``num_samples`` drawn.

    Args:
        num_samples: scenes generated in all (80% train, 20% test).
        resolution: voxels per side; the same scenes at any resolution.
        data_seed: seed of the scenes.
        val_size: training scenes held out for validation.
        **kwargs: the arguments of :class:`~datamodules.base.CCNNDataModule`.
    """

    name = "Blobs3D"
    resolution_option = "resolution"  # the same scenes rendered at any side

    def __init__(
        self,
        num_samples: int = 5000,
        resolution: int = 16,
        data_seed: Seed = 0,
        val_size: PositiveInt = 500,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_arguments(Blobs3DDataModule.__init__, locals())  # whole numbers: a float side is no grid
        if resolution < 2:
            raise InvalidArgument("resolution", f"resolution must be at least 2 voxels per side, got {resolution}.")
        check_generated_sizes(num_samples, num_samples - int(TEST_FRACTION * num_samples), val_size, "scenes")
        self.num_samples = num_samples
        self.resolution = resolution
        self.data_seed = data_seed
        self.val_size = val_size

    @property
    def meta(self) -> DataMeta:
        return DataMeta(data_dim=3, in_channels=1, num_classes=NUM_CLASSES, size=(self.resolution,) * 3)

    def held_bytes(self, examples: int | None = None) -> int | None:
        # Chunks of float32 volumes, then their concatenation: two copies of every voxel at the peak (measured 8.5
        # bytes per voxel, 500 scenes at 64^3 or 3000 at 32^3).
        return self.num_samples * self.resolution**3 * 2 * 4

    def _tensors(self) -> dict[str, Tensor]:
        settings = {
            "generator": GENERATOR_VERSION,
            "num_samples": self.num_samples,
            "resolution": self.resolution,
            "data_seed": self.data_seed,
        }
        return cached_tensors(
            self.data_dir / "Blobs3D",
            "blobs3d",
            settings,
            lambda: generate_blobs3d(self.num_samples, self.resolution, self.data_seed),
        )

    def prepare_data(self) -> None:
        self._tensors()

    def load_splits(self) -> tuple[Dataset, Dataset, Dataset]:
        data = self._tensors()
        train, val = seeded_split(TensorDataset(data["x"].unsqueeze(1), data["y"]), self.val_size, self.seed)
        return train, val, TensorDataset(data["x_test"].unsqueeze(1), data["y_test"])  # volumes (N, 1, R, R, R)
