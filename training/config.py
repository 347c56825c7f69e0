"""Checks that only the config can make, run before anything is built, read or written.

One place decides each rule. Value ranges of the network, its layers, the optimizer, the schedule and the data belong
to their constructors, which :mod:`training.build` calls before anything is written and whose errors it reports under
the flag's name. Here: every flag exists (Hydra's ``+flag=...`` could add one that nothing reads), has the type of
its default, flags that did nothing in the original stay at their defaults, and combinations across flag namespaces
that no single constructor sees are refused.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

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
    "conv.cache": (False, "kernels are sampled at every forward pass; a kernel cache measured no gain"),
    "dataset.params.noise_padded": (False, "noise-padded CIFAR is not implemented"),
    "dataset.params.memory_size": (-1, "the original never used it"),
    "dataset.params.drop_rate": (0.0, "irregularly sampled Speech Commands is not implemented"),
    "dataset.params.target_idx": (0, "regression tasks are not implemented"),
    "dataset.params.metric": ("MAE", "regression tasks are not implemented"),
    "dataset.params.num_nodes": (None, "point-cloud datasets (ModelNet) are not implemented"),
    "pretrained.alias": ("best", "checkpoints are chosen by pretrained.filename"),
    "hooks_enabled": (False, "the W&B hooks are replaced by the kernel-plot callback (models.plot_kernels)"),
    "hooks": ([], "the W&B hooks are replaced by the kernel-plot callback (models.plot_kernels)"),
}

# The type of each flag whose default is null ("not set"); every other flag has the type of its default. The
# dataset.params flags are typed by the dataset's own signature (training.build).
NULL_DEFAULT_TYPES: dict[str, type] = {
    "comment": str,
    "net.data_dim": int,
    "net.embedding_dim": int,
    "net.block_width_factors": list,
    "kernel.bandlimit": float,
    "optimizer.momentum": float,
    "train.track_grad_norm": float,
    "train.ema": float,
    "train.resume": str,
    "train.output_dir": str,
    "test.resolutions": list,
    "pretrained.filename": str,
    "wandb.entity": str,
}
# Flags with a default that also take null: scheduler.name=null is the original's constant rate.
NULLABLE_FLAGS = ("scheduler.name",)
# Flags that take values of several types; their owners check them (kernel.size: "same", "full" or taps; conv.use_fft:
# True, False or "auto").
UNION_FLAGS = ("kernel.size", "conv.use_fft")

NET_TYPES = ("CCNN", "ResNet")
MASK_TYPES = ("gaussian",)


def defaults() -> DictConfig:
    """cfg/config.yaml as written (without presets or command-line flags)."""
    cfg = OmegaConf.load(DEFAULTS_PATH)
    assert isinstance(cfg, DictConfig)
    return cfg


def flag_names(cfg: DictConfig, prefix: str = "") -> list[str]:
    names = []
    for key, value in cfg.items():
        if key in ("defaults", "hydra"):
            continue
        name = f"{prefix}{key}"
        names += flag_names(value, name + ".") if isinstance(value, DictConfig) else [name]
    return names


def _type_name(kind: type) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list"}[kind]


def _has_type(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is list:
        return isinstance(value, ListConfig | list)
    return isinstance(value, str)


def closest_flag(name: str, known: list[str]) -> str | None:
    """The flag ``name`` most likely misspells: among those of its own namespace first (``test.batchsize`` is
    ``test.batch_size_multiplier``, not ``train.batch_size``), then among all."""
    namespace = name.rpartition(".")[0]
    siblings = [flag for flag in known if flag.rpartition(".")[0] == namespace]
    for candidates, cutoff in ((siblings, 0.5), (known, 0.6)):
        guess = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=cutoff)
        if guess:
            return guess[0]
    return None


def not_a_flag(name: str, known: list[str]) -> ConfigError:
    """The error for a flag that cfg/config.yaml does not define, with the likeliest intended one."""
    guess = closest_flag(name, known)
    hint = f" (did you mean {guess}?)" if guess else ""
    return ConfigError(f"{name} is not a flag{hint}; every flag is listed, with its default, in cfg/config.yaml.")


def check_known_flags(cfg: DictConfig, reference: DictConfig | None = None) -> None:
    """Refuse flags that cfg/config.yaml does not define (``+optimizer.lrr=0.1`` would be read by nothing), and
    flags it defines that the command line removed (``~optimizer.lr``: every flag has a value)."""
    known = flag_names(reference if reference is not None else defaults())
    present = flag_names(cfg)
    for name in present:
        if name in known or any(name.startswith(f"{group}.") for group in known if group.endswith("params")):
            continue
        if any(name.startswith(f"{flag}.") for flag in known):
            continue  # an item of a dict-valued flag
        raise not_a_flag(name, known)
    removed = [name for name in known if name not in present and not name.startswith("dataset.params.")]
    if removed:
        raise ConfigError(
            f"{removed[0]} was removed (~{removed[0]}); every flag has a value: set it ({removed[0]}=...) or leave "
            "it at its default in cfg/config.yaml."
        )


def check_types(cfg: DictConfig, reference: DictConfig | None = None) -> None:
    """Every flag must have the type of its default (ints pass where numbers are expected), or of its entry in
    :data:`NULL_DEFAULT_TYPES` when the default is null."""
    reference = reference if reference is not None else defaults()
    for name in flag_names(reference):
        if name in UNION_FLAGS or name.startswith("dataset.params."):
            continue
        value = OmegaConf.select(cfg, name, default=None)
        ref = OmegaConf.select(reference, name, default=None)
        kind = NULL_DEFAULT_TYPES.get(name) if ref is None else (list if isinstance(ref, ListConfig) else type(ref))
        if value is None and ref is not None and name not in NULLABLE_FLAGS:
            raise ConfigError(f"{name} cannot be null: it must be {_type_name(kind)}, e.g. its default {ref!r}.")
        if value is None or kind is None:
            continue
        if isinstance(value, DictConfig) or not _has_type(value, kind):
            raise ConfigError(f"{name} must be {_type_name(kind)}, got {value!r} ({type(value).__name__}).")


def _closest_choice(value: Any, allowed: tuple) -> str:
    """``ckconv.errors.did_you_mean``'s hint, written again here: importing ckconv loads torch, and a refusal that
    needs no torch takes 0.3 s instead of 2.4 s."""
    names = [choice for choice in allowed if isinstance(choice, str) and choice]
    guess = [name for name in names if isinstance(value, str) and name.lower() == value.lower()]
    guess = guess or (difflib.get_close_matches(value, names, n=1, cutoff=0.6) if isinstance(value, str) else [])
    return f" (did you mean {guess[0]}?)" if guess else ""


def _choice(cfg: DictConfig, flag: str, allowed: tuple) -> None:
    value = OmegaConf.select(cfg, flag)
    if value not in allowed:
        raise ConfigError(f"{flag} must be one of {allowed}, got {value!r}{_closest_choice(value, allowed)}.")


def _check_count_flags(cfg: DictConfig) -> None:
    """Numbers that Lightning would refuse only when fitting starts, or ignore when out of range."""
    if not (math.isfinite(cfg.train.grad_clip) and cfg.train.grad_clip >= 0):
        raise ConfigError(f"train.grad_clip must be >= 0 (0: no clipping), got {cfg.train.grad_clip}.")
    if cfg.train.max_epochs_no_improvement < 0:
        raise ConfigError(
            f"train.max_epochs_no_improvement must be >= 0 (epochs without a better val/acc before stopping), got "
            f"{cfg.train.max_epochs_no_improvement}."
        )
    norm = cfg.train.track_grad_norm
    if norm is not None and not norm > 0:  # a p-norm needs p > 0 (math.inf: the largest entry)
        raise ConfigError(f"train.track_grad_norm must be a p > 0 (or null: off), got {norm}.")
    if cfg.train.avail_gpus == 0 or cfg.train.avail_gpus < -1:
        raise ConfigError(f"train.avail_gpus must be a positive count or -1 (all visible), got {cfg.train.avail_gpus}.")
    if cfg.train.num_nodes < 1:
        raise ConfigError(f"train.num_nodes must be positive, got {cfg.train.num_nodes}.")
    for split in ("train", "val", "test"):
        flag = f"train.limit_{split}_batches"
        limit = OmegaConf.select(cfg, flag)
        whole = isinstance(limit, int) and limit >= 0
        if not whole and not (isinstance(limit, float) and 0.0 <= limit <= 1.0):
            raise ConfigError(
                f"{flag} must be a fraction of the batches in [0.0, 1.0] or a whole number of batches, got {limit!r}."
            )


def validate_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` naming the flag if ``cfg`` cannot describe a run. Builds and reads nothing."""
    check_known_flags(cfg)
    check_types(cfg)
    for flag, (allowed, why) in DEAD_FLAGS.items():
        value = OmegaConf.select(cfg, flag, default=None)
        value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        if value != allowed:
            raise ConfigError(f"{flag}={value!r} is not supported ({why}); leave it at {allowed!r}.")
    _choice(cfg, "net.type", NET_TYPES)
    _choice(cfg, "mask.type", MASK_TYPES)
    if not 0 <= cfg.seed < 2**32:  # the range numpy's seeding (pl.seed_everything) accepts
        raise ConfigError(f"seed must be in [0, 2**32 - 1], got {cfg.seed}.")
    if cfg.train.epochs <= 0:
        raise ConfigError(f"train.epochs must be positive, got {cfg.train.epochs}.")
    if cfg.train.accumulate_grad_steps <= 0:
        raise ConfigError(f"train.accumulate_grad_steps must be positive, got {cfg.train.accumulate_grad_steps}.")
    if cfg.train.batch_size % cfg.train.accumulate_grad_steps:
        raise ConfigError(
            f"train.batch_size={cfg.train.batch_size} must be divisible by "
            f"train.accumulate_grad_steps={cfg.train.accumulate_grad_steps} (each step sees batch_size / steps)."
        )
    _check_count_flags(cfg)
    if cfg.train.ema is None and cfg.train.ema_warmup is not True:
        raise ConfigError("train.ema_warmup=False changes the weight average's decays; it needs train.ema=<decay>.")
    if cfg.test.batch_size_multiplier <= 0:
        raise ConfigError(f"test.batch_size_multiplier must be positive, got {cfg.test.batch_size_multiplier}.")
    if not cfg.train.do and not cfg.pretrained.load and not cfg.train.dry_run:
        raise ConfigError(
            "train.do=False evaluates a checkpoint: also set pretrained.load=True pretrained.filename=..."
        )
    if cfg.pretrained.load and not cfg.pretrained.filename:
        raise ConfigError("pretrained.load=True needs pretrained.filename=<path of a .ckpt file>.")
    if cfg.pretrained.filename and not cfg.pretrained.load:
        raise ConfigError(
            f"pretrained.filename={cfg.pretrained.filename} is only read with pretrained.load=True; add it or drop "
            "the filename."
        )
    if cfg.train.distributed and cfg.train.avail_gpus == 1:
        raise ConfigError("train.distributed=True needs train.avail_gpus >= 2 (or -1 for all visible devices).")
    if cfg.train.resume and cfg.pretrained.load:
        raise ConfigError(
            "train.resume and pretrained.load exclude each other: resume continues a run, "
            "pretrained.load starts from (or evaluates) a checkpoint's weights."
        )
    if cfg.test.predictions and cfg.train.distributed:
        raise ConfigError(
            "test.predictions=True writes the predictions of one process; with train.distributed=True each process "
            "sees part of the data. Evaluate the checkpoint on one device: train.do=False pretrained.load=True "
            "pretrained.filename=<run>/checkpoints/best.ckpt test.predictions=True."
        )
    if cfg.train.resume and not cfg.train.do:
        raise ConfigError("train.resume continues training; it needs train.do=True (evaluate with pretrained.*).")


def check_against_data(cfg: DictConfig, data_dim: int) -> None:
    """Checks that need the dataset's dimension (known from its metadata, before loading)."""
    if cfg.net.data_dim not in (None, 0, data_dim):  # 0: the original's "from the dataset"
        raise ConfigError(
            f"net.data_dim={cfg.net.data_dim} but dataset.name={cfg.dataset.name} "
            f"(data_type={cfg.dataset.data_type}) is {data_dim}D; leave net.data_dim unset."
        )
    if cfg.conv.causal and data_dim != 1:
        raise ConfigError(
            f"conv.causal=True needs 1D data, but dataset.name={cfg.dataset.name} with "
            f"dataset.data_type={cfg.dataset.data_type} is {data_dim}D; "
            "use dataset.data_type=sequence or conv.causal=False."
        )
