"""The error of a bad argument, named by its keyword in the signature that was called."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any


class InvalidArgument(ValueError):  # noqa: N818 (a ValueError: callers that catch those keep working)
    """A constructor or function argument has a value it cannot take.

    Args:
        argument: the keyword of the argument in the public signature the caller called; for an entry of a mapping
            argument, ``<argument>.<key>`` (e.g. ``kernel_options.omega_0``).
        message: one sentence that starts with ``argument`` and says what is wrong and what is accepted, e.g.
            ``hidden_channels must be an integer >= 1, got 0.``
    """

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(message)
        self.argument = argument
        self.message = message

    def __reduce__(self) -> tuple[type[InvalidArgument], tuple[str, str]]:
        # ValueError pickles its args only; keep both fields (errors cross process boundaries in data loaders).
        return type(self), (self.argument, self.message)

    def within(self, prefix: str) -> InvalidArgument:
        """The same error seen from a caller that passed this argument inside its own ``prefix`` argument, e.g.
        ``omega_0`` inside ``kernel_options.``: argument and message read ``kernel_options.omega_0``."""
        message = self.message
        if message.startswith(self.argument):
            message = prefix + message
        else:
            message = f"{prefix}{self.argument}: {message}"
        return InvalidArgument(prefix + self.argument, message)


@contextmanager
def prefixed_arguments(prefix: str) -> Iterator[None]:
    """Re-raise an :class:`InvalidArgument` of an inner call as :meth:`InvalidArgument.within` ``prefix``: an inner
    constructor's arguments reach it inside one mapping argument of the outer signature."""
    try:
        yield
    except InvalidArgument as error:
        raise error.within(prefix) from error


def did_you_mean(value: Any, choices: Iterable[Any]) -> str:
    """`` (did you mean X?)`` naming the choice that ``value`` most likely misspells (the same name in another case
    first: ``"mnist"`` for ``"MNIST"``), or ``""`` when none is close."""
    if not isinstance(value, str):  # a number or None spells no name
        return ""
    names = [choice for choice in choices if isinstance(choice, str) and choice]
    guess = [name for name in names if name.lower() == value.lower()]
    guess = guess or difflib.get_close_matches(value, names, n=1, cutoff=0.6)
    return f" (did you mean {guess[0]}?)" if guess else ""
