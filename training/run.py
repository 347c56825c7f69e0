"""``train(cfg)``: check the config, build data, model and trainer, then fit and/or evaluate. Returns the metrics."""

from __future__ import annotations

import os
import secrets
import string
import sys
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import (
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
    RichModelSummary,
    RichProgressBar,
)
from pytorch_lightning.loggers import Logger, WandbLogger
from pytorch_lightning.utilities.model_summary import ModelSummary

from ckconv.hints import count_parameters
from datamodules import DATAMODULES
from models.module import ClassificationModule
from models.plot_kernels import KernelPlotCallback
from training.allocator import keep_freed_memory
from training.build import build_datamodule, build_module, resolve_path
from training.callbacks import ConfigInCheckpoint, EpochSummary, GradNormLogger, RNGStateCallback
from training.checkpoints import AtomicCheckpointIO, load_weights, read_checkpoint, remove_stale_temporaries
from training.config import check_against_data, validate_config
from training.loggers import AppendingCSVLogger


def output_dir(cfg: DictConfig) -> Path:
    """``train.output_dir``, else Hydra's run directory, else ``outputs/<timestamp>``."""
    if cfg.train.output_dir:
        return resolve_path(cfg.train.output_dir)
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:
        return resolve_path(f"outputs/{time.strftime('%Y-%m-%d/%H-%M-%S')}")


def _accelerator(cfg: DictConfig) -> str:
    if cfg.device == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    if cfg.device in ("cuda", "gpu"):
        if not torch.cuda.is_available():
            raise RuntimeError("device=cuda but no CUDA device is visible; use device=cpu or device=auto.")
        return "gpu"
    return "cpu"


def _precision(cfg: DictConfig, accelerator: str) -> str:
    if not cfg.train.mixed_precision:
        return "32-true"
    if accelerator == "gpu":
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed"


def _loggers(cfg: DictConfig, out: Path) -> list[Logger]:
    loggers: list[Logger] = [AppendingCSVLogger(save_dir=str(out), name="", version="logs")]
    if not cfg.debug and os.environ.get("WANDB_MODE") != "disabled":
        loggers.append(
            WandbLogger(
                project=cfg.wandb.project,
                entity=cfg.wandb.entity or None,
                save_dir=str(out),
                id=_wandb_run_id(out),
                resume="allow",
            )
        )
    return loggers


def _wandb_run_id(out: Path) -> str:
    """One W&B run per output directory, so a resumed run continues the same W&B run."""
    path = out / "wandb_run_id.txt"
    if path.is_file():
        return path.read_text().strip()
    alphabet = string.ascii_lowercase + string.digits
    run_id = "".join(secrets.choice(alphabet) for _ in range(8))  # the form of W&B's own run ids
    path.write_text(run_id)
    return run_id


def build_trainer(cfg: DictConfig, out: Path, config: dict[str, Any]) -> tuple[pl.Trainer, ModelCheckpoint]:
    """The Lightning trainer with the project's callbacks, loggers and checkpoint I/O."""
    accelerator = _accelerator(cfg)
    checkpoint = ModelCheckpoint(
        dirpath=out / "checkpoints",
        filename="best",
        monitor="val/acc",
        mode="max",
        save_top_k=1,
        enable_version_counter=False,
    )
    # Lightning's save_last only writes when a top-k checkpoint was written in the same step, so a run whose
    # accuracy stalls would resume from a stale epoch. An unmonitored checkpoint writes last.ckpt every epoch.
    last = ModelCheckpoint(dirpath=out / "checkpoints", filename="last", save_top_k=1, enable_version_counter=False)
    callbacks: list[pl.Callback] = [
        checkpoint,
        last,
        EarlyStopping(monitor="val/acc", mode="max", patience=cfg.train.max_epochs_no_improvement),
        RNGStateCallback(),
        ConfigInCheckpoint(config),
        EpochSummary(),
        RichModelSummary(max_depth=2),
        LearningRateMonitor(logging_interval="step"),
        KernelPlotCallback(out / "kernels", every_n_epochs=max(1, cfg.train.epochs // 5)),
    ]
    if sys.stdout.isatty():  # a live bar in a terminal; logs and CI get EpochSummary's one line per epoch
        callbacks.append(RichProgressBar())
    if cfg.train.track_grad_norm >= 0:
        callbacks.append(GradNormLogger(float(cfg.train.track_grad_norm)))
    devices: Any = cfg.train.avail_gpus if cfg.train.avail_gpus > 0 else ("auto" if accelerator == "gpu" else 1)
    strategy: Any = "auto"
    if cfg.train.distributed:
        strategy = pl.strategies.DDPStrategy(
            find_unused_parameters=False, process_group_backend="nccl" if accelerator == "gpu" else "gloo"
        )
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=devices,
        num_nodes=cfg.train.num_nodes,
        strategy=strategy,
        sync_batchnorm=bool(cfg.train.distributed) and accelerator == "gpu",  # SyncBatchNorm is GPU-only
        precision=_precision(cfg, accelerator),
        max_epochs=cfg.train.epochs,
        gradient_clip_val=cfg.train.grad_clip or None,
        accumulate_grad_batches=cfg.train.accumulate_grad_steps,
        deterministic=cfg.deterministic,
        benchmark=not cfg.deterministic,
        callbacks=callbacks,
        logger=_loggers(cfg, out),
        plugins=[AtomicCheckpointIO()],
        default_root_dir=str(out),
        enable_progress_bar=sys.stdout.isatty(),
        enable_model_summary=True,
        log_every_n_steps=10,
        limit_train_batches=cfg.train.limit_train_batches,
        limit_val_batches=cfg.train.limit_val_batches,
        limit_test_batches=cfg.train.limit_test_batches,
        num_sanity_val_steps=0,
    )
    return trainer, checkpoint


def _metrics(results: list[dict[str, float]]) -> dict[str, float]:
    merged: dict[str, float] = {}
    for entry in results:
        merged |= {k: float(v) for k, v in entry.items()}
    return merged


def train(cfg: DictConfig) -> dict[str, float]:
    """Run what ``cfg`` asks for and return the final metrics (``val/acc``, ``test/acc``, ...).

    - ``train.dry_run``: build the model from the dataset's metadata only; print its summary and parameter count.
    - ``train.do``: fit (resuming from ``train.resume`` if given), then evaluate the best checkpoint on val and test.
    - ``train.do=False``: evaluate the weights of ``pretrained.filename``.
    """
    validate_config(cfg, tuple(DATAMODULES))
    keep_freed_memory()  # CPU steps re-fault every large activation otherwise (training/allocator.py)
    datamodule = build_datamodule(cfg)
    meta = datamodule.meta
    check_against_data(cfg, meta.data_dim)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    module = build_module(cfg, meta)
    parameters = count_parameters(module.parameters())

    if cfg.train.dry_run:
        print(ModelSummary(module, max_depth=3))
        print(f"parameters: {parameters}")
        return {"parameters": float(parameters)}

    if cfg.pretrained.load:
        load_weights(module, resolve_path(cfg.pretrained.filename))
    resume = resolve_path(cfg.train.resume) if cfg.train.resume else None
    if resume is not None:
        read_checkpoint(resume)  # a clear error now rather than deep inside Lightning

    if int(os.environ.get("LOCAL_RANK", "0")) == 0 and int(os.environ.get("NODE_RANK", "0")) == 0:
        # Missing or corrupt data fails here, before the run folder exists (Lightning repeats this as a no-op).
        datamodule.prepare_data()
    out = output_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out / "checkpoints")  # left by a run killed while writing a checkpoint
    config = OmegaConf.to_container(cfg, resolve=True)
    OmegaConf.save(cfg, out / "config.yaml", resolve=True)
    if cfg.train.compile:
        module.net = torch.compile(module.net)  # type: ignore[assignment]
    trainer, checkpoint = build_trainer(cfg, out, config)  # type: ignore[arg-type]

    metrics: dict[str, float] = {"parameters": float(parameters)}
    if cfg.test.before_train:
        metrics |= {f"before_train/{k}": v for k, v in _metrics(trainer.test(module, datamodule=datamodule)).items()}
    if cfg.train.do:
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume) if resume else None)
        last = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        metrics |= {f"{k}_last": v for k, v in last.items() if not k.endswith("_best")}
        best = checkpoint.best_model_path
        if best:
            load_weights(module, best)
            metrics["best_checkpoint"] = best  # type: ignore[assignment]
    metrics |= _metrics(trainer.validate(module, datamodule=datamodule, verbose=False))
    metrics |= _metrics(trainer.test(module, datamodule=datamodule, verbose=False))
    for logger in trainer.loggers:
        logger.log_metrics({k: v for k, v in metrics.items() if isinstance(v, float)})
        logger.save()
    if trainer.is_global_zero:
        shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float) and "acc" in k)
        print(f"Final: {shown}  (outputs: {out})")
    return metrics


__all__ = ["ClassificationModule", "build_trainer", "output_dir", "train"]
