"""Argument rules declared in signatures: ``hidden_channels: PositiveInt = 32`` says the type and the range at once.

The aliases below are ``typing.Annotated`` types whose metadata is a :class:`Rule`. :func:`check_arguments` checks a
call against the annotations of the function called; a plain ``bool``, ``int``, ``float`` or ``str`` annotation is a
type check (a string ``"False"`` is truthy and would silently mean True; ``True`` is no count). Annotations it does
not understand (``Sequence[int]``, ``Mapping[str, Any]``, a class) check nothing here: their functions check them.
"""

from __future__ import annotations

import ast
import builtins
import collections.abc
import functools
import inspect
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from argcheck.errors import InvalidArgument, did_you_mean


@dataclass(frozen=True)
class Rule:
    """The values a number may take: whole or not, a lower and an upper bound (open or closed), or a set."""

    integer: bool = False
    low: float | None = None
    low_open: bool = False
    high: float | None = None
    high_open: bool = False
    choices: tuple[Any, ...] | None = None

    def describe(self) -> str:
        """``an integer >= 1``, ``a finite number > 0``, ``a number in [0, 1)``, ``one of (1, 2, 3)``."""
        if self.choices is not None:
            return f"one of {self.choices}"
        kind = "an integer" if self.integer else "a finite number"
        shown = str if self.integer else "{:g}".format  # an integer bound in full: 4294967295, not 4.29497e+09
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"{kind.replace('a finite', 'a')} in {left}{shown(self.low)}, {shown(self.high)}{right}"
        if self.low is not None:
            return f"{kind} {'>' if self.low_open else '>='} {shown(self.low)}"
        if self.high is not None:
            return f"{kind} {'<' if self.high_open else '<='} {shown(self.high)}"
        return kind

    def admits(self, value: Any) -> bool:
        if self.choices is not None:
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            return False
        if math.isinf(value) and not (value == self.high == math.inf and not self.high_open):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))


PositiveInt = Annotated[int, Rule(integer=True, low=1)]
NonNegativeInt = Annotated[int, Rule(integer=True, low=0)]
PositiveFloat = Annotated[float, Rule(low=0, low_open=True)]
NonNegativeFloat = Annotated[float, Rule(low=0)]
Probability = Annotated[float, Rule(low=0, high=1, high_open=True)]  # [0, 1): a dropout rate
OpenFraction = Annotated[float, Rule(low=0, low_open=True, high=1, high_open=True)]  # (0, 1)
Fraction = Annotated[float, Rule(low=0, low_open=True, high=1)]  # (0, 1]
Share = Annotated[float, Rule(low=0, high=1)]  # [0, 1]: none, some or all of something
DataDim = Annotated[int, Rule(choices=(1, 2, 3))]
Seed = Annotated[int, Rule(integer=True, low=0, high=2**32 - 1)]  # what numpy's seeding accepts
PositiveNorm = Annotated[float, Rule(low=0, low_open=True, high=math.inf)]  # a p-norm's p: inf is the largest entry

# What an annotation's text may name for :func:`rule_of` to understand it without importing its module.
VOCABULARY: dict[str, Any] = {
    "PositiveInt": PositiveInt,
    "NonNegativeInt": NonNegativeInt,
    "PositiveFloat": PositiveFloat,
    "NonNegativeFloat": NonNegativeFloat,
    "Probability": Probability,
    "OpenFraction": OpenFraction,
    "Fraction": Fraction,
    "Share": Share,
    "DataDim": DataDim,
    "Seed": Seed,
    "PositiveNorm": PositiveNorm,
    "int": int,
    "float": float,
    "bool": bool,
    "str": str,
    "None": None,
    "Literal": typing.Literal,
    "Sequence": collections.abc.Sequence,
}

_SIMPLE = (bool, int, float, str)
_NAMES = {bool: "True or False", int: "an integer", float: "a number", str: "a string"}


@dataclass(frozen=True)
class Alternative:
    """One member of an annotation: a simple type and, maybe, its rule (``Literal[...]``: a rule of choices)."""

    kind: type
    rule: Rule | None = None

    def admits(self, value: Any) -> bool:
        if self.kind is bool:
            ok = isinstance(value, bool)
        elif self.kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif self.kind is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        else:
            ok = isinstance(value, self.kind)
        return ok and (self.rule is None or self.rule.admits(value))

    def describe(self) -> str:
        return self.rule.describe() if self.rule is not None else _NAMES[self.kind]


@dataclass(frozen=True)
class Declared:
    """What :func:`check_value` checks of one annotation: its simple members (a value must fit one of them),
    whether None passes, and whether every member is understood (if not, a value of a kind that no understood
    member has, e.g. a list for ``Sequence[int]``, is left to the function)."""

    alternatives: tuple[Alternative, ...]
    optional: bool
    complete: bool

    def problem(self, value: Any) -> str | None:
        """What ``value`` should have been (``an integer >= 1``), or ``None`` when it is fine."""
        if value is None:
            return None if self.optional else f"{self.describe()} (not None)"
        if any(alternative.admits(value) for alternative in self.alternatives):
            return None
        kinds = [a.kind for a in self.alternatives]
        judged = isinstance(value, bool) and bool in kinds
        judged = judged or any(Alternative(kind).admits(value) for kind in kinds if kind is not bool)
        if not self.complete and not judged:
            return None
        return self.describe()

    def describe(self) -> str:
        text = " or ".join(alternative.describe() for alternative in self.alternatives)
        return f"{text} or None" if self.optional else text


def _alternative(annotation: Any) -> Alternative | None:
    if annotation is _UNKNOWN:
        return None
    if typing.get_origin(annotation) is typing.Literal:
        values = typing.get_args(annotation)
        kinds = {type(value) for value in values}
        return Alternative(kinds.pop(), Rule(choices=values)) if len(kinds) == 1 and kinds <= set(_SIMPLE) else None
    rule = None
    if typing.get_origin(annotation) is Annotated:
        annotation, *extras = typing.get_args(annotation)
        rule = next((extra for extra in extras if isinstance(extra, Rule)), None)
    return Alternative(annotation, rule) if annotation in _SIMPLE else None


def _union_members(text: str) -> list[str]:
    """The members of the annotation ``text``: ``a | b``, ``Optional[a]`` and ``Union[a, b]`` written out."""
    node = ast.parse(text, mode="eval").body

    def members(node: ast.expr) -> list[ast.expr]:
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            return members(node.left) + members(node.right)
        if isinstance(node, ast.Subscript) and ast.unparse(node.value) in ("Optional", "typing.Optional"):
            return [*members(node.slice), ast.Constant(None)]
        if isinstance(node, ast.Subscript) and ast.unparse(node.value) in ("Union", "typing.Union"):
            parts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            return [m for part in parts for m in members(part)]
        return [node]

    return [ast.unparse(member) for member in members(node)]


def _evaluated(text: str) -> Any:
    """The annotation ``text`` names, from :data:`VOCABULARY` alone; ``_UNKNOWN`` when it names anything else."""
    try:
        return eval(text, {"__builtins__": {}}, VOCABULARY)
    except Exception:
        return _UNKNOWN


_UNKNOWN = object()


def rule_of(annotation: Any) -> Declared | None:
    """What :func:`check_value` checks of ``annotation`` (an evaluated one, or text naming only :data:`VOCABULARY`
    and names it does not know, which it leaves to the function), or ``None`` when it declares nothing checkable."""
    if isinstance(annotation, str):
        members = [_evaluated(member) for member in _union_members(annotation)]
    elif typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = list(typing.get_args(annotation))
    else:
        members = [annotation]
    optional = any(member is None or member is type(None) for member in members)
    understood = [_alternative(m) for m in members if m is not None and m is not type(None)]
    alternatives = tuple(a for a in understood if a is not None)
    if not alternatives:
        return None
    return Declared(alternatives, optional, complete=len(alternatives) == len(understood))


def check_value(name: str, value: Any, annotation: Any) -> None:
    """Raise :class:`InvalidArgument` naming ``name`` unless ``value`` fits ``annotation`` (see :func:`rule_of`)."""
    declared = rule_of(annotation)
    problem = None if declared is None else declared.problem(value)
    if problem is not None:
        raise InvalidArgument(name, f"{name} must be {problem}, got {value!r}.")


def check_choice(name: str, value: Any, choices: tuple[Any, ...]) -> None:
    """Raise :class:`InvalidArgument` naming ``name`` unless ``value`` is one of ``choices``, with the likeliest
    intended choice."""
    if value not in choices:
        raise InvalidArgument(name, f"{name} must be one of {choices}, got {value!r}{did_you_mean(value, choices)}.")


@functools.cache
def _declarations(function: Callable[..., Any]) -> tuple[tuple[str, Declared], ...]:
    found = []
    namespace = {**vars(builtins), **getattr(function, "__globals__", {})}
    for parameter in inspect.signature(function).parameters.values():
        annotation = parameter.annotation
        if isinstance(annotation, str):
            try:
                annotation = eval(annotation, namespace)
            except Exception:  # a name only imported for type checkers: nothing to check
                continue
        declared = rule_of(annotation)
        if declared is not None:
            found.append((parameter.name, declared))
    return tuple(found)


def check_arguments(function: Callable[..., Any], values: Mapping[str, Any]) -> None:
    """Check the arguments ``values`` (``locals()`` at the top of ``function``) against ``function``'s annotations.

    Raises:
        InvalidArgument: naming the first argument whose value its annotation does not admit.
    """
    for name, declared in _declarations(function):
        if name in values:
            problem = declared.problem(values[name])
            if problem is not None:
                raise InvalidArgument(name, f"{name} must be {problem}, got {values[name]!r}.")
