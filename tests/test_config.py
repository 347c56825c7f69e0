"""Bad flags and impossible combinations fail before any data is read, with a message naming the flag."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO, compose
from training.checkpoints import CheckpointError
from training.config import ConfigError
from training.run import train


@pytest.fixture
def no_data(tmp_path):
    """A data folder that must still not exist after the failed run."""
    path = tmp_path / "never_created"
    yield path
    assert not path.exists(), "a bad config must fail before any data is touched"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.epochs=abc"], r"train\.epochs must be an integer, got 'abc'"),
        (["optimizer.lr=fast"], r"optimizer\.lr must be a number"),
        (["conv.causal=maybe"], r"conv\.causal must be a boolean"),
        (["dataset.name=MNIST", "conv.causal=True"], r"conv\.causal=True needs 1D data"),
        (["dataset.name=ImageNet"], r"dataset\.name must be one of .*'MNIST1D'"),
        (["train.batch_size=10", "train.accumulate_grad_steps=3"], r"train\.batch_size=10 must be divisible"),
        (["conv.stride=2"], r"conv\.stride=2 is not supported"),
        (["kernel.input_scale=2.0"], r"kernel\.input_scale=2\.0 is not supported"),
        (["hooks_enabled=True"], r"hooks_enabled=True is not supported"),
        (["conv.type=Transformer"], r"conv\.type must be one of"),
        (["kernel.type=Fourier"], r"kernel\.type must be one of .*MAGNet"),
        (["kernel.size=-3"], r"kernel\.size must be 'same', 'full' or a positive integer"),
        (["conv.use_fft=sometimes"], r"conv\.use_fft must be True, False or auto"),
        (["dataset.params.mfcc=True"], r"dataset\.params\.mfcc=True is not used by dataset\.name=MNIST1D"),
        (["dataset.name=MNIST", "dataset.params.permuted=True"], r"permuted"),
        (["net.data_dim=2"], r"net\.data_dim=2 but dataset\.name=MNIST1D .* is 1D"),
        (["train.do=False"], r"train\.do=False evaluates a checkpoint"),
        (["pretrained.load=True"], r"pretrained\.load=True needs pretrained\.filename"),
        (["net.norm=GroupNorm"], r"net\.norm must be one of"),
        (["net.nonlinearity=Swish"], r"net\.nonlinearity must name a torch\.nn activation"),
        (["mask.threshold=1.5"], r"mask\.threshold must be in \(0, 1\)"),
    ],
)
def test_bad_flags_fail_before_loading_data_and_name_the_flag(overrides, message, no_data):
    with pytest.raises(ConfigError, match=message):
        train(compose([*overrides, f"dataset.data_dir={no_data}"]))


def test_unknown_or_misspelled_flags_are_refused_by_name(tmp_path):
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}
    for flag in ("net.foo=1", "optimzer.lr=0.1"):
        result = subprocess.run(
            [sys.executable, str(REPO / "main.py"), flag, f"dataset.data_dir={tmp_path / 'data'}"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode != 0
        assert f"Could not override '{flag.split('=')[0]}'" in result.stderr
    assert not (tmp_path / "data").exists()


def test_checkpoint_of_another_architecture_is_refused_naming_the_file(tiny, tmp_path):
    trained = train(compose([*tiny]))
    with pytest.raises(CheckpointError, match=r"best\.ckpt is for a different architecture.*shape mismatches"):
        train(
            compose(
                [
                    *tiny,
                    "net.no_hidden=12",
                    "train.do=False",
                    "pretrained.load=True",
                    f"pretrained.filename={trained['best_checkpoint']}",
                ]
            )
        )


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "truncated or not a PyTorch checkpoint"), (None, "has no 'state_dict'"), (b"garbage" * 10, "truncated")],
)
def test_truncated_or_foreign_checkpoints_are_refused_naming_the_file(tiny, tmp_path, content, message):
    path = tmp_path / "model.ckpt"
    if content is None:
        torch.save({"weights": torch.zeros(3)}, path)
    else:
        path.write_bytes(content)
    for flag in ("pretrained.filename", "train.resume"):
        extra = ["train.do=False", "pretrained.load=True"] if flag == "pretrained.filename" else []
        with pytest.raises(CheckpointError, match=rf"{path}.*{message}|{message}.*{path}|checkpoint {path} .*"):
            train(compose([*tiny, *extra, f"{flag}={path}"]))


def test_missing_checkpoint_names_the_path(tiny, tmp_path):
    with pytest.raises(CheckpointError, match=r"nothing\.ckpt does not exist"):
        train(
            compose([*tiny, "train.do=False", "pretrained.load=True", f"pretrained.filename={tmp_path}/nothing.ckpt"])
        )
