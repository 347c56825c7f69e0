"""The one place that turns config flags into constructor calls: datamodule, network, LightningModule.

The constructors check their own arguments and name them in their own terms (``hidden_channels must be positive``);
this module reports such an error under the flag the value came from (``net.no_hidden must be positive``), so that
each rule lives in one place and every message names what the user typed.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from pathlib import Path
from typing import Any

from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from ckconv import CONV_TYPES
from ckconv.errors import did_you_mean
from datamodules import DATAMODULES, CCNNDataModule, DataMeta, datamodule_class
from models.ccnn import CCNN
from models.module import ClassificationModule
from training.config import DEAD_FLAGS, ConfigError, defaults

# dataset.params flags that config.py refuses unless left at their default (they did nothing in the original).
DEAD_DATASET_PARAMS = {flag.rsplit(".", 1)[1] for flag in DEAD_FLAGS if flag.startswith("dataset.params.")}

# Constructor arguments (the names library errors use) -> the flags their values come from.
ARGUMENT_FLAGS: dict[str, str] = {
    # CCNN
    "hidden_channels": "net.no_hidden",
    "num_blocks": "net.no_blocks",
    "block_type": "net.block.type",
    "prenorm": "net.block.prenorm",
    "norm": "net.norm",
    "nonlinearity": "net.nonlinearity",
    "dropout": "net.dropout",
    "dropout_in": "net.dropout_in",
    "dropout_type": "net.dropout_type",
    "conv_type": "conv.type",
    "block_width_factors": "net.block_width_factors",
    "downsampling": "net.downsampling",
    "downsampling_size": "net.downsampling_size",
    "embedding": "net.embedding",
    "embedding_dim": "net.embedding_dim",
    # the conv layers (CCNN's conv_options)
    "causal": "conv.causal",
    "bias": "conv.bias",
    "use_fft": "conv.use_fft",
    "kernel_size": "kernel.size",
    "kernel_type": "kernel.type",
    "kernel_hidden_channels": "kernel.no_hidden",
    "kernel_num_layers": "kernel.no_layers",
    "kernel_omega_0": "kernel.omega_0",
    "kernel_bias": "kernel.bias",
    "kernel_options.norm": "kernel.norm",
    "kernel_options.nonlinearity": "kernel.nonlinearity",
    "kernel_options.init_spatial_value": "kernel.init_spatial_value",
    "chang_initialize": "kernel.chang_initialize",
    "kernel_bandlimit": "kernel.bandlimit",
    "mask_init_value": "mask.init_value",
    "mask_threshold": "mask.threshold",
    "mask_dynamic_cropping": "mask.dynamic_cropping",
    "mask_learn_mean": "mask.learn_mean",
    # datamodules
    "batch_size": "train.batch_size",
    "test_batch_size": "test.batch_size_multiplier",
    "num_workers": "no_workers",
    "data_dir": "dataset.data_dir",
    "data_type": "dataset.data_type",
    "augment": "dataset.augment",
}


# Network arguments that come from the dataset's metadata, not from a flag: their errors are the dataset's.
METADATA_ARGUMENTS = ("in_channels", "num_classes", "data_dim", "input_size", "vocab_size")


def flag_of(argument: str) -> str | None:
    """The flag a constructor argument comes from (``optimizer.*``/``scheduler.*`` keep their names), or ``None``."""
    if argument in ARGUMENT_FLAGS:
        return ARGUMENT_FLAGS[argument]
    if argument.startswith(("optimizer.", "scheduler.")):
        return argument
    return None


def as_flag_error(error: ValueError, context: str = "", dataset_options: bool = False) -> ConfigError:
    """A constructor's error about its argument, reworded with the flag in place of the argument's name.

    Args:
        error: the constructor's error; :class:`ckconv.errors.InvalidArgument` carries the argument's name.
        context: put before the message (e.g. ``dataset.name=MNIST: `` for what the dataset's metadata gave).
        dataset_options: the constructor is a datamodule's, whose own options are ``dataset.params.<name>``.
    """
    message = str(error)
    argument = getattr(error, "argument", None)
    flag = flag_of(argument) if argument else None
    if flag is None and argument and dataset_options:
        flag = f"dataset.params.{argument}"
    if flag is not None and argument not in METADATA_ARGUMENTS:
        message = flag + message[len(argument) :] if message.startswith(argument) else f"{flag}: {message}"
    for other, other_flag in ARGUMENT_FLAGS.items():  # mentions of other arguments (mask_dynamic_cropping, ...)
        if "_" in other and other != argument:  # plain words such as "bias" or "norm" may mean something else
            message = re.sub(rf"(?<![\w.]){re.escape(other)}(?!\w)", other_flag, message)
    return ConfigError(f"{context}{message}")


def resolve_path(path: str) -> Path:
    """Relative paths are taken from the directory the run was started in (Hydra may have changed it)."""
    return Path(to_absolute_path(str(Path(path).expanduser())))


def _annotation_types(annotation: Any) -> tuple[type, ...]:
    """The plain types an annotation admits, e.g. ``int | None`` -> ``(int, NoneType)``; empty when unknown."""
    if isinstance(annotation, str):
        annotation = {"int": int, "float": float, "bool": bool, "str": str}.get(annotation.split("|")[0].strip())
    if isinstance(annotation, type):
        return (annotation,)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return tuple(t for t in typing.get_args(annotation) if isinstance(t, type))
    return ()


def _check_option_type(flag: str, value: Any, parameter: inspect.Parameter) -> None:
    kinds = _annotation_types(parameter.annotation)
    if not kinds:
        return
    ok = any(
        isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
        for kind in kinds + ((float,) if int in kinds else ())
    ) or (float in kinds and isinstance(value, int) and not isinstance(value, bool))
    if not ok:
        names = " or ".join(kind.__name__ for kind in kinds if kind is not type(None))
        raise ConfigError(f"{flag} must be {names}, got {value!r} ({type(value).__name__}).")


def _datamodule_class(cfg: DictConfig) -> type[CCNNDataModule]:
    try:
        return datamodule_class(cfg.dataset.name)
    except ValueError as error:
        hint = did_you_mean(cfg.dataset.name, DATAMODULES)
        raise ConfigError(f"{str(error).removesuffix('.')}{hint}.") from error


def datamodule_options(cfg: DictConfig) -> dict[str, Any]:
    """Keyword arguments of the selected datamodule: every ``dataset.params.*`` flag that is set (not null), plus
    ``dataset.data_type`` and ``dataset.augment`` when they differ from their defaults. A flag the dataset does not
    take is refused, so that no flag is silently ignored; a value of the wrong type is refused by the type of the
    dataset's own argument."""
    cls = _datamodule_class(cfg)
    parameters = inspect.signature(cls.__init__).parameters
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
        if key not in parameters:
            raise ConfigError(f"{flag}={value!r} is not used by dataset.name={cfg.dataset.name}; remove it.")
        _check_option_type(flag, value, parameters[key])
        options[key] = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    return options


def build_datamodule(cfg: DictConfig) -> CCNNDataModule:
    """The datamodule of ``dataset.name``; constructing it reads nothing from disk."""
    cls, options = _datamodule_class(cfg), datamodule_options(cfg)  # these name their flags already
    batch_size = cfg.train.batch_size // cfg.train.accumulate_grad_steps
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
        raise as_flag_error(error, f"dataset.name={cfg.dataset.name}: ", dataset_options=True) from error


# Flags that only some layers or kernel networks read. One set away from its default for a choice that does not read
# it is refused, by refuse_unused: it would otherwise be silently ignored.
KERNEL_NET_FLAGS = (
    "kernel.type",
    "kernel.no_hidden",
    "kernel.no_layers",
    "kernel.omega_0",
    "kernel.bias",
    "kernel.chang_initialize",
    "kernel.bandlimit",
)
MLP_KERNEL_FLAGS = ("kernel.norm", "kernel.nonlinearity")
MASK_FLAGS = ("mask.init_value", "mask.threshold", "mask.dynamic_cropping", "mask.learn_mean")
UNMASKED_FLAGS = ("kernel.init_spatial_value",)
SCHEDULE_FLAGS = {
    "scheduler.decay_steps": ("multistep",),
    "scheduler.factor": ("multistep", "exponential", "plateau"),
    "scheduler.patience": ("plateau",),
    "scheduler.mode": ("plateau",),
}


def refuse_unused(cfg: DictConfig, flags: tuple[str, ...], reader: str) -> None:
    """Raise :class:`ConfigError` for the first of ``flags`` set away from its cfg/config.yaml default.

    Args:
        cfg: the run's config.
        flags: flags that the choice described by ``reader`` does not read.
        reader: the choice, with why, e.g. ``conv.type=CKConv (no mask)``.
    """
    reference = defaults()
    for flag in flags:
        value, default = OmegaConf.select(cfg, flag), OmegaConf.select(reference, flag)
        if value != default:
            raise ConfigError(f"{flag}={value!r} is not used by {reader}; leave it at its default {default!r}.")


def conv_options(cfg: DictConfig) -> dict[str, Any]:
    """Keyword arguments shared by every conv layer of the network, by what the selected layer class is."""
    options: dict[str, Any] = {
        "causal": cfg.conv.causal,
        "bias": cfg.conv.bias,
        "use_fft": cfg.conv.use_fft,
        "kernel_size": cfg.kernel.size,
    }
    layer = CONV_TYPES.get(cfg.conv.type)
    if layer is None:
        return options  # an unknown name is refused by CCNN, naming conv.type
    if not layer.continuous:
        reader = f"conv.type={cfg.conv.type} (free taps: no kernel network, no mask)"
        refuse_unused(cfg, KERNEL_NET_FLAGS + MLP_KERNEL_FLAGS + MASK_FLAGS + UNMASKED_FLAGS, reader)
        return options
    kernel_options: dict[str, Any] = {}
    if cfg.kernel.type == "MLP":
        kernel_options = {"norm": cfg.kernel.norm, "nonlinearity": cfg.kernel.nonlinearity}
    else:
        refuse_unused(cfg, MLP_KERNEL_FLAGS, f"kernel.type={cfg.kernel.type} (MLP kernels only)")
    if layer.masked:
        reader = f"conv.type={cfg.conv.type} (its kernels start from mask.init_value)"
        refuse_unused(cfg, UNMASKED_FLAGS, reader)
    else:
        refuse_unused(cfg, MASK_FLAGS, f"conv.type={cfg.conv.type} (no mask; FlexConv types have one)")
        kernel_options["init_spatial_value"] = cfg.kernel.init_spatial_value
    options |= {
        "kernel_type": cfg.kernel.type,
        "kernel_hidden_channels": cfg.kernel.no_hidden,
        "kernel_num_layers": cfg.kernel.no_layers,
        "kernel_omega_0": cfg.kernel.omega_0,
        "kernel_bias": cfg.kernel.bias,
        "kernel_options": kernel_options,
        "kernel_bandlimit": cfg.kernel.bandlimit,
        "chang_initialize": cfg.kernel.chang_initialize,
    }
    if layer.masked:
        options |= {
            "mask_init_value": cfg.mask.init_value,
            "mask_threshold": cfg.mask.threshold,
            "mask_dynamic_cropping": cfg.mask.dynamic_cropping,
            "mask_learn_mean": cfg.mask.learn_mean,
        }
    return options


def block_width_factors(value: Any) -> list:
    """``net.block_width_factors`` as CCNN takes it: ``[]`` for null and for the original's ``[0.0]`` (every block at
    ``net.no_hidden``), else the list of ``[factor, n_blocks]`` pairs."""
    factors = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    return [] if factors in (None, [0.0], [0], []) else factors


def build_network(cfg: DictConfig, meta: DataMeta) -> CCNN:
    """The CCNN for data described by ``meta``."""
    factors = block_width_factors(cfg.net.block_width_factors)
    if meta.vocab_size is None:
        refuse_unused(cfg, ("net.embedding", "net.embedding_dim"), f"dataset.name={cfg.dataset.name} (no token ids)")
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
            embedding_dim=cfg.net.embedding_dim,
            paired=meta.paired,
        )
    except ValueError as error:
        metadata = getattr(error, "argument", None) in METADATA_ARGUMENTS
        raise as_flag_error(error, f"dataset.name={cfg.dataset.name}: " if metadata else "") from error


def build_module(cfg: DictConfig, meta: DataMeta) -> ClassificationModule:
    """Network + loss + optimizer and schedule settings (checked here, not when fitting starts)."""
    optimizer = {
        "name": cfg.optimizer.name,
        "lr": cfg.optimizer.lr,
        "weight_decay": cfg.optimizer.weight_decay,
        "mask_lr_ratio": cfg.optimizer.mask_lr_ratio,
        "momentum": cfg.optimizer.momentum,
        "nesterov": cfg.optimizer.nesterov,
        "weight_decay_type": cfg.optimizer.weight_decay_type,
    }
    for flag, readers in SCHEDULE_FLAGS.items():
        if cfg.scheduler.name not in readers:
            refuse_unused(cfg, (flag,), f"scheduler.name={cfg.scheduler.name!r} (only {' and '.join(readers)} use it)")
    scheduler = {
        "name": cfg.scheduler.name,
        "warmup_epochs": cfg.scheduler.warmup_epochs,
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
        raise as_flag_error(error) from error
