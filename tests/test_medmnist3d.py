"""The MedMNIST 3D datamodules on ``.npz`` files written here in the real format, their download from a local HTTP
server, and one short training run of the OrganMNIST3D preset through ``python main.py``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from argcheck import InvalidArgument
from datamodules import DATAMODULES, datamodule_class
from datamodules.base import DataError, DataMeta
from datamodules.medmnist3d import MedMNIST3DDataModule, OrganMNIST3DDataModule
from tests.conftest import run_main
from tests.fixtures.vision_files import local_http_server

# dataset.name -> (file stem, classes), as the medmnist package's INFO table lists them.
SETS = {
    "OrganMNIST3D": ("organmnist3d", 11),
    "NoduleMNIST3D": ("nodulemnist3d", 2),
    "AdrenalMNIST3D": ("adrenalmnist3d", 2),
    "FractureMNIST3D": ("fracturemnist3d", 3),
    "VesselMNIST3D": ("vesselmnist3d", 2),
    "SynapseMNIST3D": ("synapsemnist3d", 2),
}
SPLIT_SIZES = {"train": 12, "val": 4, "test": 6}


def write_medmnist3d(
    folder: Path, flag: str = "organmnist3d", resolution: int = 28, num_classes: int = 11, seed: int = 0, **replace
) -> tuple[Path, dict[str, np.ndarray]]:
    """Write ``folder/<flag>[_64].npz`` as the medmnist package ships it: ``np.savez_compressed`` of uint8 volumes
    ``{split}_images`` ``(N, R, R, R)`` and uint8 labels ``{split}_labels`` ``(N, 1)``. ``replace`` swaps arrays
    (``None`` drops one) to make broken files."""
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for split, n in SPLIT_SIZES.items():
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, resolution, resolution, resolution), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, num_classes, (n, 1)).astype(np.uint8)
    arrays |= replace
    arrays = {k: v for k, v in arrays.items() if v is not None}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (f"{flag}.npz" if resolution == 28 else f"{flag}_{resolution}.npz")
    np.savez_compressed(path, **arrays)
    return path, arrays


def organ(data_dir: Path, **kwargs) -> OrganMNIST3DDataModule:
    return OrganMNIST3DDataModule(
        **{"data_dir": data_dir, "batch_size": 4, "num_workers": 0, "download": False} | kwargs
    )


def voxels(x: torch.Tensor) -> torch.Tensor:
    """Undo the datamodule's ``v / 127.5 - 1``: back to uint8 voxel values."""
    return ((x + 1) * 127.5).round().to(torch.uint8)


# ------------------------------------------------------------------------------------------------------- metadata
@pytest.mark.parametrize("name", list(SETS))
@pytest.mark.parametrize("resolution", [28, 64])
def test_meta_comes_from_the_arguments_without_touching_disk(name, resolution, tmp_path):
    datamodule = datamodule_class(name)(data_dir=tmp_path / "none", resolution=resolution, num_workers=0)
    assert DATAMODULES[name].startswith("datamodules.medmnist3d:")
    assert datamodule.meta == DataMeta(3, 1, SETS[name][1], (resolution,) * 3)
    assert datamodule.flag == SETS[name][0] and set(datamodule.md5) == {28, 64}
    assert datamodule.filename == (f"{SETS[name][0]}.npz" if resolution == 28 else f"{SETS[name][0]}_64.npz")
    assert not (tmp_path / "none").exists()


def test_a_resolution_that_was_not_published_is_refused_by_name(tmp_path):
    for side in (32, 0, 28.0, True):
        with pytest.raises(InvalidArgument) as refused:
            organ(tmp_path, resolution=side)
        assert refused.value.argument == "resolution"
    assert not (tmp_path / "MedMNIST").exists()


# ---------------------------------------------------------------------------------------------------- reading
def test_official_splits_are_read_voxel_for_voxel(tmp_path):
    _, arrays = write_medmnist3d(tmp_path / "MedMNIST")
    datamodule = organ(tmp_path)
    datamodule.prepare_data()
    datamodule.setup("fit")
    for split, dataset in zip(SPLIT_SIZES, (datamodule.train_set, datamodule.val_set, datamodule.test_set)):
        assert len(dataset) == SPLIT_SIZES[split]
        xs, ys = zip(*(dataset[i] for i in range(len(dataset))))
        x, y = torch.stack(xs), torch.stack(ys)
        assert x.dtype == torch.float32 and x.shape == (SPLIT_SIZES[split], 1, 28, 28, 28)
        assert x.min() >= -1.0 and x.max() <= 1.0
        assert torch.equal(voxels(x)[:, 0], torch.from_numpy(arrays[f"{split}_images"]))  # the file's (D, H, W)
        assert y.dtype == torch.int64 and y.tolist() == arrays[f"{split}_labels"][:, 0].tolist()
    # 0 -> -1, 255 -> +1: a fixed map, the same at every resolution.
    first = datamodule.train_set[0][0]
    raw = torch.from_numpy(arrays["train_images"][0]).float()
    assert torch.allclose(first[0], raw / 127.5 - 1.0)
    train_set = datamodule.train_set
    datamodule.setup("test")  # a second call reads nothing again
    assert datamodule.train_set is train_set


def test_the_64_file_and_the_medmnist_package_root_are_found(tmp_path):
    _, arrays = write_medmnist3d(tmp_path, resolution=64)  # the package keeps its files directly in its root
    datamodule = organ(tmp_path, resolution=64)
    datamodule.prepare_data()
    datamodule.setup()
    assert datamodule.locate().root == tmp_path
    assert torch.equal(voxels(datamodule.test_set[5][0])[0], torch.from_numpy(arrays["test_images"][5]))


def test_labels_stored_flat_are_read_too(tmp_path):
    labels = np.arange(SPLIT_SIZES["val"], dtype=np.int64)
    write_medmnist3d(tmp_path / "MedMNIST", val_labels=labels)
    datamodule = organ(tmp_path)
    datamodule.setup()
    assert [int(datamodule.val_set[i][1]) for i in range(4)] == [0, 1, 2, 3]


# ------------------------------------------------------------------------------------------------------- errors
def test_missing_file_names_every_place_searched_and_the_url(tmp_path):
    datamodule = organ(tmp_path / "data")
    with pytest.raises(DataError) as info:
        datamodule.prepare_data()
    message = str(info.value)
    assert str(tmp_path / "data" / "MedMNIST") in message and "organmnist3d.npz" in message
    assert "https://zenodo.org/records/10519652/files/organmnist3d.npz" in message
    assert not (tmp_path / "data").exists()


def test_missing_64_file_names_its_own_download(tmp_path):
    with pytest.raises(DataError, match=r"organmnist3d_64\.npz\?download=1 \(md5 58a2205adf14a9d0a189cb06dc78bf10\)"):
        organ(tmp_path, resolution=64).setup()


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ({"val_labels": None}, "no array 'val_labels'"),
        ({"test_images": np.zeros((6, 64, 64, 64), np.uint8)}, r"test_images has shape \(6, 64, 64, 64\)"),
        ({"train_images": np.zeros((12, 28, 28, 28), np.float32)}, "train_images is float32, expected uint8"),
        ({"train_labels": np.zeros((11, 1), np.uint8)}, r"train_labels has shape \(11, 1\) for 12 volumes"),
        ({"test_labels": np.full((6, 1), 11, np.uint8)}, r"test_labels span \[11, 11\], expected \[0, 10\]"),
        ({"val_labels": np.zeros((4, 1), np.float64)}, "val_labels is float64, expected integers"),
    ],
)
def test_a_broken_file_raises_data_error_naming_the_file_and_the_fix(tmp_path, damage, expected):
    path, _ = write_medmnist3d(tmp_path / "MedMNIST", **damage)
    with pytest.raises(DataError, match=expected) as info:
        organ(tmp_path).setup()
    assert str(path) in str(info.value) and "dataset.download=True" in str(info.value)


def test_a_truncated_file_raises_data_error_naming_it(tmp_path):
    path, _ = write_medmnist3d(tmp_path / "MedMNIST")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match="Corrupt MedMNIST file") as info:
        organ(tmp_path).setup()
    assert str(path) in str(info.value)


def test_a_corrupt_member_is_found_when_the_data_is_read(tmp_path):
    path, _ = write_medmnist3d(tmp_path / "MedMNIST")
    raw = bytearray(path.read_bytes())
    middle = len(raw) // 2  # inside the compressed volumes, past every header
    raw[middle : middle + 64] = bytes(64)
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"cannot read its arrays") as info:
        organ(tmp_path).setup()
    assert str(path) in str(info.value)


# ----------------------------------------------------------------------------------------------------- download
def test_download_fetches_the_file_once_and_verifies_it(tmp_path, monkeypatch):
    path, _ = write_medmnist3d(tmp_path / "served", flag="nodulemnist3d", num_classes=2)
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    cls = datamodule_class("NoduleMNIST3D")
    monkeypatch.setattr(cls, "md5", {28: md5, 64: "0" * 32})
    with local_http_server(tmp_path / "served") as server:
        monkeypatch.setattr(MedMNIST3DDataModule, "base_url", f"{server.url}/")
        datamodule = cls(data_dir=tmp_path / "data", num_workers=0, download=True)
        datamodule.prepare_data()
        datamodule.prepare_data()  # present: no second request
        assert server.requests == ["/nodulemnist3d.npz?download=1"]
    assert (tmp_path / "data" / "MedMNIST" / "nodulemnist3d.npz").read_bytes() == path.read_bytes()
    datamodule.setup()
    assert len(datamodule.test_set) == SPLIT_SIZES["test"]


def test_download_with_the_wrong_checksum_keeps_nothing(tmp_path, monkeypatch):
    write_medmnist3d(tmp_path / "served")
    with local_http_server(tmp_path / "served") as server:
        monkeypatch.setattr(MedMNIST3DDataModule, "base_url", f"{server.url}/")
        with pytest.raises(DataError, match="checksum"):
            organ(tmp_path / "data", download=True).prepare_data()
    assert not (tmp_path / "data").exists()  # not even the folders the download made


# ------------------------------------------------------------------------------------------------- main.py runs
SHORT_RUN = [
    "experiment=organmnist3d/ccnn_4_140",
    "net.no_hidden=8",
    "net.no_blocks=1",
    "kernel.no_hidden=8",
    "train.epochs=1",
    "train.batch_size=4",
    "no_workers=0",
    "dataset.download=False",
]


@pytest.mark.slow
def test_the_3d_preset_trains_through_main_py_on_npz_files(tmp_path):
    write_medmnist3d(tmp_path / "data" / "MedMNIST")
    result = run_main(*SHORT_RUN, "dataset.data_dir=data", "train.output_dir=run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    final = [line for line in result.stdout.splitlines() if line.startswith("Final:")]
    assert len(final) == 1 and "test/acc=" in final[0] and "val/acc=" in final[0]
    run = tmp_path / "run"
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "checkpoints" / "best.ckpt").is_file()
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    mask_widths = [v for k, v in checkpoint["state_dict"].items() if k.endswith("mask.width")]
    assert len(mask_widths) == 2 and all(w.shape == (3,) for w in mask_widths)  # stem + 1 block, one width per axis
    assert (run / "config.yaml").read_text().count("name: OrganMNIST3D") == 1


def test_main_py_without_the_data_refuses_in_one_line_and_writes_nothing(tmp_path):
    result = run_main(*SHORT_RUN, "dataset.data_dir=data", "train.output_dir=run", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: OrganMNIST3D data not found under ")
    assert str(tmp_path / "data" / "MedMNIST") in lines[0] and "organmnist3d.npz" in lines[0]
    assert not any(tmp_path.iterdir())
