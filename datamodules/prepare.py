"""Download, verify, extract and check datasets ahead of training.

Usage: ``python -m datamodules.prepare <dataset> [--data-dir DIR]``, where ``<dataset>`` is a ``dataset.name``
(``MNIST``, ``CIFAR10``, ``SpeechCommands``, ``ListOps``, ...), ``LRA`` (the whole Long Range Arena release:
ListOps, Retrieval and every Pathfinder folder) or ``all``.

A dataset complete in one of its known layouts under ``DIR`` (``datamodules/layouts.py``) is left as it is;
otherwise it is downloaded with a progress bar, verified, extracted and looked for again. Then every split is read
and checked by the datamodule's own ``setup``, as a run would (with the dataset's default options, e.g. Speech
Commands' ten words), and its preprocessed tensors are cached for the runs; only then does the dataset's one line
say where it is, in which layout, and how big. For ``LRA`` that reads every Pathfinder set, the 128 and 256 pixel
ones included (tens of GB of images): ``PathFinder`` alone reads the default set only. A dataset that fails prints
the run's one-line message instead, and the command exits with status 1. MNIST-1D and Blobs3D are generated and
cached (their line says where, and how big).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

from datamodules import DATAMODULES, datamodule_class, lra_common
from datamodules.base import CCNNDataModule, DataError

LRA_TASKS = ("ListOps", "AAN", "PathFinder")


def folder_size(path: Path) -> int:
    """Bytes in the files under ``path``."""
    return sum(entry.stat().st_size for entry in path.rglob("*") if entry.is_file())


def human_size(size: float) -> str:
    """``1536`` -> ``'1.5 KB'`` (powers of 1024, at most GB)."""
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def datamodules_for(name: str, data_dir: Path) -> Iterator[tuple[str, CCNNDataModule]]:
    """The datamodules that ``<dataset>`` stands for, with the label of their line, made one at a time (each holds
    its data once prepared: the previous one is freed when the next is made)."""
    if name != "LRA":
        yield name, datamodule_class(name)(data_dir=data_dir, num_workers=0)
        return
    for task in ("ListOps", "AAN"):
        yield task, datamodule_class(task)(data_dir=data_dir, num_workers=0)
    for resolution, difficulty in lra_common.PATHFINDER_SETS:
        yield (
            f"PathFinder resolution={resolution} difficulty={difficulty}",
            datamodule_class("PathFinder")(
                data_dir=data_dir, num_workers=0, resolution=resolution, difficulty=difficulty
            ),
        )


def prepare(label: str, datamodule: CCNNDataModule) -> str:
    """Fetch the data when needed (``download=True``) and read every split; returns the line saying where it is.

    Raises:
        DataError: the data is missing, partial or corrupt, as a run would find it.
    """
    datamodule.prepare_data()
    datamodule.setup()  # the checks of a run: a copy whose folders all exist can still be partial or corrupt
    if not datamodule.layouts():  # generated locally and cached in a folder of the dataset's name
        cache = datamodule.data_dir / datamodule.name
        return f"{label}: ready in {cache} (generated and cached, {human_size(folder_size(cache))})"
    layout = datamodule.locate()
    return f"{label}: ready in {layout.root} ({layout.name} layout, {human_size(folder_size(layout.root))})"


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (1 when a dataset could not be prepared)."""
    names = [name for name in DATAMODULES if name not in LRA_TASKS]
    parser = argparse.ArgumentParser(prog="python -m datamodules.prepare", description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=[*names, *LRA_TASKS, "LRA", "all"])
    parser.add_argument("--data-dir", type=Path, default=Path("data"), help="the dataset.data_dir of your runs")
    args = parser.parse_args(argv)
    if args.data_dir.exists() and not args.data_dir.is_dir():
        parser.error(f"--data-dir {args.data_dir} is a file, not a folder")  # one line, exit 2, as for other arguments
    status = 0
    for name in [*names, "LRA"] if args.dataset == "all" else [args.dataset]:
        for label, datamodule in datamodules_for(name, args.data_dir):
            try:
                print(prepare(label, datamodule), flush=True)
            except DataError as error:
                print(f"{label}: {error}", file=sys.stderr)
                status = 1
                break  # the other LRA tasks would try the same download again
    return status


if __name__ == "__main__":
    sys.exit(main())
