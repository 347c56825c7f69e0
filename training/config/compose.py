"""The config ``python main.py <overrides>`` runs with, for code that runs outside ``main.py`` (tools, tests)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

import training.config.schema  # noqa: F401 (registers the schema that cfg/config.yaml builds on)

CONFIG_DIR = Path(__file__).resolve().parent.parent.parent / "cfg"


def compose(overrides: Sequence[str] = (), return_hydra_config: bool = False) -> DictConfig:
    """Compose cfg/config.yaml with ``overrides`` as Hydra does for ``main.py`` (raises Hydra's and OmegaConf's
    errors: an unknown flag, a wrong type, a preset that does not exist)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides), return_hydra_config=return_hydra_config)
