"""Where a run's time and memory go: per-epoch throughput, time per part and peak memory as logged metrics, and a
summary of the whole run.

Every training epoch logs (to the CSV log, W&B and TensorBoard, like any metric):

- ``time/epoch_s``: the epoch from its start to its end, validation, checkpoints and plots included;
- ``time/data_s``: waiting for training batches (loading, collating, copying to the device);
- ``time/compute_s``: training steps (forward, backward, optimizer step, weight average);
- ``time/val_s``: the validation loop;
- ``time/samples_per_s``: training examples per second over the training part of the epoch (``data_s + compute_s``,
  from the epoch's start to the end of its last step), counted over all processes of a multi-process run;
- ``memory/rss_peak_mib``: the peak resident memory of this process (not of data-loader workers) during the epoch,
  where Linux lets a process reset its peak (``/proc/self/clear_refs``), else since the process started;
- ``memory/gpu_peak_mib``: on a GPU, the peak memory allocated by tensors during the epoch
  (``torch.cuda.max_memory_allocated``, reset at each epoch's start).

Times are taken on the host with ``time.perf_counter``. On a GPU, kernels run after the host has queued them: a step's
kernels that still run while the next batch is fetched count as compute of the next step (the first read of the mask
widths waits for them); the device is synchronised before validation and at the epoch's end, so the epoch's totals
hold all its work. None of these measurements synchronises inside a step.
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities.data import extract_batch_size

# Metrics that measure the machine, not the model: they differ between two runs of the same seed.
MEASURED_PREFIXES = ("time/", "memory/")

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")
_MIB = 1024 * 1024


def reset_rss_peak() -> bool:
    """Reset this process's peak resident memory to its current one (Linux: ``echo 5 > /proc/self/clear_refs``).

    Returns:
        Whether the peak was reset; if not, :func:`rss_peak_mib` reports the peak since the process started.
    """
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
    """What one training epoch cost (the values logged under ``time/`` and ``memory/``)."""

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


@dataclass
class _Totals:
    data: float = 0.0
    compute: float = 0.0
    validation: float = 0.0
    evaluation: float = 0.0
    epochs: list[EpochRecord] = field(default_factory=list)


# The parts of a run's time that a checkpoint carries over to the run that resumes it (RunTimer.state_dict).
_CARRIED = ("total", "data", "compute", "validation", "evaluation")


class RunTimer(pl.Callback):
    """Measures each training epoch's parts, samples and peak memory, logs them as metrics (see the module
    docstring) and keeps the totals of the run for :meth:`summary`. Its clock starts when it is created."""

    def __init__(self) -> None:
        self._created = time.perf_counter()
        self._totals = _Totals()
        self._before = dict.fromkeys(_CARRIED, 0.0)  # seconds of the same run before it was last resumed
        self._rss_resettable = False
        self._epoch_start = self._mark = self._step_start = self._val_start = self._eval_start = 0.0
        self._data = self._compute = self._validation = 0.0
        self._samples = 0

    @property
    def epochs(self) -> list[EpochRecord]:
        """The epochs measured so far by this process, oldest first."""
        return self._totals.epochs

    @staticmethod
    def of(trainer: pl.Trainer) -> RunTimer | None:
        """The trainer's RunTimer, if it has one."""
        return next((c for c in trainer.callbacks if isinstance(c, RunTimer)), None)  # type: ignore[attr-defined]

    @staticmethod
    def _synchronize(pl_module: pl.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._rss_resettable = reset_rss_peak()
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
        self._synchronize(pl_module)
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._synchronize(pl_module)
        seconds = time.perf_counter() - self._val_start
        if trainer.state.fn == TrainerFn.FITTING:
            self._validation += seconds
        else:
            self._totals.evaluation += seconds

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._eval_start = time.perf_counter()

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._synchronize(pl_module)
        self._totals.evaluation += time.perf_counter() - self._eval_start

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Runs after the epoch's validation loop: the record holds the whole epoch.
        self._synchronize(pl_module)
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
        self._totals.epochs.append(record)
        self._totals.data += record.data
        self._totals.compute += record.compute
        self._totals.validation += record.validation
        # Under DDP: the slowest process's times and the largest process's memory (throughput already counts every
        # process's samples); one reduction per epoch, nothing on a single process.
        pl_module.log_dict(record.metrics(), on_step=False, on_epoch=True, sync_dist=True, reduce_fx="max")

    def state_dict(self) -> dict[str, float]:
        """The run's time so far by part (this process's and that before its resumes), saved in every checkpoint so
        that a resumed run's totals cover the whole run. Time after the last checkpoint of an interrupted process is
        not carried over: the resumed run does that work again, and counts it then."""
        t = self._totals
        now = {
            "total": time.perf_counter() - self._created,
            "data": t.data,
            "compute": t.compute,
            "validation": t.validation,
            "evaluation": t.evaluation,
        }
        return {key: self._before[key] + now[key] for key in _CARRIED}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Take the time of the run before this resume from its checkpoint (checkpoints without it carry none)."""
        self._before = {key: float(state_dict.get(key, 0.0)) for key in _CARRIED}

    @property
    def resumed_after(self) -> float:
        """Seconds of this run before it was last resumed (0 for a run that was not resumed)."""
        return self._before["total"]

    @property
    def rss_peak_label(self) -> str:
        """What ``memory/rss_peak_mib`` measured: the epoch's peak, or the process's since it started."""
        return "rss peak" if self._rss_resettable else "rss peak since start"

    def totals(self) -> dict[str, float]:
        """The run's time so far by part, in seconds, including the time before its resumes (to each one's last
        checkpoint): ``time/total_s`` (since this timer was created, plus that), and
        ``time/{data,compute,val,eval,other}_total_s`` (``eval``: validation and test outside training; ``other``:
        the rest, e.g. start-up, checkpoints, logging and kernel plots)."""
        run = self.state_dict()
        total = run["total"]
        parts = {
            "time/data_total_s": run["data"],
            "time/compute_total_s": run["compute"],
            "time/val_total_s": run["validation"],
            "time/eval_total_s": run["evaluation"],
        }
        return {"time/total_s": total, **parts, "time/other_total_s": max(0.0, total - sum(parts.values()))}

    def summary(self) -> str:
        """One line: the total time (and how much of it came before a resume), each part with its share, and the
        slowest of data loading, training compute, validation and final evaluation."""
        totals = self.totals()
        total = totals["time/total_s"]
        names = {
            "time/compute_total_s": "training compute",
            "time/data_total_s": "data loading",
            "time/val_total_s": "validation",
            "time/eval_total_s": "final evaluation",
            "time/other_total_s": "other",
        }
        shown = ", ".join(
            f"{name} {duration(totals[key])} ({100 * totals[key] / total:.0f}%)" for key, name in names.items()
        )
        slowest = max((key for key in names if key != "time/other_total_s"), key=lambda key: totals[key])
        resumed = f", {duration(self.resumed_after)} of it before the run was resumed" if self.resumed_after else ""
        return f"time: {duration(total)} in all{resumed}: {shown}; slowest: {names[slowest]}"
