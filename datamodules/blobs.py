"""Blobs3D and Blobs2D: synthetic volumes and images that cannot be classified without a large receptive field,
generated locally.

Every volume (or image) holds one bright (+1) and one dark (-1) Gaussian blob at independent random positions, over
faint, wide clutter bumps of random sign. The label (8 classes in 3D, 4 in 2D) is the octant (quadrant) of the
displacement from the dark blob to the bright one: in 3D bit 2 is set when the bright blob lies further along the
first spatial axis, bit 1 along the second, bit 0 along the third; in 2D bit 1 along the first, bit 0 along the
second. Each blob alone looks the same in every class, so a unit must see both blobs at once to
tell the classes apart: its receptive field has to span their distance, which is about a third of the volume's
side on average and up to all of it. Only a blob pressed against a face of the volume gives a hint on its own (the
other blob must lie inside); the small-kernel baseline in experiments/README.md measures how far that goes.

Scenes are continuous: positions and widths are in the volume's coordinates ``[-1, 1]^d``, and a volume is its scene
sampled at ``resolution^d`` voxel (pixel) centres ``linspace(-1, 1, resolution)`` per axis (the convention of the kernel
grids, ``ckconv.functional.kernel_positions``). The scene parameters are drawn from ``data_seed`` alone, so one seed
gives the same scenes at every resolution, sampled more or less densely without interpolation (as ``mnist1d``'s
``final_seq_length`` does for MNIST-1D): a model trained at one resolution can be evaluated at another. A side too
coarse for the target blobs (below 10) is rendered on a finer grid and low-passed to its own Nyquist frequency
(``low_passed``), the anti-aliasing a camera's pixels or a resize give an image: point samples of a blob narrower
than a voxel would see it whole or miss its peak depending on where it falls.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.utils.data import Dataset, TensorDataset

from argcheck import InvalidArgument, PositiveInt, Seed, check_arguments
from datamodules.base import CCNNDataModule, DataMeta, check_generated_sizes, seeded_split
from datamodules.cache import cached_tensors

# Bump when the generator changes: the cache key includes it, so stale volumes are never read.
GENERATOR_VERSION = 3  # 3: below side 10, scenes rendered finer and low-passed (2 blurred them)
BLOB_WIDTH = 0.15  # standard deviation of the two target blobs (about one voxel at resolution 16)
CENTRE_RANGE = 0.8  # target centres lie in [-0.8, 0.8]^3: whole blobs, away from the faces
MIN_GAP = 0.3  # per axis, |bright - dark| >= MIN_GAP: no octant is decided by a hair
CLUTTER_BUMPS = 6
CLUTTER_WIDTH = (0.25, 0.5)  # wider than the targets ...
CLUTTER_AMPLITUDE = 0.3  # ... and fainter: |a| <= 0.3 against 1
TEST_FRACTION = 0.2


def _separated_pairs(n: int, data_dim: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Centres ``(n, d)`` of the bright and the dark blob, at least ``MIN_GAP`` apart along every axis."""
    bright = (torch.rand(n, data_dim, generator=generator) * 2 - 1) * CENTRE_RANGE
    dark = (torch.rand(n, data_dim, generator=generator) * 2 - 1) * CENTRE_RANGE
    # Redraw the dark coordinates that are too close. Each round draws a full (n, 3) tensor and keeps what it fixes,
    # so the scenes are a function of the seed (and n) alone.
    while (close := (bright - dark).abs() < MIN_GAP).any():
        redraw = (torch.rand(n, data_dim, generator=generator) * 2 - 1) * CENTRE_RANGE
        dark = torch.where(close, redraw, dark)
    return bright, dark


def _gaussian_profiles(axis: Tensor, centres: Tensor, widths: Tensor) -> Tensor:
    """``exp(-(axis - c)^2 / (2 w^2))`` per centre and axis.

    Centres ``(n, k, d)`` and widths ``(n, k)`` give profiles ``(n, k, d, R)`` for an axis of ``R`` points.
    """
    return torch.exp(-((axis - centres.unsqueeze(-1)) ** 2) / (2 * widths[..., None, None] ** 2))


def render(centres: Tensor, widths: Tensor, amplitudes: Tensor, resolution: int) -> Tensor:
    """Sample sums of axis-aligned Gaussian bumps on a ``resolution^d`` grid of voxel centres in ``[-1, 1]^d``.

    Args:
        centres: ``(n, k, d)`` bump centres, ``d`` = 2 or 3.
        widths: ``(n, k)`` standard deviations (the same along every axis).
        amplitudes: ``(n, k)`` peak values.
        resolution: voxels per side.

    Returns:
        ``(n, resolution, ...)`` float32 volumes (``d`` sides).
    """
    axis = torch.linspace(-1.0, 1.0, resolution)
    profiles = _gaussian_profiles(axis, centres, widths).unbind(2)  # d of (n, k, R)
    # A Gaussian bump is separable: the outer product of its 1D profiles, weighted and summed over bumps.
    if len(profiles) == 2:
        return torch.einsum("nk,nka,nkb->nab", amplitudes, *profiles)
    first, second, third = profiles
    planes = torch.einsum("nk,nka,nkb->nkab", amplitudes, first, second)  # (n, k, R, R)
    return torch.einsum("nkab,nkc->nabc", planes, third)


# The smallest side whose grid holds a target blob: its spectrum keeps 2 standard deviations below the grid's Nyquist
# frequency (``ckconv.bandlimit.min_width``: a width of at least 2 / (pi (R - 1) / 2) = 0.1415 at side 10 < 0.15).
FAITHFUL_SIDE = 10


def rendering_side(resolution: int) -> int:
    """The side at which scenes for ``resolution`` are rendered: ``resolution`` itself from ``FAITHFUL_SIDE`` up, else
    the smallest side ``(resolution - 1) k + 1`` (a grid that holds the coarse one's voxels) of at least 16."""
    if resolution >= FAITHFUL_SIDE or resolution < 2:
        return resolution
    return (resolution - 1) * math.ceil(15 / (resolution - 1)) + 1


def low_passed(volumes: Tensor, resolution: int) -> Tensor:
    """``volumes`` ``(N, D, ...)`` rendered at ``rendering_side(resolution)``, low-passed to the Nyquist frequency of
    ``resolution`` and sampled there (``ckconv.functional.resample``, voxel centres from face to face). An ideal
    low-pass keeps what the coarse grid holds as it is, where a Gaussian blur would also dim and widen the blobs
    within that band (a network trained at 16 fell from 99.8% to 24% at side 8 on such scenes, and stayed at 94%
    on the low-passed ones)."""
    if volumes.shape[1] == resolution:
        return volumes
    from ckconv.functional import resample

    data_dim = volumes.dim() - 1
    return resample(volumes.double().unsqueeze(1), (resolution,) * data_dim, grid="ends").squeeze(1).float()


def generate_blobs(num_samples: int, resolution: int, data_dim: int = 3, data_seed: int = 0) -> dict[str, Tensor]:
    """Draw ``num_samples`` scenes of ``data_dim`` (2 or 3) dimensions from ``data_seed`` and sample them at
    ``resolution^d``.

    Returns:
        ``x`` ``(N, R, ...)`` float32 and ``y`` ``(N,)`` int64 for the first 80% of the scenes (training),
        ``x_test`` and ``y_test`` for the rest, and ``bright``/``dark`` ``(num_samples, d)`` target centres (all
        scenes, in order) from which the labels follow.
    """
    generator = torch.Generator().manual_seed(data_seed)
    bright, dark = _separated_pairs(num_samples, data_dim, generator)
    clutter_centres = torch.rand(num_samples, CLUTTER_BUMPS, data_dim, generator=generator) * 2 - 1
    low, high = CLUTTER_WIDTH
    clutter_widths = low + (high - low) * torch.rand(num_samples, CLUTTER_BUMPS, generator=generator)
    clutter_amplitudes = (torch.rand(num_samples, CLUTTER_BUMPS, generator=generator) * 2 - 1) * CLUTTER_AMPLITUDE

    centres = torch.cat([bright[:, None], dark[:, None], clutter_centres], dim=1)  # (N, 2 + k, d)
    widths = torch.cat([torch.full((num_samples, 2), BLOB_WIDTH), clutter_widths], dim=1)
    amplitudes = torch.cat([torch.tensor([1.0, -1.0]).expand(num_samples, 2), clutter_amplitudes], dim=1)
    labels = octant_labels(bright, dark)

    side = rendering_side(resolution)
    chunk = max(1, 2**22 // side**data_dim)  # scenes rendered at a time: about 16 MiB of float32 volumes
    parts = zip(centres.split(chunk), widths.split(chunk), amplitudes.split(chunk))
    volumes = torch.cat([low_passed(render(c, w, a, side), resolution) for c, w, a in parts])
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
    """Class of each scene: the bits ``[d_a > 0]`` of ``d = bright - dark`` (``(n, d)`` each), the first axis the
    highest bit: ``4 [d_0 > 0] + 2 [d_1 > 0] + [d_2 > 0]`` in 3D."""
    bits = (bright > dark).long()
    weights = 2 ** torch.arange(bits.shape[1] - 1, -1, -1)
    return (bits * weights).sum(dim=1)


class BlobsDataModule(CCNNDataModule):
    """Blobs scenes ``(B, 1, R, ...)`` of ``data_dim`` dimensions, ``2^data_dim`` classes; no download, generated and
    cached on first use. :class:`Blobs3DDataModule` and :class:`Blobs2DDataModule` are the two datasets.

    Validation is carved from the training scenes (``val_size``, seeded by ``seed``); the test scenes are the last
    20% of the ``num_samples`` drawn.

    Args:
        num_samples: scenes generated in all (80% train, 20% test).
        resolution: voxels (pixels) per side; the same scenes at any resolution.
        data_seed: seed of the scenes.
        val_size: training scenes held out for validation.
        **kwargs: the arguments of :class:`~datamodules.base.CCNNDataModule`.
    """

    data_dim: ClassVar[int]
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
        check_arguments(BlobsDataModule.__init__, locals())  # whole numbers: a float side is no grid
        if resolution < 2:
            raise InvalidArgument("resolution", f"resolution must be at least 2 voxels per side, got {resolution}.")
        check_generated_sizes(num_samples, num_samples - int(TEST_FRACTION * num_samples), val_size, "scenes")
        self.num_samples = num_samples
        self.resolution = resolution
        self.data_seed = data_seed
        self.val_size = val_size

    @property
    def meta(self) -> DataMeta:
        size = (self.resolution,) * self.data_dim
        return DataMeta(data_dim=self.data_dim, in_channels=1, num_classes=2**self.data_dim, size=size, grid="ends")

    def held_bytes(self, examples: int | None = None) -> int | None:
        # Chunks of float32 volumes, then their concatenation: two copies of every voxel at the peak (measured 8.5
        # bytes per voxel, 500 scenes at 64^3 or 3000 at 32^3).
        return self.num_samples * self.resolution**self.data_dim * 2 * 4

    def _tensors(self) -> dict[str, Tensor]:
        settings = {
            "generator": GENERATOR_VERSION,
            "num_samples": self.num_samples,
            "resolution": self.resolution,
            "data_seed": self.data_seed,
        }
        return cached_tensors(
            self.data_dir / self.name,
            self.name.lower(),
            settings,
            lambda: generate_blobs(self.num_samples, self.resolution, self.data_dim, self.data_seed),
        )

    def prepare_data(self) -> None:
        self._tensors()

    def load_splits(self) -> tuple[Dataset, Dataset, Dataset]:
        data = self._tensors()
        train, val = seeded_split(TensorDataset(data["x"].unsqueeze(1), data["y"]), self.val_size, self.seed)
        return train, val, TensorDataset(data["x_test"].unsqueeze(1), data["y_test"])  # (N, 1, R, ...)


class Blobs3DDataModule(BlobsDataModule):
    """Blobs3D volumes ``(B, 1, R, R, R)``, 8 classes (the octant of the displacement), 16 voxels per side by
    default. Arguments: those of :class:`BlobsDataModule`."""

    name = "Blobs3D"
    data_dim = 3


class Blobs2DDataModule(BlobsDataModule):
    """Blobs2D images ``(B, 1, R, R)``, 4 classes (the quadrant of the displacement): Blobs3D's task in the plane.
    Arguments: those of :class:`BlobsDataModule`, 32 pixels per side by default."""

    name = "Blobs2D"
    data_dim = 2

    def __init__(
        self,
        num_samples: int = 5000,
        resolution: int = 32,
        data_seed: Seed = 0,
        val_size: PositiveInt = 500,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_samples, resolution, data_seed, val_size, **kwargs)
