"""One line per epoch, and where a run's time and memory go.

Lightning's ``Timer`` keeps the run's time per stage (training, validation, test), carried over a resume in its
checkpoint state. What Lightning has no callback for is measured by :class:`EpochClock`: within each training epoch,
the time spent waiting for batches and in training steps, the training examples per second, and the peak memory.
Logged per epoch, like any metric (CSV log, W&B, TensorBoard):

- ``time/epoch_s``: the epoch from its start to its end, validation, checkpoints and plots included;
- ``time/data_s``: waiting for training batches (loading, collating, copying to the device);
- ``time/compute_s``: training steps (forward, backward, optimizer step, weight average);
- ``time/val_s``: the validation loop;
- ``time/samples_per_s``: training examples per second over ``data_s + compute_s``, counted over all processes;
- ``memory/rss_peak_mib``: the peak resident memory of this process during the epoch where Linux lets a process reset
  its peak (``/proc/self/clear_refs``), else since it started;
- ``memory/gpu_peak_mib``: on a GPU, the peak memory allocated by tensors during the epoch.

Times are taken on the host with ``time.perf_counter``. On a GPU the device is synchronised before validation and at
the epoch's end, so the epoch's totals hold all its work; nothing synchronises inside a step.
"""

from __future__ import annotations

import logging
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Timer
from pytorch_lightning.utilities.data import extract_batch_size

log = logging.getLogger(__name__)

# Metrics that measure the machine, not the model: they differ between two runs of the same seed.
MEASURED_PREFIXES = ("time/", "memory/")

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")
_MIB = 1024 * 1024


def reset_rss_peak() -> bool:
    """Reset this process's peak resident memory to its current one (Linux); whether it could."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def rss_peak_mib() -> float:
    """The peak resident memory of this process in MiB (``VmHWM``; ``getrusage`` where /proc is missing)."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / _MIB if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def duration(seconds: float) -> str:
    """``42.0s``, ``3m05s`` or ``1h02m``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


@dataclass
class EpochRecord:
    """What one training epoch cost."""

    epoch: int
    seconds: float
    data: float
    compute: float
    validation: float
    samples: int
    rss_peak_mib: float
    gpu_peak_mib: float | None

    @property
    def samples_per_s(self) -> float:
        return self.samples / (self.data + self.compute) if self.data + self.compute > 0 else 0.0

    def metrics(self) -> dict[str, float]:
        values = {
            "time/epoch_s": self.seconds,
            "time/data_s": self.data,
            "time/compute_s": self.compute,
            "time/val_s": self.validation,
            "time/samples_per_s": self.samples_per_s,
            "memory/rss_peak_mib": self.rss_peak_mib,
        }
        if self.gpu_peak_mib is not None:
            values["memory/gpu_peak_mib"] = self.gpu_peak_mib
        return values


def _synchronize(pl_module: pl.LightningModule) -> None:
    if pl_module.device.type == "cuda":
        torch.cuda.synchronize(pl_module.device)


class EpochClock(pl.Callback):
    """Measures each training epoch (see the module docstring), logs it, and keeps the run's data and compute seconds
    (saved in checkpoints, so a resumed run's totals cover the whole run)."""

    def __init__(self) -> None:
        self.epochs: list[EpochRecord] = []
        self.totals = {"data": 0.0, "compute": 0.0}
        self.rss_resettable = False
        self._epoch_start = self._mark = self._step_start = self._val_start = 0.0
        self._data = self._compute = self._validation = 0.0
        self._samples = 0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.rss_resettable = reset_rss_peak()
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)
        self._data = self._compute = self._validation = 0.0
        self._samples = 0
        self._epoch_start = self._mark = time.perf_counter()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, idx: int) -> None:
        self._step_start = time.perf_counter()
        self._data += self._step_start - self._mark

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._mark = time.perf_counter()
        self._compute += self._mark - self._step_start
        self._samples += extract_batch_size(batch)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _synchronize(pl_module)
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _synchronize(pl_module)
        self._validation += time.perf_counter() - self._val_start

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Runs after the epoch's validation loop: the record holds the whole epoch.
        _synchronize(pl_module)
        gpu = torch.cuda.max_memory_allocated(pl_module.device) / _MIB if pl_module.device.type == "cuda" else None
        record = EpochRecord(
            epoch=trainer.current_epoch,
            seconds=time.perf_counter() - self._epoch_start,
            data=self._data,
            compute=self._compute,
            validation=self._validation,
            samples=self._samples * trainer.world_size,
            rss_peak_mib=rss_peak_mib(),
            gpu_peak_mib=gpu,
        )
        self.epochs.append(record)
        self.totals["data"] += record.data
        self.totals["compute"] += record.compute
        # Under DDP: the slowest process's times and the largest process's memory (throughput already counts every
        # process's samples); one reduction per epoch, nothing on a single process.
        pl_module.log_dict(record.metrics(), on_step=False, on_epoch=True, sync_dist=True, reduce_fx="max")
        if trainer.is_global_zero:
            log.info(self.epoch_line(trainer, record))

    def epoch_line(self, trainer: pl.Trainer, record: EpochRecord) -> str:
        """``epoch k/N`` counted from 1, the logged metrics, what the epoch cost and an estimate of the time left:
        the mean epoch time so far times the epochs left (an upper bound when early stopping ends the run sooner)."""
        metrics = trainer.callback_metrics
        shown = " ".join(
            f"{k}={float(metrics[k]):.4f}" for k in ("train/loss", "train/acc", "val/loss", "val/acc") if k in metrics
        )
        memory = f"{'rss peak' if self.rss_resettable else 'rss peak since start'} {record.rss_peak_mib:.0f} MiB"
        if record.gpu_peak_mib is not None:
            memory = f"gpu peak {record.gpu_peak_mib:.0f} MiB, {memory}"
        cost = (
            f"{duration(record.seconds)} (data {duration(record.data)}, train {duration(record.compute)}, "
            f"val {duration(record.validation)}), {record.samples_per_s:.0f} samples/s, {memory}"
        )
        left = trainer.max_epochs - trainer.current_epoch - 1  # type: ignore[operator]
        eta = duration(left * sum(e.seconds for e in self.epochs) / len(self.epochs))
        return f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs} | {shown} | {cost} | {eta} left"

    def state_dict(self) -> dict[str, float]:
        return dict(self.totals)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.totals = {key: float(state_dict.get(key, 0.0)) for key in self.totals}


def run_times(timer: Timer, clock: EpochClock) -> dict[str, float]:
    """The run's time by part, in seconds, including the time before its resumes: ``time/train_total_s`` (fitting,
    its validation included), of which ``time/data_total_s`` and ``time/compute_total_s``, and
    ``time/eval_total_s`` (validation and test outside fitting)."""
    return {
        "time/train_total_s": timer.time_elapsed("train"),
        "time/data_total_s": clock.totals["data"],
        "time/compute_total_s": clock.totals["compute"],
        "time/eval_total_s": timer.time_elapsed("validate") + timer.time_elapsed("test"),
    }


def times_line(times: dict[str, float]) -> str:
    """One line: the run's time, its parts with their shares, and the slowest of them."""
    total = times["time/train_total_s"] + times["time/eval_total_s"]
    parts = {
        "training compute": times["time/compute_total_s"],
        "data loading": times["time/data_total_s"],
        "validation and the rest of training": max(
            0.0, times["time/train_total_s"] - times["time/compute_total_s"] - times["time/data_total_s"]
        ),
        "final evaluation": times["time/eval_total_s"],
    }
    shown = ", ".join(
        f"{name} {duration(seconds)} ({100 * seconds / max(total, 1e-9):.0f}%)" for name, seconds in parts.items()
    )
    return f"time: {duration(total)} in all: {shown}; slowest: {max(parts, key=parts.__getitem__)}"
