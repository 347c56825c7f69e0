"""The keyword arguments a class accepts, from its signature (and its parents', where it passes ``**kwargs`` on)."""

from __future__ import annotations

import functools
import inspect


@functools.cache
def accepted_arguments(cls: type) -> tuple[str, ...]:
    """The keyword arguments ``cls(...)`` accepts: those of its ``__init__`` and, while an ``__init__`` takes
    ``**kwargs`` (which it passes to its parent), those of the parents' along the method resolution order."""
    names: dict[str, None] = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        parameters = list(inspect.signature(klass.__init__).parameters.values())[1:]  # without self
        names |= dict.fromkeys(p.name for p in parameters if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL))
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return tuple(names)
