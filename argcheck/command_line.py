"""What the command lines of the project's tools share: a bad one is one line and exit 2, as ``main.py``'s is (the
run policy of the design: refused, nothing written), and ``argparse`` types for the usual ranges of a number."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

EXIT_REFUSED = 2


class OneLineParser(argparse.ArgumentParser):
    """``argparse``, but a bad command line is one line (its usage block is not), exit 2; options are never taken
    from an abbreviation (``--res`` is not ``--resolution``), so a misspelt option is refused, not guessed."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **{"allow_abbrev": False, **kwargs})

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_REFUSED)


def _number(kind: type, text: str, lowest: float, inclusive: bool) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if value < lowest or (value == lowest and not inclusive) or value != value:  # value != value: NaN
        bound = f">= {lowest:g}" if inclusive else f"> {lowest:g}"
        raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
    return value


def positive_int(text: str) -> int:
    """An ``argparse`` type: an integer >= 1."""
    return _number(int, text, 1, inclusive=True)  # type: ignore[return-value]


def positive_float(text: str) -> float:
    """An ``argparse`` type: a number > 0."""
    return _number(float, text, 0, inclusive=False)


def non_negative_float(text: str) -> float:
    """An ``argparse`` type: a number >= 0."""
    return _number(float, text, 0, inclusive=True)
