"""Where a dataset's files may already be: the on-disk layouts of the libraries and code bases that download them.

Each datamodule lists its known layouts under ``data_dir`` (torchvision's ``cifar-10-batches-py/``, torchaudio's
``SpeechCommands/speech_commands_v0.02/``, the LRA release's ``lra_release/listops-1000/``, ...); the first complete
one is used. When none is, one message lists every layout searched, the exact paths it expects and what is missing,
so that a misplaced or partial copy is named rather than silently downloaded over.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    """One arrangement of a dataset's files.

    Attributes:
        name: who writes this arrangement, e.g. ``"torchvision"``.
        root: the dataset's folder in this arrangement.
        expected: files or folders that must exist under ``root`` (relative, ``/``-separated).
    """

    name: str
    root: Path
    expected: tuple[str, ...]

    def missing(self) -> list[Path]:
        """The expected paths that do not exist."""
        return [self.root / entry for entry in self.expected if not (self.root / entry).exists()]

    def describe(self) -> str:
        """``the <name> layout at <root>: expects a, b, c; <what is missing>`` (of a layout that is not complete)."""
        state = "the folder does not exist"
        if self.root.is_dir():
            state = "missing " + ", ".join(str(path.relative_to(self.root)) for path in self.missing())
        return f"the {self.name} layout at {self.root}: expects {', '.join(self.expected)}; {state}"


def find_layout(layouts: Sequence[Layout]) -> Layout | None:
    """The first layout whose expected paths all exist, or ``None``."""
    return next((layout for layout in layouts if not layout.missing()), None)


def partial_copies(layouts: Sequence[Layout]) -> list[Layout]:
    """The layouts whose folder holds an incomplete copy (some expected paths, not all)."""
    return [layout for layout in layouts if layout.root.is_dir() and 0 < len(layout.missing()) < len(layout.expected)]


def not_found_message(dataset: str, data_dir: Path, layouts: Sequence[Layout], fix: str) -> str:
    """One line naming every layout searched, the exact paths each expects, what is missing, and the fix."""
    searched = " | ".join(layout.describe() for layout in layouts)
    return f"{dataset} data not found under {data_dir}. Searched {searched}. To fix: {fix}."
