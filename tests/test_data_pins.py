"""What the datamodules produce is pinned: the same fixture files give the same tensors, splits and labels as the
readers of commit b149054 (the project's own IDX/pickle/binary readers and transform, before the move to
torchvision's datasets and transforms.v2), for every image and sequence dataset.

Each pin is ``(x, y)`` per split, in the order the dataset yields its examples: ``y`` is the SHA-256 (first 16 hex
digits) of the int64 labels; ``x`` is the SHA-256 of the stacked inputs where every step is exact elementwise
arithmetic (so any machine gives the same bits), or three random projections of them (float64, rel. tolerance
1e-5) where a step reduces (an antialiased resize, the training-set standardisation and MFCCs of Speech Commands),
whose last bits depend on the CPU's vector width.
"""

from __future__ import annotations

import hashlib

import pytest
import torch
from torch.utils.data import Subset

from datamodules.base import DataError, seeded_split
from datamodules.cifar import CIFAR10DataModule, CIFAR100DataModule
from datamodules.listops import ListOpsDataModule
from datamodules.mnist import MNISTDataModule
from datamodules.pathfinder import PathFinderDataModule
from datamodules.retrieval import AANDataModule
from datamodules.speech_commands import SpeechCommandsDataModule
from datamodules.stl10 import STL10DataModule
from datamodules.text import IMDBDataModule
from tests.fixtures import sequence_files as sf
from tests.fixtures import vision_files as vf

CASES = {
    "mnist": (lambda r: vf.write_mnist(r, n_train=50, n_test=20), MNISTDataModule, {"val_size": 10}),
    "mnist_permuted": (
        lambda r: vf.write_mnist(r, n_train=50, n_test=20),
        MNISTDataModule,
        {"val_size": 10, "data_type": "sequence", "permuted": True, "seed": 3},
    ),
    "cifar10": (lambda r: vf.write_cifar10(r, n_per_batch=8, n_test=10), CIFAR10DataModule, {"val_size": 8}),
    "cifar10_gray_sequence": (
        lambda r: vf.write_cifar10(r, n_per_batch=8, n_test=10),
        CIFAR10DataModule,
        {"val_size": 8, "data_type": "sequence", "grayscale": True},
    ),
    "cifar100": (lambda r: vf.write_cifar100(r, n_train=30, n_test=10), CIFAR100DataModule, {"val_size": 5}),
    "stl10": (lambda r: vf.write_stl10(r, n_train=20, n_test=10), STL10DataModule, {"val_size": 5}),
    "stl10_resized": (
        lambda r: vf.write_stl10(r, n_train=20, n_test=10),
        STL10DataModule,
        {"val_size": 5, "resolution": 32},
    ),
    "speech": (lambda r: sf.write_speech_commands(r, n_per_word=3), SpeechCommandsDataModule, {}),
    "speech_mfcc": (lambda r: sf.write_speech_commands(r, n_per_word=3), SpeechCommandsDataModule, {"mfcc": True}),
    "listops": (lambda r: sf.write_listops(r, n=12), ListOpsDataModule, {"seq_length": 64}),
    "imdb": (lambda r: sf.write_imdb(r, n=5), IMDBDataModule, {"seq_length": 256, "val_size": 2}),
    "aan": (lambda r: sf.write_aan(r, n=8), AANDataModule, {"seq_length": 128}),
    "pathfinder": (lambda r: sf.write_pathfinder(r, resolution=32, n=20), PathFinderDataModule, {}),
}

PINS = {
    "mnist": {
        "train": ("8246e2287eeba683", "870dfd322a19b22c"),
        "val": ("7151b053ba33c7b4", "54f6255a12fdfe6b"),
        "test": ("b62d47acb3dffbe5", "f5452d01242ffa3e"),
    },
    "mnist_permuted": {
        "train": ("a5940a645a6ddeea", "76df41e8ab4814fb"),
        "val": ("d71b434effb3bc25", "13caabb44573e6e8"),
        "test": ("2df736b58b6733e8", "f5452d01242ffa3e"),
    },
    "cifar10": {
        "train": ("f796ce361e7bc988", "f6fb08a2cd26033c"),
        "val": ("c6364c6b778ec88c", "47eb2d2f4752cdc4"),
        "test": ("34c0eddc152bf75d", "dcb6803ddccdc4fd"),
    },
    "cifar10_gray_sequence": {
        "train": ("68009cd6cabfe376", "f6fb08a2cd26033c"),
        "val": ("4144966687226497", "47eb2d2f4752cdc4"),
        "test": ("e8c161e4294fc731", "dcb6803ddccdc4fd"),
    },
    "cifar100": {
        "train": ("c8de3f8e9dd9b850", "faa764b18b7de3e8"),
        "val": ("3ee9f227498cf87a", "d41bf38c9763a49b"),
        "test": ("2db6c5190e6dee7c", "1ad377b55e99c506"),
    },
    "stl10": {
        "train": ("48b09f680b22f954", "4c5af82b9e5116e4"),
        "val": ("3a248b2c926157ce", "ba08515918a751d9"),
        "test": ("77fe0e8382215a47", "d393391d16e22d90"),
    },
    "stl10_resized": {
        "train": ((-659.5652, 21.3126, -196.0887), "4c5af82b9e5116e4"),
        "val": ((-202.1077, -73.3956, -60.7578), "ba08515918a751d9"),
        "test": ((-267.9469, -44.291, -137.1509), "d393391d16e22d90"),
    },
    "speech": {
        "train": ((421.173, -39.2948, -498.0985), "23c379d6c0f22ef6"),
        "val": ((-241.9194, 255.9637, 107.6938), "23c379d6c0f22ef6"),
        "test": ((227.5052, 87.8135, 353.5474), "23c379d6c0f22ef6"),
    },
    "speech_mfcc": {
        "train": ((118.4157, 32.7472, 193.1834), "23c379d6c0f22ef6"),
        "val": ((-137.6609, 285.8847, -40.4219), "23c379d6c0f22ef6"),
        "test": ((-178.5469, 272.0939, 171.5295), "23c379d6c0f22ef6"),
    },
    "listops": {
        "train": ("33100efa4c4013a8", "6619498fff5632c0"),
        "val": ("1644fd7297e17476", "210649cf47de3ca1"),
        "test": ("ee898ea8702336fa", "4a98b9ef0a31c32b"),
    },
    "imdb": {
        "train": ("947780416a832230", "e9d2082189407d66"),
        "val": ("4750e9a63e72ed27", "374708fff7719dd5"),
        "test": ("3f99215868d42ef0", "23ebc865e5eee5c9"),
    },
    "aan": {
        "train": ("8d8bcd0bd29853a7", "33215a82af4d2b1a"),
        "val": ("7673233ff20adca6", "01c84f606ffe38ee"),
        "test": ("d403a4cef16b4b82", "01c84f606ffe38ee"),
    },
    "pathfinder": {
        "train": ("5d5c49bf7dc5426c", "e34b0c70f453a3e4"),
        "val": ("e07fc707f4070429", "374708fff7719dd5"),
        "test": ("e5cb4dd7808b4210", "9d34149fbd1fe777"),
    },
}


def _digest(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.contiguous().numpy().tobytes()).hexdigest()[:16]


def _projection(x: torch.Tensor) -> list[float]:
    weights = torch.randn(x[0].numel(), 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return (x.flatten(1).double() @ weights).sum(0).tolist()


@pytest.mark.parametrize("case", list(CASES))
def test_datamodule_gives_the_pinned_tensors_splits_and_labels(case, tmp_path):
    writer, cls, kwargs = CASES[case]
    writer(tmp_path)
    dm = cls(data_dir=tmp_path, batch_size=4, num_workers=0, download=False, **kwargs)
    dm.prepare_data()
    dm.setup()
    for split, (x_pin, y_pin) in PINS[case].items():
        dataset = getattr(dm, f"{split}_set")
        xs, ys = zip(*(dataset[i] for i in range(len(dataset))))
        x, y = torch.stack(xs), torch.stack(ys)
        assert _digest(y.to(torch.int64)) == y_pin, f"{case}/{split} labels"
        if isinstance(x_pin, str):
            assert _digest(x) == x_pin, f"{case}/{split} inputs"
        else:
            assert _projection(x) == pytest.approx(x_pin, rel=1e-5, abs=1e-3), f"{case}/{split} inputs"


# -------------------------------------------------------------------------------------------- seeded splits
@pytest.mark.parametrize(
    ("n", "val_size", "seed", "val_indices"),
    [(10, 3, 0, [4, 1, 7]), (20, 5, 7, [15, 17, 9, 12, 7])],
)
def test_seeded_split_keeps_the_indices_it_always_drew(n, val_size, seed, val_indices):
    """The indices of the hand-written permutation split (b149054), now drawn by ``random_split``."""
    train, val = seeded_split(list(range(n)), val_size, seed)
    assert isinstance(train, Subset) and isinstance(val, Subset)
    assert val.indices == val_indices
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    assert train.indices == order[val_size:] and val.indices == order[:val_size]


@pytest.mark.parametrize("val_size", [0, 10, 11])
def test_a_validation_split_that_leaves_no_training_data_names_the_flag_and_the_count(val_size):
    with pytest.raises(DataError, match=rf"val_size={val_size} \(flag dataset\.params\.val_size\).* holds 10 examples"):
        seeded_split(list(range(10)), val_size, 0)
