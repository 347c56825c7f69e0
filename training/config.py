"""Checks of a composed config that run before any data is read: types, dead flags and impossible combinations.

Hydra already refuses unknown keys (the config is in struct mode). Here every value is checked against the type of
its default in ``cfg/config.yaml``, flags that did nothing in the original are refused unless left at their default,
and combinations that cannot work are reported with the flag to change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from ckconv import CONV_TYPES, KERNEL_NETS

DEFAULTS_PATH = Path(__file__).resolve().parent.parent / "cfg" / "config.yaml"


class ConfigError(ValueError):
    """A flag has a wrong type or value, or flags contradict each other. The message names the flag(s)."""


# flag -> (the only accepted value, why)
DEAD_FLAGS: dict[str, tuple[Any, str]] = {
    "net.no_stages": (-1, "the original never used it"),
    "kernel.input_scale": (0.0, "the original never used it"),
    "kernel.num_edges": (-1, "point-cloud convolutions are not implemented"),
    "kernel.bottleneck_factor": (-1, "point-cloud convolutions are not implemented"),
    "mask.temperature": (0.0, "only the Gaussian mask exists (the original's other masks never worked)"),
    "conv.padding": ("same", "every convolution keeps the input size"),
    "conv.stride": (1, "strided continuous convolutions are not implemented; use net.downsampling"),
    "dataset.params.noise_padded": (False, "noise-padded CIFAR is not implemented"),
    "dataset.params.memory_size": (-1, "the original never used it"),
    "dataset.params.drop_rate": (0.0, "irregularly sampled Speech Commands is not implemented"),
    "dataset.params.target_idx": (0, "regression tasks are not implemented"),
    "dataset.params.metric": ("MAE", "regression tasks are not implemented"),
    "dataset.params.num_nodes": (None, "point-cloud datasets (ModelNet) are not implemented"),
    "pretrained.alias": ("best", "checkpoints are chosen by pretrained.filename"),
    "hooks_enabled": (False, "the W&B hooks are replaced by the kernel-plot callback (models.plot_kernels)"),
}

NET_TYPES = ("CCNN", "ResNet")
MASK_TYPES = ("gaussian",)
DATA_TYPES = ("default", "sequence")
DEVICES = ("auto", "cuda", "cpu", "gpu")


def _defaults() -> DictConfig:
    cfg = OmegaConf.load(DEFAULTS_PATH)
    assert isinstance(cfg, DictConfig)
    return cfg


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(type(value), "a list")


def _check_types(cfg: Any, reference: Any, prefix: str) -> None:
    """Every leaf must have the type of its default (ints pass where floats are expected)."""
    for key, ref in reference.items():
        if key == "defaults" or key not in cfg:
            continue
        name = f"{prefix}{key}"
        value = cfg[key]
        if isinstance(ref, DictConfig):
            if not isinstance(value, DictConfig):
                raise ConfigError(f"{name} must be a group of flags, got {value!r}.")
            _check_types(value, ref, name + ".")
            continue
        if isinstance(ref, ListConfig):
            if not isinstance(value, ListConfig | list):
                raise ConfigError(f"{name} must be a list, got {value!r}.")
            continue
        if ref is None or value is None:
            continue
        if isinstance(ref, bool):
            ok = isinstance(value, bool)
        elif isinstance(ref, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(ref, float):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        else:
            ok = isinstance(value, str)
        if key in ("size", "use_fft", "resume", "filename"):
            ok = True  # union-typed flags, checked below
        if not ok:
            raise ConfigError(f"{name} must be {_type_name(ref)}, got {value!r} ({type(value).__name__}).")


def _choice(cfg: DictConfig, flag: str, allowed: tuple) -> None:
    value = OmegaConf.select(cfg, flag)
    if value not in allowed:
        raise ConfigError(f"{flag} must be one of {allowed}, got {value!r}.")


def validate_config(cfg: DictConfig, dataset_names: tuple[str, ...] | None = None) -> None:
    """Raise :class:`ConfigError` naming the flag if ``cfg`` cannot describe a run. Reads no data."""
    _check_types(cfg, _defaults(), "")
    for flag, (allowed, why) in DEAD_FLAGS.items():
        value = OmegaConf.select(cfg, flag)
        if value != allowed:
            raise ConfigError(f"{flag}={value!r} is not supported ({why}); leave it at {allowed!r}.")

    _choice(cfg, "net.type", NET_TYPES)
    _choice(cfg, "conv.type", tuple(CONV_TYPES))
    _choice(cfg, "kernel.type", tuple(KERNEL_NETS))
    _choice(cfg, "mask.type", MASK_TYPES)
    _choice(cfg, "dataset.data_type", DATA_TYPES)
    _choice(cfg, "device", DEVICES)
    if dataset_names is not None:
        _choice(cfg, "dataset.name", dataset_names)

    size = cfg.kernel.size
    if not (size in ("same", "full") or (isinstance(size, int) and size > 0)):
        raise ConfigError(f"kernel.size must be 'same', 'full' or a positive integer, got {size!r}.")
    if cfg.conv.use_fft not in (True, False, "auto"):
        raise ConfigError(f"conv.use_fft must be True, False or auto, got {cfg.conv.use_fft!r}.")
    if cfg.conv.type in ("Conv", "SeparableConv") and not isinstance(size, int):
        raise ConfigError(f"conv.type={cfg.conv.type} (discrete) needs an integer kernel.size, got {size!r}.")
    for flag in ("train.batch_size", "train.epochs", "net.no_hidden", "kernel.no_hidden", "kernel.no_layers"):
        if OmegaConf.select(cfg, flag) <= 0:
            raise ConfigError(f"{flag} must be positive, got {OmegaConf.select(cfg, flag)}.")
    if cfg.net.no_blocks < 0:
        raise ConfigError(f"net.no_blocks must be >= 0, got {cfg.net.no_blocks}.")
    if cfg.optimizer.lr <= 0:
        raise ConfigError(f"optimizer.lr must be positive, got {cfg.optimizer.lr}.")
    if cfg.train.accumulate_grad_steps <= 0 or cfg.train.batch_size % cfg.train.accumulate_grad_steps:
        raise ConfigError(
            f"train.batch_size={cfg.train.batch_size} must be divisible by "
            f"train.accumulate_grad_steps={cfg.train.accumulate_grad_steps} (each step sees batch_size / steps)."
        )
    if cfg.test.batch_size_multiplier <= 0:
        raise ConfigError(f"test.batch_size_multiplier must be positive, got {cfg.test.batch_size_multiplier}.")
    if "FlexConv" in cfg.conv.type and cfg.kernel.init_spatial_value != 1.0:
        raise ConfigError(
            "kernel.init_spatial_value is derived from mask.init_value for FlexConv layers; leave it at 1.0 "
            "or use conv.type=CKConv/SeparableCKConv."
        )
    if "FlexConv" in cfg.conv.type and cfg.mask.init_value <= 0:
        raise ConfigError(f"mask.init_value must be positive for {cfg.conv.type}, got {cfg.mask.init_value}.")
    if cfg.mask.dynamic_cropping and not 0 < cfg.mask.threshold < 1:
        raise ConfigError(
            f"mask.threshold must be in (0, 1) with mask.dynamic_cropping=True, got {cfg.mask.threshold}."
        )
    if not cfg.train.do and not cfg.pretrained.load and not cfg.train.dry_run:
        raise ConfigError(
            "train.do=False evaluates a checkpoint: also set pretrained.load=True pretrained.filename=..."
        )
    if cfg.pretrained.load and not cfg.pretrained.filename:
        raise ConfigError("pretrained.load=True needs pretrained.filename=<path of a .ckpt file>.")
    if cfg.train.distributed and cfg.train.avail_gpus == 1:
        raise ConfigError("train.distributed=True needs train.avail_gpus >= 2 (or -1 for all visible devices).")
    if cfg.train.resume and cfg.pretrained.load:
        raise ConfigError(
            "train.resume and pretrained.load exclude each other: resume continues a run, "
            "pretrained.load starts from (or evaluates) a checkpoint's weights."
        )


def check_against_data(cfg: DictConfig, data_dim: int) -> None:
    """Checks that need the dataset's dimension (known from its metadata, before loading)."""
    if cfg.net.data_dim not in (0, data_dim):
        raise ConfigError(
            f"net.data_dim={cfg.net.data_dim} but dataset.name={cfg.dataset.name} "
            f"(data_type={cfg.dataset.data_type}) is {data_dim}D; leave net.data_dim at 0."
        )
    if cfg.conv.causal and data_dim != 1:
        raise ConfigError(
            f"conv.causal=True needs 1D data, but dataset.name={cfg.dataset.name} with "
            f"dataset.data_type={cfg.dataset.data_type} is {data_dim}D; "
            "use dataset.data_type=sequence or conv.causal=False."
        )
