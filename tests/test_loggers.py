"""Loggers (training/loggers.py): the CSV log always, TensorBoard with train.tensorboard=True, refused in one line
before anything is written when its package is missing."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, TINY, compose, main_env
from tests.test_trust import error_lines
from training.run import train


def _csv_values(run: Path, name: str) -> dict[int, float]:
    """``{step: value}`` of the metric ``name`` in the CSV log's rows of training epochs."""
    with open(run / "logs" / "metrics.csv", newline="") as file:
        return {int(r["step"]): float(r[name]) for r in csv.DictReader(file) if r.get(name) and r.get("epoch")}


@pytest.mark.slow
def test_tensorboard_receives_the_same_epoch_metrics_as_the_csv_log(tiny, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(compose([*tiny, "train.epochs=2", "train.tensorboard=True"]))
    run = tmp_path / "run"
    # fit, validate, test and the final metrics in one event file (Lightning's logger started four)
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 1
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"val/acc", "val/loss", "train/loss", "time/samples_per_s", "memory/rss_peak_mib", "test/acc"} <= tags
    for name in ("val/loss", "time/samples_per_s"):
        in_csv = _csv_values(run, name)
        logged = {int(e.step): e.value for e in events.Scalars(name) if e.step in in_csv}
        # The same values at the same steps; the CSV writes them in full, TensorBoard as float32.
        assert len(in_csv) >= 2 and logged == pytest.approx(in_csv, rel=1e-6)


@pytest.mark.slow
def test_without_the_flag_only_the_csv_log_is_written(tiny, tmp_path):
    train(compose(tiny))
    assert (tmp_path / "run" / "logs" / "metrics.csv").is_file()
    assert not (tmp_path / "run" / "tensorboard").exists() and not (tmp_path / "run" / "wandb").exists()


def test_a_missing_tensorboard_package_is_refused_in_one_line_before_anything_is_written(data_dir, tmp_path):
    # main.py as a user runs it, in an interpreter where the package cannot be imported.
    hide = (
        "import runpy, sys; sys.modules['tensorboard'] = None; sys.argv = sys.argv[1:]; "
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    run = tmp_path / "run"
    flags = [*TINY, f"dataset.data_dir={data_dir}", f"train.output_dir={run}", "train.tensorboard=True"]
    result = subprocess.run(
        [sys.executable, "-c", hide, str(REPO / "main.py"), *flags],
        cwd=tmp_path,
        env=main_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert error_lines(result) == [
        "error: train.tensorboard=True needs the tensorboard package, which is not installed: "
        "pip install -e '.[tensorboard]' (or set train.tensorboard=False)."
    ]
    assert not run.exists()


@pytest.mark.slow
def test_a_wandb_run_starts_without_the_warning_about_the_anonymous_setting(tmp_path, monkeypatch, capfd):
    import wandb

    from training.loggers import RunWandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")  # a real W&B run, written to tmp_path only
    monkeypatch.setenv("WANDB_SILENT", "false")
    logger = RunWandbLogger(project="ccnn-test", save_dir=str(tmp_path), id="anontest")
    try:
        logger.experiment.log({"x": 1.0})
    finally:
        wandb.finish()
    shown = capfd.readouterr()
    assert "anonymous" not in shown.out + shown.err
    assert "wandb" in shown.out + shown.err  # wandb did print its other lines: the warning would have been seen
    assert list((tmp_path / "wandb").glob("offline-run-*-anontest"))
