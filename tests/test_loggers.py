"""Loggers (training/run/logs.py): the CSV log always (appended to by a resumed run), TensorBoard with
train.tensorboard=True (refused in one line before anything is written when its package is missing), W&B."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY, compose, run_main
from training.run.execute import train
from training.run.logs import AppendingCSVLogger, run_loggers


def _csv_values(run: Path, name: str) -> dict[int, float]:
    """``{step: value}`` of the metric ``name`` in the CSV log's rows of training epochs."""
    with open(run / "logs" / "metrics.csv", newline="") as file:
        return {int(r["step"]): float(r[name]) for r in csv.DictReader(file) if r.get(name) and r.get("epoch")}


@pytest.mark.slow
def test_tensorboard_receives_the_same_epoch_metrics_as_the_csv_log(tiny, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(compose([*tiny, "train.epochs=2", "train.tensorboard=True"]))
    run = tmp_path / "run"
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))  # Lightning's: one per trainer call
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


def test_a_missing_tensorboard_package_is_refused_in_one_line_before_anything_is_written(
    data_dir, tmp_path, monkeypatch
):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as in an interpreter where the package cannot be imported
    run = tmp_path / "run"
    flags = [*TINY, f"dataset.data_dir={data_dir}", f"train.output_dir={run}", "train.tensorboard=True"]
    result = run_main(*flags, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = result.error_lines()
    assert "train.tensorboard" in line and "pip install -e '.[tensorboard]'" in line  # the flag and the fix
    assert not run.exists()


def test_the_csv_log_of_a_resumed_run_keeps_the_rows_before_and_adds_its_own(tmp_path):
    first = AppendingCSVLogger(tmp_path)
    first.log_metrics({"val/acc": 0.5, "epoch": 0}, step=5)
    first.save()
    resumed = AppendingCSVLogger(tmp_path)  # Lightning's CSVLogger deleted metrics.csv here
    resumed.log_metrics({"val/acc": 0.75, "epoch": 1, "time/epoch_s": 2.0}, step=11)
    resumed.finalize("success")
    with open(tmp_path / "logs" / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [(r["step"], r["epoch"], r["val/acc"], r["time/epoch_s"]) for r in rows] == [
        ("5", "0", "0.5", ""),
        ("11", "1", "0.75", "2.0"),
    ]


@pytest.mark.slow
def test_a_wandb_run_writes_offline_into_the_run_folder_under_the_folders_id(tmp_path, monkeypatch):
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")  # a real W&B run, written to tmp_path only
    [_, logger] = run_loggers(compose(["debug=False", "comment=a note"]), tmp_path, "anontest")
    try:
        logger.experiment.log({"x": 1.0})
    finally:
        wandb.finish()
    assert list((tmp_path / "wandb").glob("offline-run-*-anontest"))
