"""Entry point: ``python main.py [flag=value ...]``. See README for the flags; training/config/schema.py declares them.

``python main.py -v ...`` shows tracebacks instead of one-line errors. Exit codes: 0 done, 2 refused before anything
was written, 1 failed while running, 130 interrupted (training.cli).
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

import training.config.schema  # noqa: F401 (registers the flags' schema with Hydra)
from training.cli import main as cli_main
from training.cli import run_task
from training.run.garbage import exit_without_final_collection


@hydra.main(version_base="1.3", config_path=str(Path(__file__).resolve().parent / "cfg"), config_name="config")
def main(cfg: DictConfig) -> float | None:
    # Returned for Hydra sweepers (e.g. Optuna): the validation accuracy of the selected checkpoint (None: failed).
    return run_task(cfg)


if __name__ == "__main__":
    exit_without_final_collection(cli_main(main, sys.argv))
