"""Entry point: ``python main.py [flag=value ...]``. See README for the flags and cfg/config.yaml for defaults."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from training.run import train


@hydra.main(version_base="1.3", config_path="cfg", config_name="config")
def main(cfg: DictConfig) -> float:
    metrics = train(cfg)
    # Returned for Hydra sweepers (e.g. Optuna): the validation accuracy of the selected checkpoint.
    return float(metrics.get("val/acc", 0.0))


if __name__ == "__main__":
    sys.exit(main() and 0)
