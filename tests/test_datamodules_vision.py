"""MNIST, CIFAR-10/100 and STL-10 datamodules on tiny files written in the real on-disk formats."""

from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest
import torch

from datamodules.base import DataError, DataMeta
from datamodules.cifar import CIFAR10DataModule, CIFAR100DataModule
from datamodules.download import file_md5
from datamodules.mnist import MNISTDataModule
from datamodules.stl10 import STL10DataModule
from datamodules.vision import symmetric_pad
from tests.fixtures.vision_files import (
    local_http_server,
    make_dataset_archive,
    write_cifar10,
    write_cifar100,
    write_mnist,
    write_stl10,
)

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)


def unnormalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """Undo Normalize on a (C, ...) tensor and return values on the 0..255 scale."""
    shape = (-1,) + (1,) * (x.ndim - 1)
    return (x * torch.tensor(std).view(shape) + torch.tensor(mean).view(shape)) * 255


def dm_kwargs(tmp_path, **kwargs):
    return {"data_dir": tmp_path, "batch_size": 4, "num_workers": 0, "download": False, **kwargs}


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnist")
    return root, write_mnist(root, n_train=50, n_test=20)


@pytest.fixture(scope="module")
def cifar10_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar10")
    return root, write_cifar10(root, n_per_batch=8, n_test=10)


@pytest.fixture(scope="module")
def stl10_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("stl10")
    return root, write_stl10(root, n_train=20, n_test=10)


# ---------------------------------------------------------------------------------------------- metadata
@pytest.mark.parametrize(
    ("cls", "kwargs", "meta"),
    [
        (MNISTDataModule, {}, DataMeta(2, 1, 10, (28, 28))),
        (MNISTDataModule, {"data_type": "sequence", "permuted": True}, DataMeta(1, 1, 10, (784,))),
        (CIFAR10DataModule, {}, DataMeta(2, 3, 10, (32, 32))),
        (CIFAR10DataModule, {"data_type": "sequence", "grayscale": True}, DataMeta(1, 1, 10, (1024,))),
        (CIFAR100DataModule, {"data_type": "sequence"}, DataMeta(1, 3, 100, (1024,))),
        (STL10DataModule, {}, DataMeta(2, 3, 10, (96, 96))),
        (STL10DataModule, {"resolution": 64}, DataMeta(2, 3, 10, (64, 64))),
    ],
)
def test_meta_comes_from_arguments_without_touching_disk(tmp_path, cls, kwargs, meta):
    dm = cls(data_dir=tmp_path / "absent", batch_size=2, **kwargs)
    assert dm.meta == meta
    assert not (tmp_path / "absent").exists()


@pytest.mark.parametrize(
    ("cls", "kwargs", "argument"),
    [
        (MNISTDataModule, {"data_type": "image"}, "data_type"),
        (MNISTDataModule, {"permuted": True}, "permuted"),
        (MNISTDataModule, {"augment": True}, "augment"),
        (CIFAR10DataModule, {"data_type": "pointcloud"}, "data_type"),
        (CIFAR100DataModule, {"grayscale": True}, "grayscale"),
        (STL10DataModule, {"resolution": 0}, "resolution"),
    ],
)
def test_invalid_argument_combinations_are_refused_by_name(tmp_path, cls, kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        cls(data_dir=tmp_path, batch_size=2, **kwargs)


def test_symmetric_pad_matches_numpy():
    x = torch.arange(2 * 5 * 6, dtype=torch.float32).view(2, 5, 6)
    expected = np.pad(x.numpy(), ((0, 0), (3, 3), (3, 3)), mode="symmetric")
    assert torch.equal(symmetric_pad(x, 3), torch.from_numpy(expected))


# ------------------------------------------------------------------------------------------------------ MNIST
def test_mnist_images_labels_and_splits_match_the_files(mnist_dir):
    root, written = mnist_dir
    dm = MNISTDataModule(**dm_kwargs(root, val_size=10))
    dm.prepare_data()
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (40, 10, 20)
    x, y = dm.test_set[3]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    torch.testing.assert_close(unnormalize(x, (0.1307,), (0.3081,)), torch.from_numpy(written.test_images[3]).float())
    assert int(y) == written.test_labels[3]
    # Train and val partition the training file.
    indices = sorted(dm.train_set.indices + dm.val_set.indices)
    assert indices == list(range(50))
    xv, yv = dm.val_set[0]
    source = dm.val_set.indices[0]
    torch.testing.assert_close(
        unnormalize(xv, (0.1307,), (0.3081,)), torch.from_numpy(written.train_images[source]).float()
    )
    assert int(yv) == written.train_labels[source]
    xb, yb = next(iter(dm.train_dataloader()))
    assert xb.shape == (4, 1, 28, 28) and yb.shape == (4,) and yb.dtype == torch.int64
    assert int(yb.min()) >= 0 and int(yb.max()) < 10


def test_mnist_split_is_a_function_of_the_seed(mnist_dir):
    root, _ = mnist_dir
    splits = []
    for seed in (0, 0, 1):
        dm = MNISTDataModule(**dm_kwargs(root, val_size=10, seed=seed))
        dm.setup("fit")
        splits.append(dm.val_set.indices)
    assert splits[0] == splits[1] and splits[0] != splits[2]


def test_mnist_sequence_is_the_row_major_image(mnist_dir):
    root, _ = mnist_dir
    image = MNISTDataModule(**dm_kwargs(root, val_size=10))
    sequence = MNISTDataModule(**dm_kwargs(root, val_size=10, data_type="sequence"))
    image.setup("test")
    sequence.setup("test")
    assert sequence.test_set[0][0].shape == (1, 784)
    assert torch.equal(sequence.test_set[0][0], image.test_set[0][0].reshape(1, 784))


def test_mnist_permutation_is_a_fixed_function_of_the_seed(mnist_dir):
    root, _ = mnist_dir
    kwargs = dm_kwargs(root, val_size=10, data_type="sequence")
    plain = MNISTDataModule(**kwargs, seed=3)  # same split as perm_a
    perm_a = MNISTDataModule(**kwargs, permuted=True, seed=3)
    perm_b = MNISTDataModule(**kwargs, permuted=True, seed=3)
    perm_c = MNISTDataModule(**kwargs, permuted=True, seed=4)
    assert torch.equal(perm_a.permutation(), perm_b.permutation())
    assert not torch.equal(perm_a.permutation(), perm_c.permutation())
    assert sorted(perm_a.permutation().tolist()) == list(range(784))
    assert plain.permutation() is None
    for dm in (plain, perm_a):
        dm.setup()
    order = perm_a.permutation()
    x_plain, x_perm = plain.test_set[5][0], perm_a.test_set[5][0]
    assert torch.equal(x_perm, x_plain[:, order])
    assert not torch.equal(x_perm, x_plain)
    # The same permutation for every split and every access.
    assert torch.equal(perm_a.val_set[0][0], plain.val_set[0][0][:, order])


def test_mnist_missing_folder_raises_data_error_naming_the_path(tmp_path):
    dm = MNISTDataModule(**dm_kwargs(tmp_path))
    dm.prepare_data()  # download=False: nothing to do
    with pytest.raises(DataError) as info:
        dm.setup()
    message = str(info.value)
    assert str(tmp_path / "MNIST") in message and "download=True" in message


@pytest.mark.parametrize("damage", ["truncated_gz", "bad_magic", "short_payload"])
def test_mnist_corrupt_file_raises_data_error_naming_the_path(tmp_path, damage):
    written = write_mnist(tmp_path, n_train=20, n_test=5)
    path = written.folder / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    if damage == "truncated_gz":
        path.write_bytes(path.read_bytes()[:-100])
    elif damage == "bad_magic":
        path.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + raw[4:]))
    else:
        path.write_bytes(gzip.compress(raw[:-28]))
    dm = MNISTDataModule(**dm_kwargs(tmp_path, val_size=5))
    with pytest.raises(DataError, match="Corrupt MNIST file") as info:
        dm.setup("fit")
    assert str(path) in str(info.value)


def test_mnist_label_out_of_range_raises_data_error(tmp_path):
    written = write_mnist(tmp_path, n_train=20, n_test=5)
    path = written.folder / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + bytes([1, 2, 3, 4, 10])))
    with pytest.raises(DataError, match="labels") as info:
        MNISTDataModule(**dm_kwargs(tmp_path, val_size=5)).setup("test")
    assert str(path) in str(info.value)


def test_mnist_download_fetches_files_from_the_next_mirror(tmp_path, monkeypatch):
    served = tmp_path / "served"
    written = write_mnist(served, n_train=20, n_test=5)
    monkeypatch.setattr(MNISTDataModule, "resources", {p.name: file_md5(p) for p in written.files})
    with local_http_server(served) as server:
        monkeypatch.setattr(MNISTDataModule, "mirrors", (f"{server.url}/gone/", f"{server.url}/MNIST/"))
        dm = MNISTDataModule(**dm_kwargs(tmp_path / "data", val_size=5, download=True))
        dm.prepare_data()
        assert len([r for r in server.requests if r.startswith("/MNIST/")]) == 4
        dm.prepare_data()  # files present: no request
        assert len(server.requests) == 8
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (15, 5, 5)
    for path in written.files:
        assert (tmp_path / "data" / "MNIST" / path.name).read_bytes() == path.read_bytes()


def test_mnist_download_with_wrong_checksum_raises_and_keeps_nothing(tmp_path, monkeypatch):
    served = tmp_path / "served"
    write_mnist(served, n_train=20, n_test=5)
    with local_http_server(served) as server:
        monkeypatch.setattr(MNISTDataModule, "mirrors", (f"{server.url}/MNIST/",))
        dm = MNISTDataModule(**dm_kwargs(tmp_path / "data", download=True))
        with pytest.raises(DataError, match="checksum"):
            dm.prepare_data()
    assert list((tmp_path / "data" / "MNIST").iterdir()) == []


# ------------------------------------------------------------------------------------------------------ CIFAR
def test_cifar10_images_labels_and_splits_match_the_files(cifar10_dir):
    root, written = cifar10_dir
    dm = CIFAR10DataModule(**dm_kwargs(root, val_size=8))
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (32, 8, 10)
    x, y = dm.test_set[2]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    torch.testing.assert_close(
        unnormalize(x, CIFAR10_MEAN, CIFAR10_STD),
        torch.from_numpy(written.test_images[2]).float(),
        atol=1e-3,
        rtol=0,
    )
    assert int(y) == written.test_labels[2]
    # Training images come from all five batches, in order.
    source = dm.train_set.indices[0]
    x, y = dm.train_set[0]
    torch.testing.assert_close(
        unnormalize(x, CIFAR10_MEAN, CIFAR10_STD),
        torch.from_numpy(written.train_images[source]).float(),
        atol=1e-3,
        rtol=0,
    )
    assert int(y) == written.train_labels[source]


def test_cifar10_sequence_flattens_each_channel(cifar10_dir):
    root, written = cifar10_dir
    dm = CIFAR10DataModule(**dm_kwargs(root, val_size=8, data_type="sequence"))
    dm.setup("test")
    x, _ = dm.test_set[0]
    assert x.shape == (3, 1024)
    expected = torch.from_numpy(written.test_images[0]).float().reshape(3, 1024)
    torch.testing.assert_close(unnormalize(x, CIFAR10_MEAN, CIFAR10_STD), expected, atol=1e-3, rtol=0)


def test_cifar10_grayscale_is_the_luma_of_the_image(cifar10_dir):
    root, written = cifar10_dir
    dm = CIFAR10DataModule(**dm_kwargs(root, val_size=8, data_type="sequence", grayscale=True))
    dm.setup("test")
    x, _ = dm.test_set[1]
    assert x.shape == (1, 1024)
    r, g, b = torch.from_numpy(written.test_images[1]).double()
    luma = (0.299 * r + 0.587 * g + 0.114 * b).reshape(1, 1024)
    torch.testing.assert_close(unnormalize(x.double(), (122.6 / 255,), (61 / 255,)), luma, atol=1e-3, rtol=0)


def test_cifar10_augmentation_reaches_training_but_never_validation(cifar10_dir):
    root, written = cifar10_dir
    dm = CIFAR10DataModule(**dm_kwargs(root, val_size=8, augment=True))
    dm.setup()
    torch.manual_seed(0)
    # Validation: identical on every access and equal to the stored image.
    first, second = dm.val_set[0][0], dm.val_set[0][0]
    assert torch.equal(first, second)
    source = dm.val_set.indices[0]
    torch.testing.assert_close(
        unnormalize(first, CIFAR10_MEAN, CIFAR10_STD),
        torch.from_numpy(written.train_images[source]).float(),
        atol=1e-3,
        rtol=0,
    )
    # Training: random crops and flips of the padded image.
    draws = [dm.train_set[0][0] for _ in range(10)]
    assert any(not torch.equal(draws[0], d) for d in draws[1:])
    assert all(d.shape == (3, 32, 32) for d in draws)
    # Test set: no augmentation either.
    assert torch.equal(dm.test_set[0][0], dm.test_set[0][0])


def test_cifar100_reads_fine_labels(tmp_path):
    written = write_cifar100(tmp_path, n_train=30, n_test=10)
    dm = CIFAR100DataModule(**dm_kwargs(tmp_path, val_size=5))
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (25, 5, 10)
    labels = torch.stack([dm.test_set[i][1] for i in range(10)])
    assert labels.tolist() == written.test_labels.tolist()
    assert int(written.train_labels.max()) >= 10  # labels span beyond CIFAR-10's range
    x, _ = dm.test_set[4]
    torch.testing.assert_close(
        unnormalize(x, (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
        torch.from_numpy(written.test_images[4]).float(),
        atol=1e-3,
        rtol=0,
    )


def test_cifar_missing_folder_raises_data_error_naming_the_path_and_url(tmp_path):
    with pytest.raises(DataError) as info:
        CIFAR10DataModule(**dm_kwargs(tmp_path)).setup()
    message = str(info.value)
    assert str(tmp_path / "CIFAR10") in message and "cifar-10-python.tar.gz" in message


def test_cifar_truncated_batch_raises_data_error_naming_the_path(tmp_path):
    written = write_cifar10(tmp_path, n_per_batch=4, n_test=4)
    path = written.files[2]
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match="Corrupt CIFAR file") as info:
        CIFAR10DataModule(**dm_kwargs(tmp_path, val_size=4)).setup("fit")
    assert str(path) in str(info.value)


def test_cifar_batch_with_code_in_it_is_refused(tmp_path):
    written = write_cifar10(tmp_path, n_per_batch=4, n_test=4)

    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    written.files[-1].write_bytes(pickle.dumps({b"data": Payload(), b"labels": [0]}, protocol=2))
    with pytest.raises(DataError, match="not allowed"):
        CIFAR10DataModule(**dm_kwargs(tmp_path, val_size=4)).setup("test")


def test_cifar_batch_with_wrong_shape_raises_data_error(tmp_path):
    written = write_cifar10(tmp_path, n_per_batch=4, n_test=4)
    written.files[-1].write_bytes(pickle.dumps({b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}))
    with pytest.raises(DataError, match="3072") as info:
        CIFAR10DataModule(**dm_kwargs(tmp_path, val_size=4)).setup("test")
    assert str(written.files[-1]) in str(info.value)


@pytest.mark.parametrize("cls", [CIFAR10DataModule, CIFAR100DataModule])
def test_cifar_download_fetches_and_extracts_the_archive(tmp_path, monkeypatch, cls):
    writer = write_cifar10 if cls is CIFAR10DataModule else write_cifar100
    written = writer(tmp_path / "staging")
    served = tmp_path / "served"
    archive = make_dataset_archive(written, served / cls.archive)
    monkeypatch.setattr(cls, "archive_md5", file_md5(archive))
    with local_http_server(served) as server:
        monkeypatch.setattr(cls, "mirrors", (f"{server.url}/",))
        dm = cls(**dm_kwargs(tmp_path / "data", val_size=5, download=True))
        dm.prepare_data()
        dm.prepare_data()
        assert server.requests == [f"/{cls.archive}"]
    dm.setup()
    assert len(dm.train_set) + len(dm.val_set) == len(written.train_labels)
    assert torch.stack([dm.test_set[i][1] for i in range(len(dm.test_set))]).tolist() == written.test_labels.tolist()
    assert not list((tmp_path / "data").glob(".*extracting*"))


# ---------------------------------------------------------------------------------------------------- STL-10
STL_MEAN, STL_STD = (0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713)


def test_stl10_reads_column_major_planes_and_shifts_labels(stl10_dir):
    root, written = stl10_dir
    dm = STL10DataModule(**dm_kwargs(root, val_size=5))
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (15, 5, 10)
    x, _ = dm.test_set[7]
    assert x.shape == (3, 96, 96) and x.dtype == torch.float32
    torch.testing.assert_close(
        unnormalize(x, STL_MEAN, STL_STD), torch.from_numpy(written.test_images[7]).float(), atol=1e-3, rtol=0
    )
    assert torch.stack([dm.test_set[i][1] for i in range(10)]).tolist() == written.test_labels.tolist()
    assert int(written.test_labels.min()) >= 0 and int(written.test_labels.max()) <= 9


def test_stl10_resolution_resizes_and_augmentation_spares_validation(stl10_dir):
    root, written = stl10_dir
    dm = STL10DataModule(**dm_kwargs(root, val_size=5, resolution=32, augment=True))
    dm.setup()
    x, _ = dm.val_set[0]
    assert x.shape == (3, 32, 32)
    assert torch.equal(x, dm.val_set[0][0])
    # A constant-colour check of the resize: the mean survives downsampling.
    source = dm.val_set.indices[0]
    expected_mean = torch.from_numpy(written.train_images[source]).float().mean(dim=(1, 2))
    torch.testing.assert_close(unnormalize(x, STL_MEAN, STL_STD).mean(dim=(1, 2)), expected_mean, atol=0.5, rtol=0)
    torch.manual_seed(0)
    draws = [dm.train_set[0][0] for _ in range(6)]
    assert all(d.shape == (3, 32, 32) for d in draws)
    assert any(not torch.equal(draws[0], d) for d in draws[1:])


def test_stl10_split_is_seeded(stl10_dir):
    root, _ = stl10_dir
    a, b = (STL10DataModule(**dm_kwargs(root, val_size=5, seed=7)) for _ in range(2))
    a.setup("fit")
    b.setup("fit")
    assert a.val_set.indices == b.val_set.indices


@pytest.mark.parametrize("damage", ["size", "label_zero", "count"])
def test_stl10_corrupt_files_raise_data_error_naming_the_path(tmp_path, damage):
    written = write_stl10(tmp_path, n_train=6, n_test=4)
    x_path, y_path = written.files[0], written.files[1]
    if damage == "size":
        x_path.write_bytes(x_path.read_bytes()[:-5])
        path = x_path
    elif damage == "label_zero":
        y_path.write_bytes(bytes([0]) + y_path.read_bytes()[1:])
        path = y_path
    else:
        y_path.write_bytes(y_path.read_bytes()[:-1])
        path = y_path
    with pytest.raises(DataError) as info:
        STL10DataModule(**dm_kwargs(tmp_path, val_size=2)).setup("fit")
    assert str(path) in str(info.value)


def test_stl10_download_fetches_and_extracts_the_archive(tmp_path, monkeypatch):
    written = write_stl10(tmp_path / "staging", n_train=6, n_test=4)
    served = tmp_path / "served"
    archive = make_dataset_archive(written, served / STL10DataModule.archive)
    monkeypatch.setattr(STL10DataModule, "archive_md5", file_md5(archive))
    with local_http_server(served) as server:
        monkeypatch.setattr(STL10DataModule, "mirrors", (f"{server.url}/",))
        dm = STL10DataModule(**dm_kwargs(tmp_path / "data", val_size=2, download=True))
        dm.prepare_data()
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (4, 2, 4)
    torch.testing.assert_close(
        unnormalize(dm.test_set[0][0], STL_MEAN, STL_STD),
        torch.from_numpy(written.test_images[0]).float(),
        atol=1e-3,
        rtol=0,
    )
