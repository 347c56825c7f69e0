"""Shared test setup: W&B off, Hydra composition helpers, and tiny-run flags."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HYDRA_FULL_ERROR", "1")

REPO = Path(__file__).resolve().parent.parent
CONFIG_DIR = str(REPO / "cfg")

# A model and run small enough for a CPU test: one block of width 8, one epoch on 400 MNIST-1D samples.
TINY = [
    "net.no_hidden=8",
    "net.no_blocks=1",
    "kernel.no_hidden=8",
    "kernel.no_layers=2",
    "train.epochs=1",
    "train.batch_size=50",
    "dataset.params.num_samples=500",
    "dataset.params.val_size=100",
    "no_workers=0",
]


def compose(overrides: list[str] | None = None):
    """The config ``python main.py <overrides>`` would run with."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides or []))


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data folder for the session, so MNIST-1D is generated (and cached) once."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def tiny(data_dir: Path, tmp_path: Path) -> list[str]:
    """Overrides of a tiny run writing into this test's tmp_path."""
    return [*TINY, f"dataset.data_dir={data_dir}", f"train.output_dir={tmp_path / 'run'}"]
