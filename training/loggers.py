"""The run's loggers: a CSV log that survives resuming (always), TensorBoard (``train.tensorboard``) with one event
file per process, and W&B without the setting that makes it warn at every run.

TensorBoard needs the ``tensorboard`` package, an optional extra (``pip install -e '.[tensorboard]'``);
:func:`check_logger_packages` refuses the flag before anything is written when the package is missing. MLflow is not
offered: its logger is one entry in Lightning, but the ``mlflow-skinny`` package adds 19 packages to this
environment (a web server, cryptography, a cloud SDK among them) for what the CSV log and W&B already record.
"""

from __future__ import annotations

import csv
import importlib.util
import os
from pathlib import Path
from typing import Any

from lightning_fabric.loggers.logger import rank_zero_experiment
from lightning_fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter

from training.config import ConfigError


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        # Lightning deletes metrics.csv here; a resumed run must keep it. Start from its header instead.
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as file:
                self.metrics_keys = sorted(next(csv.reader(file), []))


class AppendingCSVLogger(CSVLogger):
    """``CSVLogger`` whose ``metrics.csv`` survives a restart in the same directory (rows are appended)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


def tensorboard_installed() -> bool:
    """Whether the ``tensorboard`` package, which Lightning's TensorBoard logger writes through, can be imported."""
    try:
        return importlib.util.find_spec("tensorboard") is not None
    except (ImportError, ValueError):  # a module set to None or without a spec counts as missing
        return False


def check_logger_packages(cfg: DictConfig) -> None:
    """Refuse a selected logger whose package is missing (before anything is written).

    Raises:
        ConfigError: naming the flag and the install command.
    """
    if cfg.train.tensorboard and not tensorboard_installed():
        raise ConfigError(
            "train.tensorboard=True needs the tensorboard package, which is not installed: "
            "pip install -e '.[tensorboard]' (or set train.tensorboard=False)."
        )


class RunTensorBoardLogger(TensorBoardLogger):
    """``TensorBoardLogger`` that writes one event file per process instead of one per trainer call.

    Lightning closes the writer when each of ``fit``, ``validate`` and ``test`` ends, and the next value opens a new
    event file: a run wrote four (the last for its final metrics). Here the end of a trainer call only flushes the
    writer; it is closed when the logger is collected, and everything logged is on disk after each flush and after
    the run's final ``save()``.
    """

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._experiment is not None:
            self.experiment.flush()
        if status == "success":
            self.save()  # the hparams file, as Lightning's finalize writes it

    def __del__(self) -> None:
        if getattr(self, "_experiment", None) is not None:
            self._experiment.close()


def tensorboard_logger(out: Path) -> TensorBoardLogger:
    """TensorBoard event files in ``<run>/tensorboard`` (``tensorboard --logdir <run>/tensorboard``): one per
    process, so a resumed run adds a second next to the first."""
    return RunTensorBoardLogger(save_dir=str(out), name="", version="tensorboard", default_hp_metric=False)


class RunWandbLogger(WandbLogger):
    """``WandbLogger`` without the ``anonymous`` setting, which the pinned wandb (0.31) ignores and warns about.

    Lightning passes ``anonymous=None`` to ``wandb.init`` when none is given, and wandb prints "The anonymous setting
    has no effect and will be removed in a future version" for any value passed, None included. Leaving it out is
    what wandb's own default is, so nothing else changes. Arguments are ``WandbLogger``'s.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)
