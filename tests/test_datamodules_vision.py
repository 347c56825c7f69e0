"""MNIST, CIFAR-10/100 and STL-10 datamodules on tiny files written in torchvision's layout and the real formats."""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as transforms_v1
from torchvision.datasets import CIFAR10, CIFAR100, MNIST, STL10
from torchvision.transforms import v2

from argcheck import InvalidArgument
from datamodules.base import DataError, DataMeta
from datamodules.cifar import CIFAR10DataModule, CIFAR100DataModule
from datamodules.download import file_digest
from datamodules.mnist import MNISTDataModule
from datamodules.stl10 import STL10DataModule
from datamodules.vision import FIXTURE_CHECKSUMS, luma, scale_to_unit, with_fixture_checksums
from tests.fixtures.vision_files import (
    local_http_server,
    make_dataset_archive,
    register_fixture_checksums,
    write_cifar10,
    write_cifar100,
    write_cifar_batch,
    write_mnist,
    write_stl10,
)

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)
STL_MEAN, STL_STD = (0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713)


def unnormalize(x: torch.Tensor, mean, std, spatial: int = 2) -> torch.Tensor:
    """Undo Normalize on a ``([N,] C, *spatial)`` tensor and return values on the 0..255 scale."""
    shape = (-1,) + (1,) * spatial
    return (x * torch.tensor(std).view(shape) + torch.tensor(mean).view(shape)) * 255


def dm_kwargs(tmp_path, **kwargs):
    return {"data_dir": tmp_path, "batch_size": 4, "num_workers": 0, "download": False, **kwargs}


def stack(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*(dataset[i] for i in range(len(dataset))))
    return torch.stack(xs), torch.stack(ys)


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
        (CIFAR10DataModule, {"val_size": 0}, "val_size"),
        (CIFAR10DataModule, {"batch_size": 2.0}, "batch_size"),
        (MNISTDataModule, {"test_batch_size": 0}, "test_batch_size"),
        (STL10DataModule, {"augment": "yes"}, "augment"),
    ],
)
def test_invalid_argument_combinations_are_refused_by_name(tmp_path, cls, kwargs, argument):
    with pytest.raises(InvalidArgument) as refused:
        cls(data_dir=tmp_path, **{"batch_size": 2, **kwargs})
    assert refused.value.argument == argument


# ------------------------------------------------------------------------ the steps transforms.v2 lacks
def test_scale_to_unit_divides_like_to_tensor_where_v2_to_dtype_is_one_ulp_off():
    image = torch.arange(256, dtype=torch.uint8).view(1, 16, 16)
    ours = scale_to_unit(image.clone())
    original = transforms_v1.ToTensor()(image.permute(1, 2, 0).numpy())  # what the original CCNN code ran
    assert torch.equal(ours, original)
    v2_scaled = v2.ToDtype(torch.float32, scale=True)(image)
    differing = int((v2_scaled != ours).sum())
    assert differing == 126 and float((v2_scaled - ours).abs().max()) < 1e-7


def test_luma_weighs_red_by_0_299_where_v2_grayscale_uses_0_2989():
    rgb = torch.rand(3, 5, 7, generator=torch.Generator().manual_seed(0))
    expected = (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]).unsqueeze(0)
    assert torch.equal(luma(rgb), expected)
    assert not torch.allclose(v2.Grayscale()(rgb), expected, rtol=0, atol=1e-6)
    # PIL's integer conversion uses the same weights (rounded to integers).
    pixels = (rgb * 255).round().to(torch.uint8)
    pil = np.asarray(Image.fromarray(pixels.permute(1, 2, 0).numpy()).convert("L"), dtype=np.float64)
    assert np.abs(pil - luma(pixels.double())[0].numpy()).max() <= 0.5 + 1e-9


def test_augmented_images_are_crops_of_the_symmetric_padding_possibly_flipped(cifar10_dir):
    root, written = cifar10_dir
    dm = CIFAR10DataModule(**dm_kwargs(root, val_size=8, augment=True))
    dm.setup()
    source = dm.train_set.indices[0]
    padded = np.pad(written.train_images[source], ((0, 0), (4, 4), (4, 4)), mode="symmetric")  # numpy's oracle
    candidates = {}
    for top in range(9):
        for left in range(9):
            crop = padded[:, top : top + 32, left : left + 32]
            candidates[(top, left, False)] = crop
            candidates[(top, left, True)] = crop[..., ::-1]
    torch.manual_seed(0)
    seen = set()
    for _ in range(60):
        x = unnormalize(dm.train_set[0][0], CIFAR10_MEAN, CIFAR10_STD).round().to(torch.uint8).numpy()
        matches = [key for key, crop in candidates.items() if np.array_equal(crop, x)]
        assert matches, "an augmented image is not a (flipped) crop of the symmetric padding"
        seen.update(matches)
    assert len({key[:2] for key in seen}) > 20 and {key[2] for key in seen} == {False, True}


# ------------------------------------------------------------------------------------------------------ MNIST
def test_mnist_images_labels_and_splits_match_the_files(mnist_dir):
    root, written = mnist_dir
    dm = MNISTDataModule(**dm_kwargs(root, val_size=10))
    dm.prepare_data()
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (40, 10, 20)
    x, y = stack(dm.test_set)
    assert x.shape == (20, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    torch.testing.assert_close(unnormalize(x, (0.1307,), (0.3081,)), torch.from_numpy(written.test_images).float())
    assert y.tolist() == written.test_labels.tolist()
    # Train and val partition the training file.
    assert sorted(dm.train_set.indices + dm.val_set.indices) == list(range(50))
    x_val, y_val = stack(dm.val_set)
    sources = dm.val_set.indices
    torch.testing.assert_close(
        unnormalize(x_val, (0.1307,), (0.3081,)), torch.from_numpy(written.train_images[sources]).float()
    )
    assert y_val.tolist() == written.train_labels[sources].tolist()
    xb, yb = next(iter(dm.train_dataloader()))
    assert xb.shape == (4, 1, 28, 28) and yb.dtype == torch.int64


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
    image.setup()
    sequence.setup()
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


@pytest.mark.parametrize("layout", ["legacy", "earlier"])
def test_mnist_older_layouts_give_the_same_tensors(tmp_path, mnist_dir, layout):
    """torchvision before 0.9 kept ``MNIST/processed/{training,test}.pt`` (torchvision still reads them); the
    project's earlier readers kept the downloaded ``MNIST/*-ubyte.gz`` (decompressed to a temporary folder here)."""
    root, _ = mnist_dir
    written = write_mnist(tmp_path, n_train=50, n_test=20, layout=layout)  # the same images as mnist_dir's
    reference, dm = (MNISTDataModule(**dm_kwargs(folder, val_size=10)) for folder in (root, tmp_path))
    dm.prepare_data()
    for module in (reference, dm):
        module.setup()
    assert dm.locate().root == written.folder
    for split in ("train_set", "val_set", "test_set"):
        for a, b in zip(stack(getattr(reference, split)), stack(getattr(dm, split))):
            assert torch.equal(a, b)
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == sorted(written.files)  # nothing decompressed here


def test_mnist_reads_the_layout_it_found_when_processed_files_lie_next_to_raw_ones(tmp_path):
    """torchvision's MNIST prefers processed/ over raw/; the layout found first (raw/) is the one read."""
    write_mnist(tmp_path, n_train=50, n_test=20, seed=1, layout="legacy")  # other images and labels
    written = write_mnist(tmp_path, n_train=50, n_test=20)
    dm = MNISTDataModule(**dm_kwargs(tmp_path, val_size=10))
    dm.setup()
    assert dm.locate().root == tmp_path / "MNIST" / "raw"
    assert stack(dm.test_set)[1].tolist() == written.test_labels.tolist()


def test_mnist_missing_folder_lists_the_layouts_searched_and_the_exact_paths(tmp_path):
    dm = MNISTDataModule(**dm_kwargs(tmp_path))
    with pytest.raises(DataError) as info:
        dm.prepare_data()
    message = str(info.value)
    assert "\n" not in message
    assert f"torchvision (also the original CCNN code's) layout at {tmp_path / 'MNIST' / 'raw'}" in message
    assert "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte" in message
    assert f"torchvision before 0.9 layout at {tmp_path / 'MNIST' / 'processed'}: expects training.pt" in message
    assert f"the project's earlier layout at {tmp_path / 'MNIST'}: expects train-images-idx3-ubyte.gz" in message
    assert f"python -m datamodules.prepare MNIST --data-dir {tmp_path}" in message
    assert "dataset.download=True" in message
    with pytest.raises(DataError, match="MNIST data not found"):
        dm.setup()
    assert list(tmp_path.iterdir()) == []


def test_mnist_partial_copy_is_named_file_by_file(tmp_path):
    written = write_mnist(tmp_path, n_train=20, n_test=5)
    written.files[2].unlink()
    with pytest.raises(
        DataError, match=r"raw: expects .*; missing t10k-images-idx3-ubyte \| the torchvision before 0.9"
    ):
        MNISTDataModule(**dm_kwargs(tmp_path, val_size=5)).prepare_data()


@pytest.mark.parametrize("damage", ["truncated", "wrong_dimensions", "short_payload"])
def test_mnist_corrupt_file_raises_data_error_naming_the_path(tmp_path, damage):
    written = write_mnist(tmp_path, n_train=20, n_test=5)
    path = written.files[0]  # train-images-idx3-ubyte
    raw = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(raw[:100])
    elif damage == "wrong_dimensions":
        path.write_bytes(b"\x00\x00\x08\x01" + raw[4:])
    else:
        path.write_bytes(raw[:-28])
    dm = MNISTDataModule(**dm_kwargs(tmp_path, val_size=5))
    with pytest.raises(DataError, match="MNIST train data: cannot read") as info:
        dm.setup()
    assert str(path) in str(info.value) and "python -m datamodules.prepare MNIST" in str(info.value)


def test_mnist_label_out_of_range_raises_data_error(tmp_path):
    written = write_mnist(tmp_path, n_train=20, n_test=5)
    path = written.files[3]
    path.write_bytes(b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + bytes([1, 2, 3, 4, 10]))
    with pytest.raises(DataError, match=r"MNIST test labels in .* span \[1, 10\], expected \[0, 9\]") as info:
        MNISTDataModule(**dm_kwargs(tmp_path, val_size=5)).setup()
    assert str(path) in str(info.value)


def test_mnist_images_of_another_size_are_refused(tmp_path):
    written = write_mnist(tmp_path, n_train=20, n_test=5)
    images = np.zeros((5, 20, 20), np.uint8)
    header = bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in images.shape)
    written.files[2].write_bytes(header + images.tobytes())
    with pytest.raises(DataError, match=r"5 images of shape \(1, 20, 20\).* expected images of shape \(1, 28, 28\)"):
        MNISTDataModule(**dm_kwargs(tmp_path, val_size=5)).setup()


def _serve_mnist(tmp_path, monkeypatch, server_url: str, written, md5s=None):
    resources = [(f"{p.name}.gz", (md5s or {}).get(p.name, file_digest(f"{p}.gz", "md5"))) for p in written.files]
    monkeypatch.setattr(MNIST, "resources", resources)
    monkeypatch.setattr(MNIST, "mirrors", [f"{server_url}/gone/", f"{server_url}/MNIST/raw/"])


def test_mnist_download_tries_the_next_mirror_and_fills_torchvision_layout(tmp_path, monkeypatch):
    served = tmp_path / "served"
    written = write_mnist(served, n_train=20, n_test=5)
    with local_http_server(served) as server:
        _serve_mnist(tmp_path, monkeypatch, server.url, written)
        dm = MNISTDataModule(**dm_kwargs(tmp_path / "data", val_size=5, download=True))
        dm.prepare_data()
        assert len([r for r in server.requests if r.startswith("/MNIST/")]) == 4
        dm.prepare_data()  # files present: no request
        assert len(server.requests) == 8
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (15, 5, 5)
    for path in written.files:  # torchvision's layout: the decompressed file and the downloaded .gz
        copy = tmp_path / "data" / "MNIST" / "raw" / path.name
        assert copy.read_bytes() == path.read_bytes() and copy.with_name(f"{path.name}.gz").is_file()


def test_mnist_download_over_a_partial_copy_says_so_and_fetches_only_what_is_missing(tmp_path, monkeypatch, caplog):
    served = tmp_path / "served"
    written = write_mnist(served, n_train=20, n_test=5)
    data = tmp_path / "data"
    kept = data / "MNIST" / "raw" / written.files[0].name
    kept.parent.mkdir(parents=True)
    kept.write_bytes(written.files[0].read_bytes())
    with local_http_server(served) as server, caplog.at_level(logging.WARNING):
        _serve_mnist(tmp_path, monkeypatch, server.url, written)
        MNISTDataModule(**dm_kwargs(data, val_size=5, download=True)).prepare_data()
        assert sorted(r.rsplit("/", 1)[1] for r in server.requests if r.startswith("/MNIST/")) == sorted(
            f"{p.name}.gz" for p in written.files[1:]
        )
    assert "is incomplete (missing train-labels-idx1-ubyte, t10k-images-idx3-ubyte" in caplog.text
    assert str(kept.parent) in caplog.text


def test_mnist_download_into_a_folder_that_cannot_be_created_names_it_once(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError) as info:  # the data folder's parent is a file: no folder can be made there
        MNISTDataModule(**dm_kwargs(blocker / "data", download=True)).prepare_data()
    assert str(info.value).startswith(f"Cannot create {blocker / 'data' / 'MNIST' / 'raw'} to download ")
    assert str(info.value).endswith("Set dataset.data_dir to a writable folder.")


def test_mnist_download_with_wrong_checksum_raises_and_keeps_nothing(tmp_path, monkeypatch):
    served = tmp_path / "served"
    written = write_mnist(served, n_train=20, n_test=5)
    with local_http_server(served) as server:
        _serve_mnist(tmp_path, monkeypatch, server.url, written, md5s={p.name: "0" * 32 for p in written.files})
        dm = MNISTDataModule(**dm_kwargs(tmp_path / "data", download=True))
        with pytest.raises(DataError, match="checksum"):
            dm.prepare_data()
    assert not (tmp_path / "data").exists()  # not even the folders the download made


# ------------------------------------------------------------------------------------------------------ CIFAR
def test_cifar10_images_labels_and_splits_match_the_files(cifar10_dir):
    root, written = cifar10_dir
    dm = CIFAR10DataModule(**dm_kwargs(root, val_size=8))
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (32, 8, 10)
    x, y = stack(dm.test_set)
    assert x.shape == (10, 3, 32, 32) and x.dtype == torch.float32
    expected = torch.from_numpy(written.test_images).float()
    torch.testing.assert_close(unnormalize(x, CIFAR10_MEAN, CIFAR10_STD), expected, atol=1e-3, rtol=0)
    assert y.tolist() == written.test_labels.tolist()
    # Training images come from all five batches, in order.
    x, y = stack(dm.train_set)
    sources = dm.train_set.indices
    expected = torch.from_numpy(written.train_images[sources]).float()
    torch.testing.assert_close(unnormalize(x, CIFAR10_MEAN, CIFAR10_STD), expected, atol=1e-3, rtol=0)
    assert y.tolist() == written.train_labels[sources].tolist()


def test_cifar10_sequence_flattens_each_channel(cifar10_dir):
    root, written = cifar10_dir
    dm = CIFAR10DataModule(**dm_kwargs(root, val_size=8, data_type="sequence"))
    dm.setup()
    x, _ = dm.test_set[0]
    assert x.shape == (3, 1024)
    expected = torch.from_numpy(written.test_images[0]).float().reshape(3, 1024)
    torch.testing.assert_close(unnormalize(x, CIFAR10_MEAN, CIFAR10_STD, spatial=1), expected, atol=1e-3, rtol=0)


def test_cifar10_grayscale_is_the_luma_of_the_image(cifar10_dir):
    root, written = cifar10_dir
    dm = CIFAR10DataModule(**dm_kwargs(root, val_size=8, data_type="sequence", grayscale=True))
    dm.setup()
    x, _ = dm.test_set[1]
    assert x.shape == (1, 1024)
    r, g, b = torch.from_numpy(written.test_images[1]).double()
    expected_luma = (0.299 * r + 0.587 * g + 0.114 * b).reshape(1, 1024)
    torch.testing.assert_close(
        unnormalize(x.double(), (122.6 / 255,), (61 / 255,), spatial=1), expected_luma, atol=1e-3, rtol=0
    )


def test_cifar10_augmentation_reaches_training_but_never_validation(cifar10_dir):
    root, written = cifar10_dir
    dm = CIFAR10DataModule(**dm_kwargs(root, val_size=8, augment=True))
    dm.setup()
    torch.manual_seed(0)
    first, second = dm.val_set[0][0], dm.val_set[0][0]
    assert torch.equal(first, second)
    source = dm.val_set.indices[0]
    expected = torch.from_numpy(written.train_images[source]).float()
    torch.testing.assert_close(unnormalize(first, CIFAR10_MEAN, CIFAR10_STD), expected, atol=1e-3, rtol=0)
    draws = [dm.train_set[0][0] for _ in range(10)]
    assert any(not torch.equal(draws[0], d) for d in draws[1:])
    assert torch.equal(dm.test_set[0][0], dm.test_set[0][0])


def test_cifar100_reads_fine_labels(tmp_path):
    written = write_cifar100(tmp_path, n_train=30, n_test=10)
    dm = CIFAR100DataModule(**dm_kwargs(tmp_path, val_size=5))
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (25, 5, 10)
    x, y = stack(dm.test_set)
    assert y.tolist() == written.test_labels.tolist()
    assert int(written.train_labels.max()) >= 10  # labels span beyond CIFAR-10's range
    mean, std = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)
    torch.testing.assert_close(
        unnormalize(x, mean, std), torch.from_numpy(written.test_images).float(), atol=1e-3, rtol=0
    )


@pytest.mark.parametrize(
    ("cls", "writer", "folder"),
    [
        (CIFAR10DataModule, lambda root: write_cifar10(root, n_per_batch=2, n_test=4), "CIFAR10/cifar-10-batches-py"),
        (CIFAR100DataModule, lambda root: write_cifar100(root, n_train=10, n_test=4), "CIFAR100/cifar-100-python"),
        (STL10DataModule, lambda root: write_stl10(root, n_train=10, n_test=4), "STL10/stl10_binary"),
    ],
)
def test_the_projects_earlier_image_layout_gives_the_same_tensors(tmp_path, cls, writer, folder):
    """Before torchvision read the files, the project kept torchvision's folders one level down, in
    ``data_dir/<name>/``."""
    writer(tmp_path / "torchvision")
    writer(tmp_path / "earlier" / folder.split("/")[0])
    reference, dm = (cls(**dm_kwargs(tmp_path / layout, val_size=2)) for layout in ("torchvision", "earlier"))
    for module in (reference, dm):
        module.prepare_data()
        module.setup()
    assert dm.locate().root == tmp_path / "earlier" / folder and dm.locate().name == "project's earlier"
    for split in ("train_set", "val_set", "test_set"):
        for a, b in zip(stack(getattr(reference, split)), stack(getattr(dm, split))):
            assert torch.equal(a, b)


def test_cifar_missing_folder_names_the_exact_paths_and_the_archive(tmp_path):
    with pytest.raises(DataError) as info:
        CIFAR10DataModule(**dm_kwargs(tmp_path)).prepare_data()
    message = str(info.value)
    assert f"layout at {tmp_path / 'cifar-10-batches-py'}: expects data_batch_1" in message
    assert "test_batch, batches.meta; the folder does not exist" in message and CIFAR10.url in message


def test_cifar_published_checksums_stay_on_without_the_test_hook(cifar10_dir, monkeypatch):
    """The fixture files pass only because their digests are registered: without the hook, torchvision refuses them."""
    root, written = cifar10_dir
    monkeypatch.delenv(FIXTURE_CHECKSUMS)
    with pytest.raises(DataError, match="failed torchvision's MD5 check") as info:
        CIFAR10DataModule(**dm_kwargs(root, val_size=8)).setup()
    assert all(str(path) in str(info.value) for path in written.files[:5])


def test_cifar_truncated_batch_fails_the_md5_check_naming_the_file(tmp_path):
    written = write_cifar10(tmp_path, n_per_batch=4, n_test=4)
    path = written.files[2]
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match="MD5 check") as info:
        CIFAR10DataModule(**dm_kwargs(tmp_path, val_size=4)).setup()
    assert f"CIFAR10: {path} failed torchvision's MD5 check" in str(info.value)


def test_a_bad_test_batch_is_named_without_blaming_the_training_split(tmp_path):
    # torchvision checks every file whichever split it reads: the message said "train data" of the test file.
    root, written = tmp_path, write_cifar10(tmp_path, n_per_batch=4, n_test=4)
    test_batch = next(p for p in written.files if p.name == "test_batch")
    test_batch.write_bytes(written.files[0].read_bytes())
    with pytest.raises(DataError) as info:
        CIFAR10DataModule(**dm_kwargs(root, val_size=4)).setup()
    assert str(info.value).startswith(f"CIFAR10: {test_batch} failed torchvision's MD5 check")


def test_cifar_batch_with_code_in_it_is_refused_before_unpickling(tmp_path):
    """What the project's restricted unpickler did: torchvision checks the MD5 before ``pickle.load``."""
    written = write_cifar10(tmp_path, n_per_batch=4, n_test=4)
    marker = tmp_path / "code_ran"

    class Payload:
        def __reduce__(self):
            return (marker.touch, ())

    written.files[-1].write_bytes(pickle.dumps({b"data": Payload(), b"labels": [0]}, protocol=2))
    with pytest.raises(DataError, match="MD5 check"):
        CIFAR10DataModule(**dm_kwargs(tmp_path, val_size=4)).setup()
    assert not marker.exists()


def test_cifar_batch_with_wrong_shape_raises_data_error(tmp_path):
    written = write_cifar10(tmp_path, n_per_batch=4, n_test=4)
    write_cifar_batch(written.files[-1], np.zeros((4, 1, 10, 10), np.uint8), {"labels": [0] * 4})  # (4, 100)
    register_fixture_checksums([written.files[-1]])  # past the MD5 check: torchvision's reshape fails
    with pytest.raises(DataError, match="cannot read") as info:
        CIFAR10DataModule(**dm_kwargs(tmp_path, val_size=4)).setup()
    assert str(written.files[-1]) in str(info.value)


@pytest.mark.parametrize(("cls", "torchvision_class"), [(CIFAR10DataModule, CIFAR10), (CIFAR100DataModule, CIFAR100)])
def test_cifar_download_fetches_and_extracts_the_archive(tmp_path, monkeypatch, cls, torchvision_class):
    writer = write_cifar10 if cls is CIFAR10DataModule else write_cifar100
    written = writer(tmp_path / "staging")
    served = tmp_path / "served"
    archive = make_dataset_archive(written, served / torchvision_class.filename)
    monkeypatch.setattr(torchvision_class, "tgz_md5", file_digest(archive, "md5"))
    data = tmp_path / "data"
    with local_http_server(served) as server:
        monkeypatch.setattr(torchvision_class, "url", f"{server.url}/{torchvision_class.filename}")
        dm = cls(**dm_kwargs(data, val_size=5, download=True))
        dm.prepare_data()
        dm.prepare_data()
        assert server.requests == [f"/{torchvision_class.filename}"]
    register_fixture_checksums((data / written.folder.name).iterdir())  # the extracted copies of the fixture
    dm.setup()
    assert len(dm.train_set) + len(dm.val_set) == len(written.train_labels)
    assert stack(dm.test_set)[1].tolist() == written.test_labels.tolist()
    assert sorted(p.name for p in data.iterdir()) == sorted([torchvision_class.filename, written.folder.name])


# ---------------------------------------------------------------------------------------------------- STL-10
def test_stl10_reads_column_major_planes_and_shifts_labels(stl10_dir):
    root, written = stl10_dir
    dm = STL10DataModule(**dm_kwargs(root, val_size=5))
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (15, 5, 10)
    x, y = stack(dm.test_set)
    assert x.shape == (10, 3, 96, 96) and x.dtype == torch.float32
    expected = torch.from_numpy(written.test_images).float()
    torch.testing.assert_close(unnormalize(x, STL_MEAN, STL_STD), expected, atol=1e-3, rtol=0)
    assert y.tolist() == written.test_labels.tolist()


def test_stl10_resolution_resizes_and_augmentation_spares_validation(stl10_dir):
    root, written = stl10_dir
    dm = STL10DataModule(**dm_kwargs(root, val_size=5, resolution=32, augment=True))
    dm.setup()
    x, _ = dm.val_set[0]
    assert x.shape == (3, 32, 32)
    assert torch.equal(x, dm.val_set[0][0])
    source = dm.val_set.indices[0]
    resized = torch.nn.functional.interpolate(
        torch.from_numpy(written.train_images[source : source + 1]).float() / 255,
        size=(32, 32),
        mode="bilinear",
        antialias=True,
    )[0]
    torch.testing.assert_close(unnormalize(x, STL_MEAN, STL_STD) / 255, resized, atol=1e-5, rtol=0)
    torch.manual_seed(0)
    draws = [dm.train_set[0][0] for _ in range(6)]
    assert all(d.shape == (3, 32, 32) for d in draws)
    assert any(not torch.equal(draws[0], d) for d in draws[1:])


def test_stl10_split_is_seeded(stl10_dir):
    root, _ = stl10_dir
    a, b = (STL10DataModule(**dm_kwargs(root, val_size=5, seed=7)) for _ in range(2))
    a.setup()
    b.setup()
    assert a.val_set.indices == b.val_set.indices


def test_torchvision_stl10_turns_a_label_byte_0_into_class_255_which_is_refused(tmp_path):
    written = write_stl10(tmp_path, n_train=6, n_test=4)
    y_path = written.files[1]
    y_path.write_bytes(bytes([0]) + y_path.read_bytes()[1:])
    register_fixture_checksums([y_path])
    reader = with_fixture_checksums(STL10, written.folder)
    assert reader(tmp_path, split="train", download=False).labels[0] == 255  # what torchvision hands over
    with pytest.raises(DataError, match=r"STL10 train labels in .* span \[\d+, 255\], expected \[0, 9\]") as info:
        STL10DataModule(**dm_kwargs(tmp_path, val_size=2)).setup()
    assert str(y_path) in str(info.value)


@pytest.mark.parametrize("damage", ["size", "count"])
def test_stl10_corrupt_files_raise_data_error_naming_the_path(tmp_path, damage):
    written = write_stl10(tmp_path, n_train=6, n_test=4)
    x_path, y_path = written.files[0], written.files[1]
    path = x_path if damage == "size" else y_path
    path.write_bytes(path.read_bytes()[: -5 if damage == "size" else -1])
    with pytest.raises(DataError, match="MD5 check") as info:
        STL10DataModule(**dm_kwargs(tmp_path, val_size=2)).setup()
    assert str(path) in str(info.value)
    register_fixture_checksums([path])  # past torchvision's check, the project's own checks still refuse it
    with pytest.raises(DataError, match="cannot read" if damage == "size" else "6 images .* and 5 labels"):
        STL10DataModule(**dm_kwargs(tmp_path, val_size=2)).setup()


def test_stl10_download_fetches_and_extracts_the_archive(tmp_path, monkeypatch):
    written = write_stl10(tmp_path / "staging", n_train=6, n_test=4)
    served = tmp_path / "served"
    archive = make_dataset_archive(written, served / STL10.filename)
    monkeypatch.setattr(STL10, "tgz_md5", file_digest(archive, "md5"))
    data = tmp_path / "data"
    with local_http_server(served) as server:
        monkeypatch.setattr(STL10, "url", f"{server.url}/{STL10.filename}")
        dm = STL10DataModule(**dm_kwargs(data, val_size=2, download=True))
        dm.prepare_data()
    register_fixture_checksums((data / "stl10_binary").iterdir())  # the extracted copies of the fixture
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (4, 2, 4)
    expected = torch.from_numpy(written.test_images).float()
    torch.testing.assert_close(unnormalize(stack(dm.test_set)[0], STL_MEAN, STL_STD), expected, atol=1e-3, rtol=0)
