"""The run's loggers besides W&B: a CSV log that survives resuming (always), and TensorBoard (``train.tensorboard``).

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

from lightning_fabric.loggers.logger import rank_zero_experiment
from omegaconf import DictConfig
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
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


def tensorboard_logger(out: Path) -> TensorBoardLogger:
    """TensorBoard event files in ``<run>/tensorboard`` (``tensorboard --logdir <run>/tensorboard``); a resumed
    run adds a new event file next to the earlier ones."""
    return TensorBoardLogger(save_dir=str(out), name="", version="tensorboard", default_hp_metric=False)
