"""Shared test setup: W&B off, the config main.py would run with, main.py in this process or as a user runs it, and
tiny-run flags."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")

from training.config.compose import compose

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "pretrained" / "mnist1d_ccnn" / "model.ckpt"

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


@dataclass
class Result:
    """What a command printed and its exit code."""

    returncode: int
    stdout: str
    stderr: str

    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


_main_module: Any = None


def run_main(*args: str, cwd: Path) -> Result:
    """``python main.py <args>`` in this process, from ``cwd``: the same entry function (``training.cli.main``) and
    Hydra app as the script, without starting Python and loading torch again."""
    global _main_module
    if _main_module is None:
        spec = importlib.util.spec_from_file_location("ccnn_main_py", REPO / "main.py")
        _main_module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(_main_module)  # type: ignore[union-attr]
    from training.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved = (os.getcwd(), list(sys.argv))
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level  # Hydra's job logging replaces them for the run
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(_main_module.main, ["main.py", *args])
            except SystemExit as stop:  # a run's own exit (Ctrl-C, a failure while running)
                code = stop.code if isinstance(stop.code, int) else 1
    finally:
        os.chdir(saved[0])
        sys.argv = saved[1]
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
            handler.close()  # a run's main.log is closed when its run ends, as when main.py's process ends
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
    return Result(code, out.getvalue(), err.getvalue())


def main_env() -> dict[str, str]:
    """The environment a user runs ``main.py`` in, taken now (fixture writers register their checksums in it): W&B
    off, the repository importable."""
    env = {key: value for key, value in os.environ.items() if key not in ("HYDRA_FULL_ERROR", "CCNN_TRACEBACK")}
    return {**env, "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}


def main_py(*args: str, cwd: Path = REPO, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python main.py <args>`` as a user runs it, in a process of its own, from ``cwd``."""
    command = [sys.executable, str(REPO / "main.py"), *args]
    return subprocess.run(command, cwd=cwd, env=main_env(), capture_output=True, text=True, timeout=timeout)


def start_main_py(*args: str, cwd: Path = REPO, **streams: Any) -> subprocess.Popen:
    """``python main.py <args>`` started in the background from ``cwd`` (output discarded unless ``stdout=`` or
    ``stderr=`` say otherwise), for tests that interrupt, kill or race a run."""
    command = [sys.executable, str(REPO / "main.py"), *args]
    streams = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, **streams}
    return subprocess.Popen(command, cwd=cwd, env=main_env(), **streams)


def interruptible() -> None:
    """Run in a child before it starts: Ctrl-C (SIGINT) interrupts it even when the tests were started in the
    background, where the shell ignores SIGINT and every process started from there inherits that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def tree(folder: Path) -> dict[str, int]:
    """Every file and folder under ``folder`` with its modification time."""
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data folder for the session, so MNIST-1D is generated (and cached) once."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def tiny(data_dir: Path, tmp_path: Path) -> list[str]:
    """Overrides of a tiny run writing into this test's tmp_path."""
    return [*TINY, f"dataset.data_dir={data_dir}", f"train.output_dir={tmp_path / 'run'}"]


__all__ = ["REPO", "SHIPPED", "TINY", "Result", "compose", "main_env", "main_py", "run_main", "start_main_py", "tree"]
