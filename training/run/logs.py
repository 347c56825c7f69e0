"""Where a run's output goes: the console (through logging, so that Hydra's job log ``main.log`` keeps it too) and
the metric loggers: a CSV log that survives resuming (always), TensorBoard (``train.tensorboard``) and W&B.

TensorBoard needs the ``tensorboard`` package, an optional extra (``pip install -e '.[tensorboard]'``);
:func:`check_logger_packages` refuses the flag before anything is written when the package is missing. MLflow is not
offered: its logger is one entry in Lightning, but the ``mlflow-skinny`` package adds 19 packages to this
environment (a web server, cryptography, a cloud SDK among them) for what the CSV log and W&B already record.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import logging
import os
import sys
from argparse import Namespace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from pytorch_lightning.loggers import Logger, TensorBoardLogger, WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from training.config.checks import ConfigError


class ConsoleHandler(logging.Handler):
    """A log handler for the console: warnings and errors to ``sys.stderr``, the rest to ``sys.stdout``, each as it
    is when a record comes (a live progress bar replaces ``sys.stdout`` with a stream that prints above the bar), not
    as it was when logging was configured."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


class AppendingCSVLogger(Logger):
    """Metrics in ``<run>/logs/metrics.csv``, a row per logging call with a column per metric (and ``step``).

    Lightning's ``CSVLogger`` deletes an existing ``metrics.csv`` when it starts; a resumed run must keep its rows, so
    this logger reads them back and appends. The file is written aside and moved into place at every ``save``.
    """

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.path = folder / "logs" / "metrics.csv"
        self.rows: list[dict[str, Any]] = []
        if self.path.is_file():
            with open(self.path, newline="") as file:
                self.rows = list(csv.DictReader(file))

    @property
    def name(self) -> str:
        return "logs"

    @property
    def version(self) -> str:
        return ""

    @property
    def save_dir(self) -> str:
        return str(self.path.parent)

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        """Nothing: the run's config.yaml holds its flags."""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        row = {key: value.item() if hasattr(value, "item") else value for key, value in metrics.items()}
        self.rows.append({**row, "step": step if step is not None else len(self.rows)})

    @rank_zero_only
    def save(self) -> None:
        if not self.rows:
            return
        columns = list(dict.fromkeys(key for row in self.rows for key in row))
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(f".{self.path.name}.tmp")
        partial.write_text(text.getvalue())
        os.replace(partial, self.path)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.save()


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
            "pip install -e '.[tensorboard]' (or set train.tensorboard=False).",
            "train.tensorboard",
        )


def run_loggers(cfg: DictConfig, folder: Path, wandb_id: str | None) -> list[Logger]:
    """The CSV log, TensorBoard in ``<run>/tensorboard`` (``tensorboard --logdir <run>/tensorboard``) when asked,
    and W&B with ``debug=False`` unless ``WANDB_MODE=disabled`` (one W&B run per run folder: ``wandb_id``)."""
    loggers: list[Logger] = [AppendingCSVLogger(folder)]
    if cfg.train.tensorboard:
        loggers.append(TensorBoardLogger(save_dir=str(folder), name="", version="tensorboard", default_hp_metric=False))
    if wandb_id is not None:
        loggers.append(
            WandbLogger(
                project=cfg.wandb.project,
                entity=cfg.wandb.entity,
                save_dir=str(folder),
                id=wandb_id,
                resume="allow",
                notes=cfg.comment,
            )
        )
    return loggers
