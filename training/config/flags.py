"""Views of the schema (``training.config.schema``): every flag by name with what it declares, and lookups.

Nothing here is written by hand: the flags, their types, defaults and metadata come from the dataclasses.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from training.config.schema import Change, Config


@dataclass(frozen=True)
class Flag:
    """One flag and what the schema declares of it."""

    name: str
    annotation: Any
    default: Any
    changes: frozenset[Change]
    feeds: tuple[str, str] | None
    dead: str | None
    choices: tuple[Any, ...] | str | None
    rule: Any

    @property
    def nullable(self) -> bool:
        return type(None) in typing.get_args(self.annotation)


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    return field.default_factory()  # type: ignore[misc]


def _walk(cls: type, prefix: str = "") -> Iterator[Flag]:
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        name = prefix + field.name
        if dataclasses.is_dataclass(hints[field.name]):
            yield from _walk(hints[field.name], name + ".")
            continue
        meta = field.metadata
        feeds = tuple(meta["feeds"].split(".", 1)) if meta.get("feeds") else None
        yield Flag(
            name,
            hints[field.name],
            _default(field),
            meta["changes"],
            feeds,
            meta["dead"],
            meta["choices"],
            meta["rule"],
        )


FLAGS: dict[str, Flag] = {flag.name: flag for flag in _walk(Config)}


def closest_flag(name: str) -> str | None:
    """The flag ``name`` most likely misspells: among those of its own namespace first (``test.batchsize`` is
    ``test.batch_size_multiplier``, not ``train.batch_size``), then among all."""
    namespace = name.rpartition(".")[0]
    siblings = [flag for flag in FLAGS if flag.rpartition(".")[0] == namespace]
    for candidates, cutoff in ((siblings, 0.5), (list(FLAGS), 0.6)):
        guess = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=cutoff)
        if guess:
            return guess[0]
    return None


def not_a_flag(name: str) -> str:
    """The message for a name that is no flag, with the likeliest intended one."""
    guess = closest_flag(name)
    hint = f" (did you mean {guess}?)" if guess else ""
    return f"{name} is not a flag{hint}; every flag is declared, with its default, in training/config/schema.py."


@functools.cache
def feeding(component: str) -> tuple[Flag, ...]:
    """The flags whose values ``component``'s constructor receives."""
    return tuple(flag for flag in FLAGS.values() if flag.feeds and flag.feeds[0] == component)


def flag_feeding(component: str, argument: str) -> Flag | None:
    """The flag that feeds ``argument`` of ``component``, if any."""
    return next((flag for flag in feeding(component) if flag.feeds[1] == argument), None)  # type: ignore[index]


def changing(*changes: Change) -> tuple[str, ...]:
    """The flags a different value of which changes any of ``changes``."""
    return tuple(name for name, flag in FLAGS.items() if flag.changes & set(changes))


def value(cfg: DictConfig, name: str) -> Any:
    """The value of flag ``name`` in ``cfg`` as plain Python (lists and dicts, not OmegaConf nodes)."""
    found = OmegaConf.select(cfg, name, default=None)
    return OmegaConf.to_container(found, resolve=True) if OmegaConf.is_config(found) else found


def is_default(cfg: DictConfig, name: str) -> bool:
    """Whether flag ``name`` has its schema default in ``cfg`` (an int equals the same float)."""
    here, default = value(cfg, name), FLAGS[name].default
    return here == default and isinstance(here, bool) == isinstance(default, bool)
