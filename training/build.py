"""The one place that turns config flags into constructor calls: datamodule, network, LightningModule."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from hydra.utils import get_original_cwd
from omegaconf import DictConfig, OmegaConf

from datamodules import CCNNDataModule, DataMeta, datamodule_class
from models.ccnn import CCNN
from models.module import ClassificationModule
from training.config import DEAD_FLAGS, ConfigError

# dataset.params flags that config.py refuses unless left at their default (they did nothing in the original).
DEAD_DATASET_PARAMS = {flag.rsplit(".", 1)[1] for flag in DEAD_FLAGS if flag.startswith("dataset.params.")}


def resolve_path(path: str) -> Path:
    """Relative paths are taken from the directory the run was started in (Hydra may have changed it)."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    try:
        base = Path(get_original_cwd())
    except ValueError:  # not running under @hydra.main (tests, notebooks)
        base = Path.cwd()
    return base / p


def datamodule_options(cfg: DictConfig) -> dict[str, Any]:
    """Keyword arguments of the selected datamodule: every ``dataset.params.*`` flag that is set (not null), plus
    ``dataset.data_type`` and ``dataset.augment`` when they differ from their defaults. A flag the dataset does not
    take is refused, so that no flag is silently ignored."""
    cls = datamodule_class(cfg.dataset.name)
    accepted = set(inspect.signature(cls.__init__).parameters)
    requested: dict[str, tuple[str, Any]] = {}
    if cfg.dataset.data_type != "default":
        requested["data_type"] = ("dataset.data_type", cfg.dataset.data_type)
    if cfg.dataset.augment:
        requested["augment"] = ("dataset.augment", cfg.dataset.augment)
    for key, value in cfg.dataset.params.items():
        if value is not None and key not in DEAD_DATASET_PARAMS:
            requested[str(key)] = (f"dataset.params.{key}", value)
    options: dict[str, Any] = {}
    for key, (flag, value) in requested.items():
        if key not in accepted:
            raise ConfigError(f"{flag}={value!r} is not used by dataset.name={cfg.dataset.name}; remove it.")
        options[key] = value
    return options


def build_datamodule(cfg: DictConfig) -> CCNNDataModule:
    """The datamodule of ``dataset.name``; constructing it reads nothing from disk."""
    steps = cfg.train.accumulate_grad_steps
    batch_size = cfg.train.batch_size // steps
    cls, options = datamodule_class(cfg.dataset.name), datamodule_options(cfg)  # these name their flags already
    try:
        return cls(
            data_dir=resolve_path(cfg.dataset.data_dir),
            batch_size=batch_size,
            test_batch_size=batch_size * cfg.test.batch_size_multiplier,
            num_workers=cfg.no_workers,
            seed=cfg.seed,
            download=cfg.dataset.download,
            **options,
        )
    except ValueError as error:  # the datamodule's own argument checks
        raise ConfigError(f"dataset.name={cfg.dataset.name}: {error}") from error


def conv_options(cfg: DictConfig) -> dict[str, Any]:
    """Keyword arguments shared by every conv layer of the network."""
    options: dict[str, Any] = {
        "causal": cfg.conv.causal,
        "bias": cfg.conv.bias,
        "use_fft": cfg.conv.use_fft,
        "kernel_size": cfg.kernel.size,
    }
    if cfg.conv.type in ("Conv", "SeparableConv"):
        return options
    kernel_options: dict[str, Any] = {}
    if cfg.kernel.type == "MLP":
        kernel_options = {"norm": cfg.kernel.norm, "nonlinearity": cfg.kernel.nonlinearity}
    if "FlexConv" not in cfg.conv.type:
        kernel_options["init_spatial_value"] = cfg.kernel.init_spatial_value
    options |= {
        "kernel_type": cfg.kernel.type,
        "kernel_hidden_channels": cfg.kernel.no_hidden,
        "kernel_num_layers": cfg.kernel.no_layers,
        "kernel_omega_0": cfg.kernel.omega_0,
        "kernel_bias": cfg.kernel.bias,
        "kernel_options": kernel_options,
        "chang_initialize": cfg.kernel.chang_initialize,
        "cache_eval_kernels": cfg.conv.cache,
    }
    if "FlexConv" in cfg.conv.type:
        options |= {
            "mask_init_value": cfg.mask.init_value,
            "mask_threshold": cfg.mask.threshold,
            "mask_dynamic_cropping": cfg.mask.dynamic_cropping,
            "mask_learn_mean": cfg.mask.learn_mean,
        }
    return options


def build_network(cfg: DictConfig, meta: DataMeta) -> CCNN:
    """The CCNN for data described by ``meta``."""
    factors = OmegaConf.to_container(cfg.net.block_width_factors)
    factors = [] if factors in ([0.0], [0], []) else factors
    try:
        return CCNN(
            in_channels=meta.in_channels,
            num_classes=meta.num_classes,
            data_dim=meta.data_dim,
            input_size=meta.size,
            hidden_channels=cfg.net.no_hidden,
            num_blocks=cfg.net.no_blocks,
            block_type=cfg.net.block.type,
            prenorm=cfg.net.block.prenorm,
            norm=cfg.net.norm,
            nonlinearity=cfg.net.nonlinearity,
            dropout=cfg.net.dropout,
            dropout_in=cfg.net.dropout_in,
            dropout_type=cfg.net.dropout_type,
            conv_type=cfg.conv.type,
            conv_options=conv_options(cfg),
            block_width_factors=factors,
            downsampling=list(cfg.net.downsampling),
            downsampling_size=cfg.net.downsampling_size,
            vocab_size=meta.vocab_size,
            embedding=cfg.net.embedding,
            embedding_dim=cfg.net.embedding_dim or None,
            paired=meta.paired,
        )
    except ValueError as error:
        raise ConfigError(str(error)) from error


def build_module(cfg: DictConfig, meta: DataMeta) -> ClassificationModule:
    """Network + loss + optimizer settings."""
    optimizer = {
        "name": cfg.optimizer.name,
        "lr": cfg.optimizer.lr,
        "weight_decay": cfg.optimizer.weight_decay,
        "mask_lr_ratio": cfg.optimizer.mask_lr_ratio,
        "momentum": cfg.optimizer.momentum,
        "nesterov": cfg.optimizer.nesterov,
        "weight_decay_type": cfg.optimizer.weight_decay_type,
    }
    scheduler = {
        "name": cfg.scheduler.name,
        "warmup_epochs": max(0, cfg.scheduler.warmup_epochs),
        "decay_steps": cfg.scheduler.decay_steps,
        "factor": cfg.scheduler.factor,
        "patience": cfg.scheduler.patience,
        "mode": cfg.scheduler.mode,
    }
    net = build_network(cfg, meta)  # raises ConfigError itself
    try:
        return ClassificationModule(
            net,
            meta.num_classes,
            optimizer=optimizer,
            scheduler=scheduler,
            skip_nonfinite=cfg.train.skip_nonfinite,
        )
    except ValueError as error:
        raise ConfigError(str(error)) from error
