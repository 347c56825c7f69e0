"""Shared test setup: W&B off, Hydra composition helpers, and tiny-run flags."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def main_env() -> dict[str, str]:
    """The environment a user runs ``main.py`` in, taken now (fixture writers register their checksums in it): W&B
    off, no HYDRA_FULL_ERROR (one-line messages must not depend on it), the repository importable."""
    env = {key: value for key, value in os.environ.items() if key != "HYDRA_FULL_ERROR"}
    return {**env, "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}


def main_py(*args: str, cwd: Path = REPO, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python main.py <args>`` as a user runs it, from ``cwd``; its exit code and output."""
    command = [sys.executable, str(REPO / "main.py"), *args]
    return subprocess.run(command, cwd=cwd, env=main_env(), capture_output=True, text=True, timeout=timeout)


def start_main_py(*args: str, cwd: Path = REPO, **streams: Any) -> subprocess.Popen:
    """``python main.py <args>`` started in the background from ``cwd`` (output discarded unless ``stdout=`` or
    ``stderr=`` say otherwise), for tests that interrupt, kill or race a run."""
    command = [sys.executable, str(REPO / "main.py"), *args]
    streams = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, **streams}
    return subprocess.Popen(command, cwd=cwd, env=main_env(), **streams)


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
