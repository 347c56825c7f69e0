"""Callbacks of a run's state: checkpoints that follow their run folder, RNG state and the config in checkpoints,
gradient-norm logging."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities import grad_norm


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose restored state points into the folder it writes to now.

    Lightning restores the best score only when the checkpoint folder is unchanged, yet restores the best path always.
    A run folder copied elsewhere (``cp -r run run2``) and resumed there would then compare new scores against none,
    overwriting ``best.ckpt`` with a worse model, and report ``run/checkpoints/best.ckpt`` (another run's file) as its
    best. Here every path of the restored state that lay in the old folder is moved to the same name in the new one,
    so the score and the paths are restored together.
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old = state_dict.get("dirpath")
        if old is not None and self.dirpath is not None and Path(old) != Path(self.dirpath):

            def moved(path: str) -> str:
                return str(Path(self.dirpath) / Path(path).name) if path and Path(path).parent == Path(old) else path

            state_dict = {
                **state_dict,
                "dirpath": self.dirpath,
                "best_model_path": moved(state_dict.get("best_model_path", "")),
                "kth_best_model_path": moved(state_dict.get("kth_best_model_path", "")),
                "last_model_path": moved(state_dict.get("last_model_path", "")),
                "best_k_models": {moved(k): v for k, v in state_dict.get("best_k_models", {}).items()},
            }
        super().load_state_dict(state_dict)


class RNGStateCallback(pl.Callback):
    """Stores the Python, NumPy and torch (CPU and CUDA) RNG states in every checkpoint and restores them on resume,
    so a resumed run draws the same dropout masks and augmentations as an uninterrupted one would from that point.

    What a resume restores: the weights, the optimizer and learning-rate schedule states, the epoch and step counters,
    the callbacks' states (best score and paths, early-stopping patience) and these RNG states; the order of the
    training examples and the workers' seeds are functions of (seed, epoch) (datamodules.sampling). Checkpoints are
    written at epoch ends, so a run resumes at the epoch boundary after its last completed epoch. With
    ``deterministic=True`` the resumed run then equals the uninterrupted one bit for bit (tests/test_trust.py).
    Not restored: the position inside a killed epoch (that epoch runs again from its start), and results of
    nondeterministic kernels (cuDNN autotuning, atomics on GPU) when ``deterministic=False``.
    """

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        checkpoint["rng_states"] = {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        states = checkpoint.get("rng_states")
        if not states:
            return
        random.setstate(states["python"])
        np.random.set_state(states["numpy"])
        torch.set_rng_state(states["torch"])
        if states["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])


class ConfigInCheckpoint(pl.Callback):
    """Embeds the resolved run config in every checkpoint (``checkpoint["ccnn_config"]``)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        checkpoint["ccnn_config"] = self.config


class GradNormLogger(pl.Callback):
    """Logs the gradient p-norm of every parameter and the total (``train.track_grad_norm=p``)."""

    def __init__(self, norm_type: float) -> None:
        self.norm_type = norm_type

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        pl_module.log_dict(grad_norm(pl_module, norm_type=self.norm_type))
