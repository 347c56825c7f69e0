"""The library's argument errors: each names the keyword argument the caller passed, so a notebook user, and a config
builder that maps arguments to its own flag names, can tell which value to change."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any


class InvalidArgument(ValueError):  # noqa: N818 (the name training/build.py catches; it is a ValueError)
    """A constructor or builder argument has a value it cannot take.

    Args:
        argument: the keyword name of the argument in the public signature the user called (for an entry of a
            dict argument, ``<argument>.<key>``, e.g. ``optimizer.lr``).
        message: one sentence that starts with ``argument``, says what is wrong and what is accepted, e.g.
            ``hidden_channels must be a positive integer, got 0.``
    """

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(message)
        self.argument = argument
        self.message = message

    def __reduce__(self) -> tuple[type[InvalidArgument], tuple[str, str]]:
        # ValueError pickles its args only; keep both fields (errors cross process boundaries in data loaders).
        return type(self), (self.argument, self.message)

    def renamed(self, argument: str, others: Mapping[str, str] | None = None) -> InvalidArgument:
        """The same error under the caller's name for the argument: the message's leading name is replaced, and so
        is each mention of an argument in ``others`` (inner name -> caller's name) as an argument: written with a
        value (``bias=False``), or a whole word with an underscore (``omega_0``). Plain words that are also argument
        names (``name``, ``bias``, ``causal``) stay as they are elsewhere: "must name a class" is English."""
        message = self.message
        for inner, outer in (others or {}).items():
            if inner != self.argument:
                as_argument = r"(?![\w])" if "_" in inner else r"(?==)"
                message = re.sub(rf"(?<![\w.]){re.escape(inner)}{as_argument}", outer, message)
        if message.startswith(self.argument):
            return InvalidArgument(argument, argument + message[len(self.argument) :])
        return InvalidArgument(argument, f"{argument}: {message}")


@contextmanager
def renamed_arguments(names: Mapping[str, str] | None = None, *, prefix: str | None = None) -> Iterator[None]:
    """Re-raise an :class:`InvalidArgument` from an inner call under the outer signature's name for the argument.

    An argument listed in ``names`` takes its mapped name; any other takes ``prefix + argument`` when a prefix is
    given, and keeps its name otherwise (it is already the caller's, e.g. ``data_dim`` passed straight through).

    Example:
        ``with renamed_arguments({"omega_0": "kernel_omega_0"}): build_kernel_net(...)``
    """
    try:
        yield
    except InvalidArgument as error:
        outer = (names or {}).get(error.argument)
        if outer is None and prefix is not None:
            outer = prefix + error.argument
        if outer is None or outer == error.argument:
            raise
        raise error.renamed(outer, names) from error


def did_you_mean(value: Any, choices: Iterable[Any]) -> str:
    """`` (did you mean X?)`` naming the choice that ``value`` most likely misspells (the same name in another case
    first: ``"mnist"`` for ``"MNIST"``), or ``""`` when none is close."""
    if not isinstance(value, str):  # a number or None spells no name
        return ""
    names = [choice for choice in choices if isinstance(choice, str) and choice]
    guess = [name for name in names if name.lower() == value.lower()]
    guess = guess or difflib.get_close_matches(value, names, n=1, cutoff=0.6)
    return f" (did you mean {guess[0]}?)" if guess else ""


def check_choice(name: str, value: Any, choices: tuple) -> None:
    """Raise :class:`InvalidArgument` naming ``name`` unless ``value`` is one of ``choices``, with the likeliest
    intended choice."""
    if value not in choices:
        raise InvalidArgument(name, f"{name} must be one of {choices}, got {value!r}{did_you_mean(value, choices)}.")


def check_positive_int(name: str, value: Any) -> None:
    """Raise :class:`InvalidArgument` naming ``name`` unless ``value`` is an integer >= 1 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidArgument(name, f"{name} must be a positive integer (>= 1), got {value!r}.")


def check_bool(name: str, value: Any) -> None:
    """Raise :class:`InvalidArgument` naming ``name`` unless ``value`` is ``True`` or ``False``: a string such as
    ``"False"`` is truthy and would silently mean True."""
    if not isinstance(value, bool):
        raise InvalidArgument(name, f"{name} must be True or False, got {value!r}.")


def check_positive_number(name: str, value: Any) -> None:
    """Raise :class:`InvalidArgument` naming ``name`` unless ``value`` is a finite number > 0 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not (math.isfinite(value) and value > 0):
        raise InvalidArgument(name, f"{name} must be a finite number > 0, got {value!r}.")
