"""The one place that turns flags into objects: each constructor receives the flags that feed it
(``feeds=`` in ``training.config.schema``) under the names of its own signature, and an error it raises about an
argument is reported under the flag that argument came from, found by following the components
(``training.config.components``) from the constructor that raised it.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from argcheck import InvalidArgument, accepted_arguments
from datamodules import CCNNDataModule, DataMeta, datamodule_class
from models.ccnn import CCNN
from models.module import ClassificationModule
from training.callbacks.ema import EMAWeights
from training.config.checks import ConfigError
from training.config.components import COMPONENTS, DATA_ARGUMENTS, Component
from training.config.flags import feeding, flag_feeding, is_default, value


def resolve_path(path: str) -> Path:
    """Relative paths are taken from the folder the run was started in (Hydra may have changed it)."""
    return Path(to_absolute_path(str(Path(path).expanduser())))


def _load(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def component_class(cfg: DictConfig, component: Component) -> type:
    """The class ``cfg`` builds for ``component``: its own, or the registry entry its selecting flag names."""
    found = _load(component.target)
    if component.selected_by is not None:
        found = found[value(cfg, component.selected_by)]
    return _load(found) if isinstance(found, str) else found


def arguments(cfg: DictConfig, name: str, cls: type) -> dict[str, Any]:
    """The keyword arguments the flags give ``cls`` as component ``name``: every flag feeding an argument ``cls``
    takes (a null flag whose default is null passes nothing: the constructor's default applies), and the arguments of
    the components nested in it (``conv_options={..., "kernel_options": {...}}``) where ``cls`` takes them."""
    component = COMPONENTS[name]
    accepted = accepted_arguments(cls)
    found: dict[str, Any] = {}
    for flag in feeding(name):
        argument = flag.feeds[1]  # type: ignore[index]
        given = value(cfg, flag.name)
        if argument in accepted and argument not in component.supplied and not (given is None and flag.nullable):
            found[argument] = given
    for child in COMPONENTS.values():
        if child.within is not None and child.within[0] == name and child.within[1] in accepted:
            found[child.within[1]] = arguments(cfg, child.name, component_class(cfg, child))
    return found


def flag_of_argument(name: str, argument: str) -> str | None:
    """The flag that ``argument`` of component ``name`` came from (``conv_options.kernel_options.omega_0`` of the
    network: ``kernel.omega_0``), or ``None`` (an argument the code supplied, e.g. the data's shape)."""
    head, dot, rest = argument.partition(".")
    child = next((c for c in COMPONENTS.values() if c.within == (name, head)), None)
    if child is not None and dot:
        return flag_of_argument(child.name, rest)
    flag = flag_feeding(name, argument)
    return None if flag is None else flag.name


def flag_error(error: InvalidArgument, name: str, context: str = "") -> ConfigError:
    """``error`` of component ``name``'s constructor, with the flag in place of the argument's name."""
    flag = flag_of_argument(name, error.argument)
    message = error.message
    if flag is not None:
        message = flag + message[len(error.argument) :] if message.startswith(error.argument) else f"{flag}: {message}"
    return ConfigError(f"{context}{message}", flag)


def build_datamodule(cfg: DictConfig) -> CCNNDataModule:
    """The datamodule of ``dataset.name``; constructing it reads nothing from disk."""
    cls = datamodule_class(cfg.dataset.name)
    options = arguments(cfg, "data", cls) | {"data_dir": resolve_path(cfg.dataset.data_dir)}
    batch_size = cfg.train.batch_size // cfg.train.accumulate_grad_steps
    try:
        return cls(batch_size=batch_size, test_batch_size=batch_size * cfg.test.batch_size_multiplier, **options)
    except InvalidArgument as error:
        raise flag_error(error, "data", f"dataset.name={cfg.dataset.name}: ") from error


def block_width_factors(value: Any) -> list[Any]:
    """``net.block_width_factors`` as CCNN takes it: ``[]`` for null and for the original's ``[0.0]`` (every block at
    ``net.no_hidden``), else the list of ``[factor, n_blocks]`` pairs."""
    return [] if value in (None, [0.0], [0], []) else list(value)


def network_arguments(cfg: DictConfig, meta: DataMeta) -> dict[str, Any]:
    """Every keyword argument of ``CCNN`` for data described by ``meta``: the flags' and the metadata's."""
    options = arguments(cfg, "network", CCNN)
    options["block_width_factors"] = block_width_factors(options.get("block_width_factors"))
    if meta.vocab_size is None:
        for name in ("net.embedding", "net.embedding_dim"):
            if not is_default(cfg, name):
                raise ConfigError(
                    f"{name}={value(cfg, name)!r} is not read by dataset.name={cfg.dataset.name} (its inputs are no "
                    f"token ids); leave it at its default.",
                    name,
                )
    return {argument: getattr(meta, field) for field, argument in DATA_ARGUMENTS.items()} | options


def build_network(cfg: DictConfig, meta: DataMeta) -> CCNN:
    """The CCNN for data described by ``meta`` (the dataset's metadata: channels, classes, shape, tokens)."""
    try:
        return CCNN(**network_arguments(cfg, meta))
    except InvalidArgument as error:
        from_data = error.argument in DATA_ARGUMENTS.values()
        raise flag_error(error, "network", f"dataset.name={cfg.dataset.name}: " if from_data else "") from error


def build_module(cfg: DictConfig, meta: DataMeta) -> ClassificationModule:
    """Network, loss, optimizer and schedule (all checked here, not when fitting starts)."""
    net = build_network(cfg, meta)
    built: dict[str, Any] = {}
    for name in ("optimizer", "schedule"):
        cls = component_class(cfg, COMPONENTS[name])
        try:
            built[name] = cls(**arguments(cfg, name, cls))
        except InvalidArgument as error:
            raise flag_error(error, name) from error
    try:
        return ClassificationModule(
            net,
            meta.num_classes,
            optimizer=built["optimizer"],
            scheduler=built["schedule"],
            input_grid=meta.grid,
            **arguments(cfg, "module", ClassificationModule),
        )
    except InvalidArgument as error:
        raise flag_error(error, "module") from error


def build_ema(cfg: DictConfig) -> EMAWeights | None:
    """The weight average that ``train.ema`` asks for, or ``None`` when it is null."""
    if cfg.train.ema is None:
        return None
    try:
        return EMAWeights(**arguments(cfg, "ema", EMAWeights))
    except InvalidArgument as error:
        raise flag_error(error, "ema") from error
