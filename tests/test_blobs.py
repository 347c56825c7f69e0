"""Blobs3D and Blobs2D, the synthetic tasks: what the generator draws, that its label needs both blobs, that one seed
gives the same scenes at every resolution (low-passed where the grid is too coarse), and the datamodules' splits and
cache."""

from __future__ import annotations

import pytest
import torch

from argcheck import InvalidArgument
from datamodules import datamodule_class
from datamodules.base import DataMeta
from datamodules.blobs import (
    BLOB_WIDTH,
    CENTRE_RANGE,
    GENERATOR_VERSION,
    MIN_GAP,
    Blobs2DDataModule,
    Blobs3DDataModule,
    generate_blobs,
    low_passed,
    octant_labels,
    render,
    rendering_side,
)
from datamodules.cache import cache_path


@pytest.fixture(scope="module")
def scenes() -> dict[str, torch.Tensor]:
    return generate_blobs(num_samples=400, resolution=16, data_seed=3)


def grid_position(index: torch.Tensor, resolution: int) -> torch.Tensor:
    """Voxel index -> coordinate in [-1, 1] (voxel centres at linspace(-1, 1, R))."""
    return -1.0 + 2.0 * index.double() / (resolution - 1)


def test_octant_labels_follow_the_displacement_from_dark_to_bright():
    bright = torch.tensor([[0.5, 0.5, 0.5], [-0.5, 0.5, -0.5], [0.1, -0.9, 0.3]])
    dark = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.5, 0.5, -0.5]])
    assert octant_labels(bright, dark).tolist() == [7, 2, 1]  # 4 [d0 > 0] + 2 [d1 > 0] + [d2 > 0]


def test_quadrant_labels_in_the_plane():
    bright = torch.tensor([[0.5, 0.5], [-0.5, 0.5], [0.1, -0.9], [-0.2, -0.2]])
    dark = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.5, 0.5], [0.3, 0.3]])
    assert octant_labels(bright, dark).tolist() == [3, 1, 0, 0]  # 2 [d0 > 0] + [d1 > 0]


def test_render_samples_a_gaussian_at_the_pixel_centres_in_2d():
    image = render(torch.tensor([[[0.2, -0.4]]]), torch.tensor([[0.3]]), torch.tensor([[2.0]]), resolution=6)[0]
    axis = torch.linspace(-1, 1, 6)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    torch.testing.assert_close(image, 2.0 * torch.exp(-((y - 0.2) ** 2 + (x + 0.4) ** 2) / (2 * 0.3**2)))


def test_a_coarse_grid_keeps_what_it_holds_and_drops_what_it_cannot():
    """Side 8 is rendered at 22 and low-passed to 8's Nyquist frequency. A wide clutter bump (width 0.5, well within
    8's band) comes out as its point samples inside the volume (within 0.015; at the faces, where the bump is cut,
    the ideal low-pass rings by up to 0.07); a target blob (width 0.15, most of its spectrum beyond 8's band) comes
    out lower and wider than its point samples: what the grid cannot hold is gone instead of folded back."""
    centre = torch.tensor([[[0.1, -0.2, 0.05]]], dtype=torch.float64)
    amplitude = torch.tensor([[1.0]], dtype=torch.float64)
    wide = torch.tensor([[0.5]], dtype=torch.float64)
    coarse = low_passed(render(centre, wide, amplitude, rendering_side(8)), 8).double()
    interior = (slice(None), slice(2, -2), slice(2, -2), slice(2, -2))
    torch.testing.assert_close(coarse[interior], render(centre, wide, amplitude, 8)[interior], rtol=0, atol=0.015)
    on_a_voxel = torch.tensor([[[1 / 7, -3 / 7, 1 / 7]]], dtype=torch.float64)  # a voxel centre of side 8 (and 22)
    narrow = torch.tensor([[BLOB_WIDTH]], dtype=torch.float64)
    blob = low_passed(render(on_a_voxel, narrow, amplitude, rendering_side(8)), 8)
    point_sampled = render(on_a_voxel, narrow, amplitude, 8)
    assert point_sampled.max() == pytest.approx(1.0) and 0.5 < blob.max() < 0.9  # 0.73: spread over the band


def test_scenes_are_low_passed_only_where_the_grid_is_too_coarse_for_the_blobs():
    assert rendering_side(8) == 22 and rendering_side(9) == 17 and rendering_side(3) == 17  # nested, >= 16
    assert all(rendering_side(side) == side for side in (10, 12, 16, 32))  # those sides sample the scene as it is
    coarse = generate_blobs(num_samples=20, resolution=8, data_seed=1)["x"]
    assert coarse.shape == (16, 8, 8, 8) and torch.isfinite(coarse).all()


def test_render_samples_a_gaussian_at_the_voxel_centres():
    centre = torch.tensor([[[0.2, -0.4, 0.6]]])
    volume = render(centre, torch.tensor([[0.3]]), torch.tensor([[2.0]]), resolution=5)[0]
    axis = torch.linspace(-1, 1, 5)
    z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
    expected = 2.0 * torch.exp(-((z - 0.2) ** 2 + (y + 0.4) ** 2 + (x - 0.6) ** 2) / (2 * 0.3**2))
    torch.testing.assert_close(volume, expected, rtol=1e-5, atol=1e-6)


def test_scenes_keep_the_blobs_apart_and_inside_the_volume(scenes):
    d = scenes["bright"] - scenes["dark"]
    assert d.abs().min() >= MIN_GAP  # every octant decided by a margin
    for centres in (scenes["bright"], scenes["dark"]):
        assert centres.abs().max() <= CENTRE_RANGE
    labels = torch.cat([scenes["y"], scenes["y_test"]])
    assert torch.equal(labels, octant_labels(scenes["bright"], scenes["dark"]))
    assert torch.bincount(labels, minlength=8).min() >= 30  # 400 scenes: every class present, none rare


def test_the_blobs_are_the_extremes_and_give_the_label(scenes):
    # The brightest and the darkest voxel sit on the two target blobs (the clutter is fainter), so the label is the
    # octant of their displacement: the whole volume must be seen at once to find both.
    x = torch.cat([scenes["x"], scenes["x_test"]]).flatten(1)
    labels = torch.cat([scenes["y"], scenes["y_test"]])
    brightest = torch.stack(torch.unravel_index(x.argmax(1), (16, 16, 16)), dim=1)
    darkest = torch.stack(torch.unravel_index(x.argmin(1), (16, 16, 16)), dim=1)
    step = 2.0 / 15
    assert (grid_position(brightest, 16) - scenes["bright"]).abs().max() <= 0.75 * step  # the voxel at the centre
    assert (grid_position(darkest, 16) - scenes["dark"]).abs().max() <= 0.75 * step
    assert torch.equal(octant_labels(brightest, darkest), labels)  # MIN_GAP is over two voxels: no near misses


def test_the_blobs_are_far_apart_so_small_receptive_fields_cannot_see_both(scenes):
    distance = (scenes["bright"] - scenes["dark"]).abs() * 15 / 2  # per axis, in voxels at resolution 16
    chebyshev = distance.max(dim=1).values
    assert chebyshev.median() >= 6.0  # a 3x3x3 kernel reaches 1 voxel, three stacked ones 3
    assert (chebyshev > 3.0).float().mean() >= 0.9
    assert BLOB_WIDTH * 15 / 2 < 1.5  # each blob itself is local: about a voxel wide


def test_one_seed_gives_the_same_scenes_at_every_resolution():
    coarse = generate_blobs(num_samples=20, resolution=16, data_seed=1)
    fine = generate_blobs(num_samples=20, resolution=31, data_seed=1)  # every other voxel on the coarse grid
    assert torch.equal(coarse["y"], fine["y"]) and torch.equal(coarse["bright"], fine["bright"])
    torch.testing.assert_close(fine["x"][:, ::2, ::2, ::2], coarse["x"], rtol=0, atol=2e-6)
    other = generate_blobs(num_samples=20, resolution=16, data_seed=2)
    assert not torch.equal(other["bright"], coarse["bright"])


def test_generation_is_deterministic_and_rendered_in_chunks_alike():
    a = generate_blobs(num_samples=30, resolution=8, data_seed=0)
    b = generate_blobs(num_samples=30, resolution=8, data_seed=0)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["x"].shape == (24, 8, 8, 8) and a["x_test"].shape == (6, 8, 8, 8)  # 80% / 20%


def test_blobs2d_is_the_task_in_the_plane(tmp_path):
    datamodule = datamodule_class("Blobs2D")(data_dir=tmp_path, num_samples=40, val_size=8, num_workers=0)
    assert isinstance(datamodule, Blobs2DDataModule)
    assert datamodule.meta == DataMeta(2, 1, 4, (32, 32), grid="ends")  # 32 pixels per side unless told
    datamodule.setup()
    x, y = datamodule.test_set[0]
    expected = generate_blobs(40, 32, 2, data_seed=0)
    assert x.shape == (1, 32, 32) and torch.equal(x[0], expected["x_test"][0]) and y == expected["y_test"][0]
    assert cache_path(
        tmp_path / "Blobs2D",
        "blobs2d",
        {"generator": GENERATOR_VERSION, "num_samples": 40, "resolution": 32, "data_seed": 0},
    ).is_file()


def test_datamodule_meta_splits_and_cache(tmp_path):
    datamodule = datamodule_class("Blobs3D")(
        data_dir=tmp_path, num_samples=50, resolution=8, val_size=10, num_workers=0, seed=1
    )
    assert datamodule.meta == DataMeta(3, 1, 8, (8, 8, 8), grid="ends")  # voxel centres from face to face
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # metadata without data
    datamodule.prepare_data()
    settings = {"generator": GENERATOR_VERSION, "num_samples": 50, "resolution": 8, "data_seed": 0}
    assert cache_path(tmp_path / "Blobs3D", "blobs3d", settings).is_file()
    datamodule.setup()
    assert (len(datamodule.train_set), len(datamodule.val_set), len(datamodule.test_set)) == (30, 10, 10)
    expected = generate_blobs(50, 8, data_seed=0)
    x, y = datamodule.test_set[3]
    assert x.shape == (1, 8, 8, 8) and torch.equal(x[0], expected["x_test"][3]) and y == expected["y_test"][3]
    seen = sorted(datamodule.train_set.indices + datamodule.val_set.indices)
    assert seen == list(range(40))  # the split covers the training scenes once
    again = Blobs3DDataModule(data_dir=tmp_path, num_samples=50, resolution=8, val_size=10, num_workers=0, seed=1)
    again.setup()
    assert again.val_set.indices == datamodule.val_set.indices


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"num_samples": 5}, "num_samples"),  # at least 10
        ({"resolution": 1}, "resolution"),  # at least 2
        ({"num_samples": 100, "val_size": 80}, "val_size"),  # 100 samples leave 80 for training and validation
        ({"val_size": 0}, "val_size"),
        ({"val_size": True}, "val_size"),
        ({"resolution": 32.0}, "resolution"),  # a whole number of voxels
        ({"num_samples": 50.0}, "num_samples"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_impossible_settings_are_refused_by_name(tmp_path, kwargs, argument):
    with pytest.raises(InvalidArgument) as info:
        Blobs3DDataModule(data_dir=tmp_path, **kwargs)
    assert info.value.argument == argument  # training/build.py names the flag from it
    assert list(tmp_path.iterdir()) == []  # nothing generated or cached
