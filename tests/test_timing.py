"""Time and memory as metrics, the epoch line that shows them (training/callbacks/epochs.py) and the run's totals,
Lightning's Timer's."""

from __future__ import annotations

import csv
import json
import mmap
import re
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch

from tests.conftest import TINY, compose, run_main
from training.callbacks import epochs
from training.callbacks.epochs import EpochClock, duration, reset_rss_peak, rss_peak_mib, run_times, times_line
from training.run.execute import build_trainer, check


def _csv_rows(run: Path) -> list[dict[str, str]]:
    with open(run / "logs" / "metrics.csv", newline="") as file:
        return list(csv.DictReader(file))


def _epoch_metric(rows: list[dict[str, str]], name: str) -> dict[int, float]:
    return {int(row["epoch"]): float(row[name]) for row in rows if row.get(name) and row.get("epoch")}


class _OwnClock(pl.Callback):
    """The test's own measurement: the epoch's start and the end of its last training step."""

    def __init__(self) -> None:
        self.start: dict[int, float] = {}
        self.last_step_end: dict[int, float] = {}

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start[trainer.current_epoch] = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.last_step_end[trainer.current_epoch] = time.perf_counter()


def test_the_logged_throughput_is_the_epochs_training_examples_over_its_training_time(data_dir, tmp_path):
    # 1,900 training examples: epochs of about 0.4 s, against which the clocks' gap stays small on a loaded machine.
    flags = [*TINY, "dataset.params.num_samples=2500", "train.epochs=2", f"dataset.data_dir={data_dir}"]
    cfg = compose([*flags, f"train.output_dir={tmp_path / 'run'}"])
    plan, folder = check(cfg)
    trainer = build_trainer(plan, folder)
    clock = _OwnClock()
    trainer.callbacks.append(clock)  # type: ignore[attr-defined]  # after the EpochClock: its readings follow it
    trainer.fit(plan.module, datamodule=plan.datamodule)

    # The training loader drops the last incomplete batch: whole batches of train.batch_size only.
    examples = len(plan.datamodule.train_set) // cfg.train.batch_size * cfg.train.batch_size
    logged = _epoch_metric(_csv_rows(tmp_path / "run"), "time/samples_per_s")
    assert sorted(logged) == [0, 1]
    for epoch, value in logged.items():
        own = examples / (clock.last_step_end[epoch] - clock.start[epoch])
        # The two clocks are read a few callbacks apart (the progress bar's among them): tens of microseconds, a
        # millisecond or two when other processes compete for the cores. Half a percent of the epoch allows 2 ms; the
        # epoch's validation (2 batches, about 5% of it) would be well outside. The CSV holds float32.
        assert value == pytest.approx(own, rel=5e-3)


class _Clock:
    """A perf_counter that returns the scripted times, one per call."""

    def __init__(self, times: list[float]) -> None:
        self.times = iter(times)

    def __call__(self) -> float:
        return next(self.times)


def test_each_second_of_an_epoch_is_counted_in_its_part(monkeypatch):
    logged: dict[str, float] = {}
    module = SimpleNamespace(device=torch.device("cpu"), log_dict=lambda values, **_: logged.update(values))
    trainer = SimpleNamespace(
        current_epoch=0, max_epochs=3, world_size=2, is_global_zero=True, callback_metrics={}, state=None
    )
    batch = (torch.zeros(10, 3), torch.zeros(10))
    # epoch 10 | step 11-13 | step 13.5-16 | validation 16.5-17.5 | epoch end 18
    monkeypatch.setattr(epochs.time, "perf_counter", _Clock([10, 11, 13, 13.5, 16, 16.5, 17.5, 18]))
    clock = EpochClock()
    clock.on_train_epoch_start(trainer, module)
    for _ in range(2):
        clock.on_train_batch_start(trainer, module, batch, 0)
        clock.on_train_batch_end(trainer, module, None, batch, 0)
    clock.on_validation_start(trainer, module)
    clock.on_validation_end(trainer, module)
    clock.on_train_epoch_end(trainer, module)

    assert logged == {
        "time/epoch_s": 8.0,
        "time/data_s": 1.5,  # 10 -> 11 and 13 -> 13.5
        "time/compute_s": 4.5,  # 11 -> 13 and 13.5 -> 16
        "time/val_s": 1.0,
        "time/samples_per_s": 2 * 20 / 6.0,  # two processes of 20 examples in 1.5 + 4.5 s
        "memory/rss_peak_mib": pytest.approx(rss_peak_mib(), rel=0.5),
    }
    assert clock.totals == {"data": 1.5, "compute": 4.5}
    # The time left after the first of three epochs: its 8 s, twice.
    assert clock.epoch_line(trainer, clock.epochs[0]).endswith(f"| {duration(16.0)} left")


def test_a_resumed_runs_totals_include_the_time_before_the_resume():
    first = EpochClock()
    first.totals = {"data": 1.0, "compute": 3.0}
    resumed = EpochClock()
    resumed.load_state_dict(first.state_dict())  # what the checkpoint carries
    assert resumed.totals == {"data": 1.0, "compute": 3.0}
    timer = SimpleNamespace(time_elapsed=lambda stage: {"train": 10.0, "validate": 1.0, "test": 2.0}[stage])
    times = run_times(timer, resumed)  # type: ignore[arg-type]
    assert times == {
        "time/train_total_s": 10.0,
        "time/data_total_s": 1.0,
        "time/compute_total_s": 3.0,
        "time/eval_total_s": 3.0,
    }
    line = times_line(times)
    assert line.startswith("time: 13.0s in all: training compute 3.0s (23%), data loading 1.0s (8%)")
    assert line.endswith("slowest: validation and the rest of training")  # 10 - 3 - 1 = 6 s


def test_the_rss_peak_is_reset_at_each_epoch_where_linux_allows_it():
    if not reset_rss_peak():
        pytest.skip("/proc/self/clear_refs cannot be written here; the peak is the process's since it started")
    base = rss_peak_mib()
    size = 256 * 1024 * 1024
    block = mmap.mmap(-1, size)  # anonymous memory, returned to the system on close whatever the allocator does
    for offset in range(0, size, mmap.PAGESIZE):
        block[offset] = 1
    peak = rss_peak_mib()
    block.close()
    assert peak >= base + 250
    assert rss_peak_mib() > peak - 5  # the peak stays after the memory is freed ...
    assert reset_rss_peak() and rss_peak_mib() < peak - 200  # ... until it is reset


def test_durations_read_as_seconds_minutes_or_hours():
    assert [duration(s) for s in (0.04, 42.0, 59.94, 185.0, 3725.0)] == ["0.0s", "42.0s", "59.9s", "3m05s", "1h02m"]


@pytest.mark.slow
def test_the_console_shows_epoch_k_of_n_its_cost_the_time_left_and_the_runs_slowest_part(data_dir, tmp_path):
    run = tmp_path / "run"
    result = run_main(*TINY, "train.epochs=3", f"dataset.data_dir={data_dir}", f"train.output_dir={run}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("epoch ")]
    pattern = re.compile(
        r"epoch (\d)/3 \| train/loss=\S+ train/acc=\S+ val/loss=\S+ val/acc=\S+ \| (\S+) \(data \S+, train \S+, "
        r"val \S+\), (\d+) samples/s, rss peak (\d+) MiB \| (\S+) left"
    )
    matches = [pattern.fullmatch(line) for line in lines]
    assert all(matches) and [m.group(1) for m in matches] == ["1", "2", "3"], lines  # type: ignore[union-attr]
    rows = _csv_rows(run)
    speeds, peaks = _epoch_metric(rows, "time/samples_per_s"), _epoch_metric(rows, "memory/rss_peak_mib")
    seconds = _epoch_metric(rows, "time/epoch_s")
    for epoch, match in enumerate(matches):
        assert int(match.group(3)) == round(speeds[epoch])  # type: ignore[union-attr]
        assert int(match.group(4)) == round(peaks[epoch])  # type: ignore[union-attr]
    # The time left after epoch k: the mean of the epochs so far times the epochs left.
    assert matches[0].group(5) == duration(2 * seconds[0])  # type: ignore[union-attr]
    assert matches[1].group(5) == duration((seconds[0] + seconds[1]) / 2)  # type: ignore[union-attr]
    assert matches[2].group(5) == "0.0s"  # type: ignore[union-attr]
    assert all(
        _epoch_metric(rows, f"time/{part}_s")[e] <= seconds[e] for part in ("data", "compute", "val") for e in range(3)
    )
    summary = [line for line in result.stdout.splitlines() if line.startswith("time: ")]
    assert len(summary) == 1 and re.search(
        r"; slowest: (training compute|data loading|validation and the rest of training|final evaluation)$", summary[0]
    )
    results = json.loads((run / "results.json").read_text())
    assert results["time/compute_total_s"] == pytest.approx(
        sum(_epoch_metric(rows, "time/compute_s").values()), rel=1e-4
    )
