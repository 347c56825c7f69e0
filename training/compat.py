"""Does a checkpoint belong to the run the flags describe? Compare the flags with the config stored in the file.

Equal tensor shapes do not make equal networks: ``conv.causal``, ``kernel.omega_0`` or ``mask.threshold`` change what
a network computes from the same weights, and ``dataset.params.permuted`` what its inputs mean. A checkpoint used
with other values would evaluate silently wrong, so every difference in the flags below is refused, by name.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from datamodules import datamodule_class
from training.build import block_width_factors
from training.checkpoints import CheckpointError

# Flags that define the function a network computes from its weights. Left out on purpose: flags that only shape the
# initialisation (kernel.chang_initialize, kernel.init_spatial_value, mask.init_value), regularisation that is off at
# evaluation (net.dropout, net.dropout_in, net.dropout_type), and the numerically equivalent FFT and direct paths
# (conv.use_fft).
NETWORK_FLAGS = (
    "net.type",
    "net.no_hidden",
    "net.no_blocks",
    "net.norm",
    "net.nonlinearity",
    "net.block_width_factors",
    "net.block.type",
    "net.block.prenorm",
    "net.downsampling",
    "net.downsampling_size",
    "net.embedding",
    "net.embedding_dim",
    "kernel.type",
    "kernel.no_hidden",
    "kernel.no_layers",
    "kernel.omega_0",
    "kernel.bias",
    "kernel.size",
    "kernel.norm",
    "kernel.nonlinearity",
    "mask.type",
    "mask.threshold",
    "mask.dynamic_cropping",
    "mask.learn_mean",
    "conv.type",
    "conv.causal",
    "conv.bias",
    "kernel.bandlimit",
)

# Flags that define what the network's inputs and outputs mean.
DATA_FLAGS = (
    "dataset.name",
    "dataset.data_type",
    "dataset.params.permuted",
    "dataset.params.grayscale",
    "dataset.params.mfcc",
    "dataset.params.all_classes",
    "dataset.params.resolution",
    "dataset.params.seq_length",
    "dataset.params.sample_rate",
)

# What an evaluation must repeat besides the network and the data: what draws the validation split from the training
# data (with another seed, most of the "validation" examples of MNIST-1D or CIFAR were the model's training examples).
SPLIT_FLAGS = ("seed", "dataset.params.num_samples", "dataset.params.val_size")

# What a resumed run must repeat besides the network and the data: everything that decides the rest of its trajectory.
TRAINING_FLAGS = (
    "seed",
    "deterministic",
    "dataset.augment",
    "dataset.params.num_samples",
    "dataset.params.val_size",
    "dataset.params.difficulty",
    "net.dropout",
    "net.dropout_in",
    "net.dropout_type",
    "train.batch_size",
    "train.accumulate_grad_steps",
    "train.grad_clip",
    "train.mixed_precision",
    "train.ema_warmup",  # the sequence of the average's decays (train.ema itself: training.ema.check_resume_ema)
    "optimizer.name",
    "optimizer.lr",
    "optimizer.mask_lr_ratio",
    "optimizer.momentum",
    "optimizer.nesterov",
    "optimizer.weight_decay",
    "optimizer.weight_decay_type",
    "scheduler.name",
    "scheduler.decay_steps",
    "scheduler.factor",
    "scheduler.patience",
    "scheduler.warmup_epochs",
    "scheduler.mode",
)


# Values that meant "not set" before these flags defaulted to null; checkpoints written then still carry them.
_LEGACY_UNSET: dict[str, Any] = {
    "net.embedding_dim": 0,
    "optimizer.momentum": -1.0,
    "dataset.params.permuted": False,
    "dataset.params.grayscale": False,
    "dataset.params.mfcc": False,
    "dataset.params.all_classes": False,
    "dataset.params.resolution": 0,
    "dataset.params.difficulty": "hard",
    "dataset.params.seq_length": 0,
    "dataset.params.num_samples": 0,
    "dataset.params.val_size": 0,
}


# Flags added after checkpoints were written whose absence means the behaviour before them, not today's default.
_ABSENT_MEANS: dict[str, Any] = {
    "train.ema_warmup": False,  # averages before the warm-up existed decayed at train.ema from the first update
}


def upgraded_config(stored: Mapping[str, Any]) -> DictConfig:
    """A config stored in a checkpoint, in today's terms: values that meant "not set" become null, and flags that did
    not exist when it was written take their defaults. Flags it has that no longer exist are dropped."""
    from training.config import defaults, flag_names

    reference = defaults()
    config = OmegaConf.masked_copy(reference, [k for k in reference if k not in ("defaults", "hydra")])
    stored_cfg = OmegaConf.create(dict(stored))
    for name in flag_names(config):
        value = OmegaConf.select(stored_cfg, name, default="<absent>")
        if isinstance(value, str) and value == "<absent>":
            if name in _ABSENT_MEANS:
                OmegaConf.update(config, name, _ABSENT_MEANS[name], force_add=True)
            continue
        legacy = _LEGACY_UNSET.get(name, "<none>")
        if value == legacy and isinstance(value, bool) == isinstance(legacy, bool):  # 0 == False in Python
            value = None
        OmegaConf.update(config, name, value, force_add=True)
    return config


def _dataset_default(dataset_name: Any, key: str) -> Any:
    """The default of the dataset's own ``key`` argument (what a null ``dataset.params.<key>`` means)."""
    try:
        parameter = inspect.signature(datamodule_class(str(dataset_name)).__init__).parameters.get(key)
    except ValueError:  # an unknown dataset: the config checks name it
        return None
    return None if parameter is None or parameter.default is inspect.Parameter.empty else parameter.default


def _effective(flag: str, value: Any, config: DictConfig) -> Any:
    """The value a flag takes effect with, so that spellings of the same choice compare equal."""
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value)
    if flag == "train.ema_warmup" and OmegaConf.select(config, "train.ema") is None:
        return None  # no average, no warm-up of it
    if value is None and flag.startswith("dataset.params."):
        value = _dataset_default(OmegaConf.select(config, "dataset.name"), flag.rsplit(".", 1)[1])
    if flag == "net.block_width_factors":
        return block_width_factors(value)  # the original's [0.0] and null both keep every block at net.no_hidden
    if flag == "net.type" and value == "ResNet":
        return "CCNN"  # the original's name of the same network
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def flag_differences(cfg: DictConfig, stored: Mapping[str, Any], flags: tuple[str, ...]) -> list[str]:
    """``flag=<value here> (checkpoint: <value there>)`` for each of ``flags`` whose values differ."""
    stored_cfg = upgraded_config(stored)  # in today's terms: its "not set" sentinels are null
    differences = []
    for flag in flags:
        here = OmegaConf.select(cfg, flag, default=None)
        there = OmegaConf.select(stored_cfg, flag, default=None)
        if _effective(flag, here, cfg) != _effective(flag, there, stored_cfg):
            shown_here = OmegaConf.to_container(here) if OmegaConf.is_config(here) else here
            shown_there = OmegaConf.to_container(there) if OmegaConf.is_config(there) else there
            differences.append(f"{flag}={shown_here!r} (checkpoint: {shown_there!r})")
    return differences


def check_checkpoint_matches(
    cfg: DictConfig, checkpoint: Mapping[str, Any], path: str | os.PathLike, resuming: bool
) -> None:
    """Raise :class:`CheckpointError` naming every flag whose value differs from the checkpoint's own config.

    Evaluation and fine-tuning (``pretrained.*``) must repeat the network and data flags; resuming (``train.resume``)
    must also repeat the flags that decide the rest of the trajectory. Files without a stored config (written by other
    code) are checked by their tensor shapes only, when they are loaded.
    """
    stored = checkpoint.get("ccnn_config")
    if not isinstance(stored, Mapping):
        return
    flags = NETWORK_FLAGS + DATA_FLAGS + (TRAINING_FLAGS if resuming else ())
    evaluating = not resuming and not cfg.train.do
    if evaluating:
        flags += SPLIT_FLAGS  # its val/acc must be measured on the examples its run held out
    elif not resuming and stored.get("dataset", {}).get("params", {}).get("permuted"):
        flags += ("seed",)  # the pixel permutation is drawn from the seed
    differences = flag_differences(cfg, stored, flags)
    if differences:
        use = "resume" if resuming else "use"
        raise CheckpointError(
            f"checkpoint {path} was written with other flags than these, so it would {use} a different "
            f"{'run' if resuming else 'network or data'}: {'; '.join(differences)}. Pass the checkpoint's values "
            "(its run's config.yaml has them all)."
        )
