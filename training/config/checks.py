"""Every check of a composed config that needs no torch: each flag's value against what the schema and the chosen
classes' signatures declare, flags that nothing chosen reads, dead flags, and the few rules between flags.

OmegaConf has refused unknown flags and values of the wrong type while composing. Here, without importing a layer,
a dataset or torch: a value outside its argument's declared range or choices (``hidden_channels: PositiveInt``,
``norm: Literal[...]``), a name outside a registry (``kernel.type``), a flag set for a class that does not take it
(``kernel.omega_0`` with ``kernel.type=MLP``, whose signature has no ``omega_0``). The constructors check the rules
between their own arguments again when the run builds them (``training.build``), before anything is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from argcheck import did_you_mean, source
from argcheck.rules import rule_of
from training.config.components import COMPONENTS, Component
from training.config.flags import FLAGS, Flag, feeding, is_default, not_a_flag, value
from training.config.resolvers import run_folder_of_checkpoint


class ConfigError(ValueError):
    """A flag has a value it cannot take, or flags contradict each other. ``flag`` is the first flag at fault."""

    def __init__(self, message: str, flag: str | None = None) -> None:
        super().__init__(message)
        self.flag = flag


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def choices_of(flag: Flag) -> tuple[Any, ...] | None:
    """The values ``flag`` may take where the schema names them, or a registry or list does (read from source)."""
    if isinstance(flag.choices, str):
        return source.names(flag.choices)
    return flag.choices


def check_value(name: str, found: Any, annotation: Any) -> None:
    """Refuse ``found`` for flag ``name`` unless ``annotation`` (an ``argcheck`` rule, or an argument's annotation
    text) admits it."""
    declared = rule_of(annotation)
    problem = None if declared is None else declared.problem(found)
    if problem is not None:
        choices = [c for a in declared.alternatives if a.rule and a.rule.choices for c in a.rule.choices]  # type: ignore[union-attr]
        raise ConfigError(f"{name} must be {problem}, got {_shown(found)}{did_you_mean(found, choices)}.", name)


def _check_choice(name: str, found: Any, choices: tuple[Any, ...]) -> None:
    if found not in choices:
        shown = ", ".join(map(_shown, choices)) if len(choices) <= 20 else f"{len(choices)} names"
        raise ConfigError(f"{name} must be one of {shown}, got {_shown(found)}{did_you_mean(found, choices)}.", name)


def chosen_class(cfg: DictConfig, component: Component) -> str | None:
    """The class (``"module:Class"``) that ``cfg`` builds for ``component``, or ``None`` when it builds none: its
    parent's class does not take the argument that would carry it."""
    if component.within is not None:
        parent = chosen_class(cfg, COMPONENTS[component.within[0]])
        if parent is None or component.within[1] not in source.parameters(parent):
            return None
    if component.selected_by is None:
        return component.target
    return source.registry(component.target).get(value(cfg, component.selected_by))


def _reader(cfg: DictConfig, component: Component) -> str:
    """How a message names what ``cfg`` chose for ``component``: ``kernel.type=MLP``, or the class."""
    if component.selected_by is not None:
        return f"{component.selected_by}={value(cfg, component.selected_by)}"
    return component.target.rpartition(":")[2]


def _absent_reader(cfg: DictConfig, component: Component) -> str:
    """Why ``cfg`` builds no ``component``: ``conv.type=Conv (it takes no kernel_options)``."""
    parent, argument = component.within  # type: ignore[misc]
    return f"{_reader(cfg, COMPONENTS[parent])} (it takes no {argument})"


def check_component(cfg: DictConfig, component: Component) -> None:
    """Check every flag that feeds ``component`` against the signature of the class ``cfg`` chooses for it."""
    target = None if component.third_party else chosen_class(cfg, component)
    built = component.third_party or target is not None
    accepted = {} if target is None else source.parameters(target)
    for flag in feeding(component.name):
        found = value(cfg, flag.name)
        argument = flag.feeds[1]  # type: ignore[index]
        if component.third_party or (argument in accepted and argument not in component.supplied):
            if found is not None or not flag.nullable:
                parameter = accepted.get(argument)
                annotation = flag.rule or (parameter.expanded_annotation() if parameter else None)
                if annotation:
                    check_value(flag.name, found, annotation)
            continue
        if (found is None and flag.default is None) or is_default(cfg, flag.name):
            continue
        reader = f"{_reader(cfg, component)} (it takes no {argument})" if built else _absent_reader(cfg, component)
        raise ConfigError(
            f"{flag.name}={_shown(found)} is not read by {reader}; leave it at its default {_shown(flag.default)}.",
            flag.name,
        )


def _names(cfg: DictConfig, prefix: str = "") -> list[str]:
    names = []
    for key in cfg:
        name = f"{prefix}{key}"
        value = OmegaConf.select(cfg, str(key), throw_on_missing=False)
        names += _names(value, f"{name}.") if isinstance(value, DictConfig) and name not in FLAGS else [name]
    return names


def check_known_flags(cfg: DictConfig) -> None:
    """Refuse a flag the schema does not declare: Hydra's ``+flag=value`` adds one even to a structured config, and
    nothing would read it."""
    for name in _names(cfg):
        if name not in FLAGS:
            raise ConfigError(not_a_flag(name), name)


def check_flags(cfg: DictConfig) -> None:
    """Dead flags, choices and rules of each flag, then every component's flags."""
    for flag in FLAGS.values():
        found = value(cfg, flag.name)
        if flag.dead is not None:
            if not is_default(cfg, flag.name):
                raise ConfigError(
                    f"{flag.name}={_shown(found)} is not supported ({flag.dead}); leave it at {_shown(flag.default)}.",
                    flag.name,
                )
            continue
        if found is None and flag.nullable:
            continue
        choices = choices_of(flag)
        if choices is not None:
            _check_choice(flag.name, found, choices)
        if flag.rule is not None and flag.feeds is None:
            check_value(flag.name, found, flag.rule)
    for component in COMPONENTS.values():
        if component.selected_by is not None and chosen_class(cfg, component) is None:
            registry = source.registry(component.target)
            parent_absent = component.within is not None and chosen_class(cfg, COMPONENTS[component.within[0]]) is None
            if not parent_absent:
                _check_choice(component.selected_by, value(cfg, component.selected_by), tuple(registry))
    for component in COMPONENTS.values():
        check_component(cfg, component)


def check_between_flags(cfg: DictConfig) -> None:
    """The rules that no single constructor sees."""
    train, pretrained = cfg.train, cfg.pretrained
    if cfg.no_workers < -1:
        raise ConfigError(
            f"no_workers must be -1 (a count from the machine) or >= 0, got {cfg.no_workers}.", "no_workers"
        )
    if train.batch_size % train.accumulate_grad_steps:
        raise ConfigError(
            f"train.batch_size={train.batch_size} must be divisible by train.accumulate_grad_steps="
            f"{train.accumulate_grad_steps} (each step sees batch_size / steps).",
            "train.batch_size",
        )
    if train.avail_gpus == 0 or train.avail_gpus < -1:
        raise ConfigError(
            f"train.avail_gpus must be a positive count or -1 (all visible), got {train.avail_gpus}.",
            "train.avail_gpus",
        )
    for split in ("train", "val", "test"):
        name = f"train.limit_{split}_batches"
        limit = value(cfg, name)
        # 0 is Lightning's "skip the split": a run that trains, validates or tests nothing reports no result.
        whole = isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1
        if not whole and not (isinstance(limit, float) and 0.0 < limit <= 1.0):
            raise ConfigError(
                f"{name} must be a fraction of the batches in (0.0, 1.0] or a whole number of batches >= 1, "
                f"got {limit!r}.",
                name,
            )
    if train.ema is None and train.ema_warmup is not True:
        raise ConfigError(
            "train.ema_warmup=False changes the weight average's decays; it needs train.ema=<decay>.",
            "train.ema_warmup",
        )
    if not train.do and not pretrained.load and not train.dry_run:
        raise ConfigError(
            "train.do=False evaluates a checkpoint: also set pretrained.load=True pretrained.filename=...", "train.do"
        )
    if pretrained.load and not pretrained.filename:
        raise ConfigError("pretrained.load=True needs pretrained.filename=<path of a .ckpt file>.", "pretrained.load")
    if pretrained.filename and not pretrained.load:
        raise ConfigError(
            f"pretrained.filename={pretrained.filename} is only read with pretrained.load=True; add it or drop the "
            "filename.",
            "pretrained.filename",
        )
    if train.distributed and train.avail_gpus == 1:
        raise ConfigError(
            "train.distributed=True needs train.avail_gpus >= 2 (or -1 for all visible devices).", "train.distributed"
        )
    if train.resume and pretrained.load:
        raise ConfigError(
            "train.resume and pretrained.load exclude each other: resume continues a run, pretrained.load starts from "
            "(or evaluates) a checkpoint's weights.",
            "train.resume",
        )
    if train.resume:
        given = Path(train.resume).expanduser().absolute()
        if given.is_dir():
            inside = next((c for c in (given / "checkpoints" / "last.ckpt", given / "last.ckpt") if c.is_file()), None)
            example = f", e.g. train.resume={inside}" if inside else ""
            raise ConfigError(
                f"train.resume={train.resume} is a folder; pass the path of a .ckpt file{example}.", "train.resume"
            )
        own = run_folder_of_checkpoint(given)
        if own is None and not train.output_dir:
            raise ConfigError(
                f"train.resume={train.resume} is not inside a run's checkpoints/ folder; also pass "
                "train.output_dir=<the folder to continue the run in>.",
                "train.resume",
            )
        if own is not None and train.output_dir and Path(train.output_dir).expanduser().absolute() != own:
            raise ConfigError(
                f"train.resume={train.resume} continues the run in {own}, but train.output_dir={train.output_dir}: a "
                "resumed run writes into its own folder (its best checkpoint and logs are there). Drop "
                "train.output_dir.",
                "train.output_dir",
            )
    if train.resume and not train.do:
        raise ConfigError(
            "train.resume continues training; it needs train.do=True (evaluate with pretrained.*).", "train.resume"
        )
    if cfg.test.predictions and train.distributed:
        raise ConfigError(
            "test.predictions=True writes the predictions of one process; with train.distributed=True each process "
            "sees part of the data. Evaluate the checkpoint on one device: train.do=False pretrained.load=True "
            "pretrained.filename=<run>/checkpoints/best.ckpt test.predictions=True.",
            "test.predictions",
        )
    resolutions = value(cfg, "test.resolutions")
    if resolutions is None and cfg.test.update_bn is not True:
        raise ConfigError(
            "test.update_bn=False keeps the training statistics at other resolutions; it needs test.resolutions=[...].",
            "test.update_bn",
        )
    if resolutions is not None:
        if not resolutions or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in resolutions):
            raise ConfigError(
                "test.resolutions must be a list of positive integers (image sides, sequence lengths or sample rates, "
                f"in the units of the dataset's resolution flag), e.g. test.resolutions=[20,40,80], or null; got "
                f"{resolutions!r}.",
                "test.resolutions",
            )
        repeated = sorted({v for v in resolutions if resolutions.count(v) > 1})
        if repeated:
            raise ConfigError(
                f"test.resolutions={resolutions} lists {', '.join(map(str, repeated))} more than once; list each once.",
                "test.resolutions",
            )


def check_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError`, naming the flag, if ``cfg`` cannot describe a run. Imports no torch."""
    check_known_flags(cfg)
    check_flags(cfg)
    check_between_flags(cfg)
