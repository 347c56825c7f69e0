"""Argument checks shared by the library rooms (ckconv, models, datamodules); imports nothing but the standard library.

A constructor declares what it accepts in its signature: the type of each argument and, through the aliases of
:mod:`argcheck.rules` (``PositiveInt``, ``Probability``, ...), its range. :func:`check_arguments` checks a call
against that declaration, and a config layer can read the same declaration without importing the constructor's
module (``argcheck.source``). A value that breaks a rule raises :class:`InvalidArgument`, which names the
argument, so that a caller (a notebook user, a config builder with its own flag names) knows which value to change.
"""

from argcheck.errors import InvalidArgument, did_you_mean, prefixed_arguments
from argcheck.rules import (
    DataDim,
    Fraction,
    NonNegativeFloat,
    NonNegativeInt,
    OpenFraction,
    PositiveFloat,
    PositiveInt,
    Probability,
    Rule,
    Seed,
    Share,
    check_arguments,
    check_choice,
    check_value,
    rule_of,
)
from argcheck.signature import accepted_arguments

__all__ = [
    "DataDim",
    "Fraction",
    "InvalidArgument",
    "NonNegativeFloat",
    "NonNegativeInt",
    "OpenFraction",
    "PositiveFloat",
    "PositiveInt",
    "Probability",
    "Rule",
    "Seed",
    "Share",
    "accepted_arguments",
    "check_arguments",
    "check_choice",
    "check_value",
    "did_you_mean",
    "prefixed_arguments",
    "rule_of",
]
