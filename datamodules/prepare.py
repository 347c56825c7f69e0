"""Download, verify, extract and check datasets ahead of training.

Usage: ``python -m datamodules.prepare <dataset> [--data-dir DIR]``, where ``<dataset>`` is a ``dataset.name``
(``MNIST``, ``CIFAR10``, ``SpeechCommands``, ``ListOps``, ...), ``LRA`` (the whole Long Range Arena release:
ListOps, Retrieval and every Pathfinder folder) or ``all``.

A dataset already complete in one of its known layouts under ``DIR`` (torchvision's, torchaudio's, the original
CCNN code's, the LRA release's, S4's: see ``datamodules/layouts.py``) is left as it is; otherwise it is downloaded
with a progress bar, verified (checksums; the LRA release by length and then by the presence and example counts
of the files its tasks read), extracted with every archive member checked, and looked for again. Each dataset
ends with one line saying where it is, in which layout, and how big. Data generated locally (MNIST-1D) is
generated and cached.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from datamodules import DATAMODULES, datamodule_class, lra_common
from datamodules.base import DataError
from datamodules.layouts import Layout, find_layout
from datamodules.lra_common import LRA_FOLDER, check_release, fetch_release, lra_layouts

LRA_TASKS = ("ListOps", "AAN", "PathFinder")


def folder_size(path: Path) -> int:
    """Bytes in the files under ``path``."""
    return sum(entry.stat().st_size for entry in path.rglob("*") if entry.is_file())


def human_size(size: float) -> str:
    """``1536`` -> ``'1.5 KB'`` (powers of 1024)."""
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _ready(name: str, layout: Layout) -> str:
    return f"{name}: ready in {layout.root} ({layout.name} layout, {human_size(folder_size(layout.root))})"


def prepare_dataset(name: str, data_dir: Path) -> str:
    """Fetch ``dataset.name`` ``name`` into ``data_dir`` when needed; returns the line saying where it is."""
    datamodule = datamodule_class(name)(data_dir=data_dir, download=True, num_workers=0)
    datamodule.prepare_data()
    if not datamodule.layouts():
        return f"{name}: ready under {data_dir} (generated and cached locally)"
    return _ready(name, datamodule.locate())


def _lra_task_layouts(data_dir: Path) -> dict[str, list[Layout]]:
    """Every task folder of the release (the token tasks and each Pathfinder folder) and where it may be."""
    tasks = {}
    for name in ("ListOps", "AAN"):
        cls = datamodule_class(name)
        tasks[name] = lra_layouts(data_dir, cls.folder, cls.s4_folder, tuple(cls.split_files.values()))
    for relative in lra_common.RELEASE_PATHFINDER:
        tasks[relative] = lra_layouts(data_dir, relative, f"pathfinder/{relative}", ("metadata", "imgs"))
    return tasks


def prepare_lra(data_dir: Path) -> list[str]:
    """Make sure every LRA task folder is present (downloading the release when one is missing) and checked."""
    found = {task: find_layout(layouts) for task, layouts in _lra_task_layouts(data_dir).items()}
    if any(layout is None for layout in found.values()):
        missing = ", ".join(task for task, layout in found.items() if layout is None)
        print(f"LRA: not found under {data_dir}: {missing}; downloading the release.", flush=True)
        fetch_release(data_dir)  # checks the extracted release
        found = {task: find_layout(layouts) for task, layouts in _lra_task_layouts(data_dir).items()}
    elif (data_dir / LRA_FOLDER / "listops-1000").is_dir():
        check_release(data_dir / LRA_FOLDER)
    return [_ready(task, layout) for task, layout in found.items() if layout is not None]


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (1 when a dataset could not be prepared)."""
    names = [name for name in DATAMODULES if name not in LRA_TASKS]
    parser = argparse.ArgumentParser(prog="python -m datamodules.prepare", description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=[*names, *LRA_TASKS, "LRA", "all"])
    parser.add_argument("--data-dir", type=Path, default=Path("data"), help="the dataset.data_dir of your runs")
    args = parser.parse_args(argv)
    chosen = [*names, "LRA"] if args.dataset == "all" else [args.dataset]
    status = 0
    for name in chosen:
        try:
            lines = prepare_lra(args.data_dir) if name == "LRA" else [prepare_dataset(name, args.data_dir)]
        except DataError as error:
            print(f"{name}: {error}", file=sys.stderr)
            status = 1
            continue
        print("\n".join(lines), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
