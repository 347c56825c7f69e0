"""One short training run per task family, through train(cfg) (what main.py calls), on fixture files written in
the exact on-disk format of the real datasets. No network: downloads are off."""

from __future__ import annotations

import pytest

from tests.conftest import compose
from tests.fixtures.sequence_files import write_aan, write_listops, write_pathfinder, write_speech_commands
from tests.fixtures.vision_files import write_cifar10, write_mnist
from training.run import train

SMALL_NET = ["net.no_hidden=8", "net.no_blocks=1", "kernel.no_hidden=8", "kernel.no_layers=2", "no_workers=0"]
RUN = ["train.epochs=1", "train.batch_size=4", "dataset.download=False"]

FAMILIES = {
    # family: (writer, flags)
    "sequence": (
        lambda root: write_mnist(root, n_train=24, n_test=8),
        ["dataset.name=MNIST", "dataset.data_type=sequence", "dataset.params.val_size=8", "conv.causal=True"],
    ),
    "permuted_sequence": (
        lambda root: write_mnist(root, n_train=24, n_test=8),
        [
            "dataset.name=MNIST",
            "dataset.data_type=sequence",
            "dataset.params.permuted=True",
            "dataset.params.val_size=8",
        ],
    ),
    "image": (
        lambda root: write_cifar10(root, n_per_batch=6, n_test=8),
        ["dataset.name=CIFAR10", "dataset.params.val_size=10", "dataset.augment=True", "kernel.size=9"],
    ),
    "audio": (
        lambda root: write_speech_commands(root, n_per_word=3),
        ["dataset.name=SpeechCommands", "dataset.params.mfcc=True", "conv.causal=True"],
    ),
    "token": (
        lambda root: write_listops(root, n=12),
        ["dataset.name=ListOps", "dataset.params.seq_length=256"],
    ),
    "paired_token": (
        lambda root: write_aan(root, n=8),
        ["dataset.name=AAN", "dataset.params.seq_length=128"],
    ),
    "pathfinder": (
        lambda root: write_pathfinder(root, resolution=32, n=20),
        ["dataset.name=PathFinder", "kernel.size=9"],
    ),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_short_run_per_task_family_trains_and_tests(family, tmp_path):
    writer, flags = FAMILIES[family]
    writer(tmp_path / "data")
    metrics = train(
        compose(
            [*SMALL_NET, *RUN, *flags, f"dataset.data_dir={tmp_path / 'data'}", f"train.output_dir={tmp_path / 'run'}"]
        )
    )
    assert 0.0 <= metrics["test/acc"] <= 1.0
    assert 0.0 <= metrics["val/acc"] <= 1.0
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


def test_missing_dataset_gives_one_clear_error_naming_the_path(tmp_path):
    from datamodules import DataError

    with pytest.raises(DataError, match=str(tmp_path / "data")):
        train(
            compose(
                [
                    *SMALL_NET,
                    *RUN,
                    "dataset.name=CIFAR10",
                    f"dataset.data_dir={tmp_path / 'data'}",
                    f"train.output_dir={tmp_path / 'run'}",
                ]
            )
        )
