"""Does a checkpoint belong to the run the flags describe? Compare the flags with the config stored in the file.

Equal tensor shapes do not make equal networks: ``conv.causal``, ``kernel.omega_0`` or ``mask.threshold`` change what
a network computes from the same weights, and ``dataset.params.permuted`` what its inputs mean. What a different
value of each flag changes is declared in the schema (``training.config.schema.Change``); the flags compared follow
from what the checkpoint is used for:

- evaluating it (``train.do=False``): the network, the meaning of the data, and the held-out examples (with another
  seed, most "validation" examples of MNIST-1D or CIFAR were the model's training examples);
- starting a new training run from its weights (``pretrained.load=True``): the network and the meaning of the data;
- resuming its run (``train.resume``): all of those, its initialisation and the course of the run.

Every difference is refused, by name. A checkpoint without a stored config (written by other code) cannot be
compared: it is refused unless ``pretrained.unchecked=True`` says to use it with the flags as given.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from typing import Any, Literal

from omegaconf import DictConfig, OmegaConf

from datamodules import datamodule_class
from training.build import block_width_factors
from training.config.flags import FLAGS, changing
from training.config.schema import COURSE, DATA, INIT, NETWORK, SPLIT, Config
from training.run.checkpoints import CheckpointError

Use = Literal["evaluate", "fine-tune", "resume"]
COMPARED: dict[str, tuple[str, ...]] = {
    "evaluate": changing(NETWORK, DATA, SPLIT),
    "fine-tune": changing(NETWORK, DATA),
    "resume": changing(NETWORK, DATA, SPLIT, INIT, COURSE),
}

# Values that meant "not set" before these flags defaulted to null; checkpoints written then still carry them.
_LEGACY_UNSET: dict[str, Any] = {
    "net.embedding_dim": 0,
    "optimizer.momentum": -1.0,
    "kernel.init_spatial_value": 1.0,  # 1 for CKConv, ignored by FlexConv: what null means now
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
    "test.checkpoint": "best",  # runs before the choice existed evaluated best.ckpt (the default is last now)
}


def upgraded_config(stored: Mapping[str, Any]) -> DictConfig:
    """A config stored in a checkpoint, in today's terms: values that meant "not set" become null, and flags that did
    not exist when it was written take their defaults. Flags it has that no longer exist are dropped."""
    config = OmegaConf.structured(Config)
    stored_cfg = OmegaConf.create(dict(stored))
    for name in FLAGS:
        found = OmegaConf.select(stored_cfg, name, default="<absent>")
        if isinstance(found, str) and found == "<absent>":
            if name in _ABSENT_MEANS:
                OmegaConf.update(config, name, _ABSENT_MEANS[name])
            continue
        legacy = _LEGACY_UNSET.get(name, "<none>")
        if found == legacy and isinstance(found, bool) == isinstance(legacy, bool):  # 0 == False in Python
            found = None
        OmegaConf.update(config, name, found)
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
    stored_cfg = upgraded_config(stored)
    averaged = cfg.train.ema is not None and stored_cfg.train.ema is not None
    differences = []
    for flag in flags:
        if flag == "train.ema_warmup" and not averaged:
            continue  # no average (here or there), no warm-up of it: train.ema itself is compared
        here = OmegaConf.select(cfg, flag, default=None)
        there = OmegaConf.select(stored_cfg, flag, default=None)
        if _effective(flag, here, cfg) != _effective(flag, there, stored_cfg):
            shown_here = OmegaConf.to_container(here) if OmegaConf.is_config(here) else here
            shown_there = OmegaConf.to_container(there) if OmegaConf.is_config(there) else there
            differences.append(f"{flag}={shown_here!r} (checkpoint: {shown_there!r})")
    return differences


def check_checkpoint_matches(cfg: DictConfig, checkpoint: Mapping[str, Any], path: str | os.PathLike, use: Use) -> None:
    """Raise :class:`CheckpointError` naming every flag whose value differs from the checkpoint's own config, or
    when the checkpoint has none (unless ``pretrained.unchecked=True`` for evaluation and fine-tuning)."""
    stored = checkpoint.get("ccnn_config")
    if not isinstance(stored, Mapping):
        if use == "resume":
            raise CheckpointError(
                f"checkpoint {path} stores no config (it was not written by main.py), so the run it continues cannot "
                "be checked; start a new run from its weights with pretrained.load=True pretrained.filename=...."
            )
        if not cfg.pretrained.unchecked:
            raise CheckpointError(
                f"checkpoint {path} stores no config (it was not written by main.py), so the flags it needs cannot be "
                "compared with these (non-causal weights would run as causal, say): pass "
                "pretrained.unchecked=True to use it with the flags as given."
            )
        return
    flags = COMPARED[use]
    if use == "fine-tune" and stored.get("dataset", {}).get("params", {}).get("permuted"):
        flags += ("seed",)  # the pixel permutation is drawn from the seed
    differences = flag_differences(cfg, stored, flags)
    if differences:
        what = "resume a different run" if use == "resume" else "use a different network or data"
        raise CheckpointError(
            f"checkpoint {path} was written with other flags than these, so it would {what}: "
            f"{'; '.join(differences)}. Pass the checkpoint's values (its run's config.yaml has them all)."
        )
