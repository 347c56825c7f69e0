"""Download, verify, extract and check datasets ahead of training.

Usage: ``python -m datamodules.prepare <dataset> [--data-dir DIR]``, where ``<dataset>`` is a ``dataset.name``
(``MNIST``, ``CIFAR10``, ``SpeechCommands``, ``ListOps``, ...), ``LRA`` (the whole Long Range Arena release:
ListOps, Retrieval and every Pathfinder folder) or ``all``.

A dataset complete in one of its known layouts under ``DIR`` (``datamodules/layouts.py``) is left as it is;
otherwise it is downloaded with a progress bar, verified, extracted and looked for again. Then every split is read
and checked by the datamodule's own ``setup``, as a run would (with the dataset's default options, e.g. Speech
Commands' ten words, but holding out a single validation example: how many a run holds out is the run's flag
``dataset.params.val_size``, checked by the run), and its preprocessed tensors are cached for the runs; only then
does the dataset's one line say where it is, in which layout, and how big. For ``LRA`` that reads every Pathfinder
set, the 128 and 256 pixel ones included (tens of GB of images): ``PathFinder`` alone reads the default set only.
MNIST-1D and Blobs3D are generated and cached (their line says where, and how big).

A file already at a download's destination that fails its checksum is never deleted or replaced: this command did
not download it (it keeps only verified downloads), so it may be a user's own copy; the dataset fails, naming it.

Exit status: 0 every dataset is ready; 1 a dataset failed (one ``error:`` line each); 2 the command line was refused
(one line, before anything is imported or written: an unknown dataset or option, a ``--data-dir`` that is a file or
cannot be written to); 130 interrupted (one line; no partial download, extraction or cache file is left).
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from argcheck import did_you_mean
from argcheck.command_line import OneLineParser
from datamodules import DATAMODULES  # a plain dict: the package imports torch only on first use of a class

if TYPE_CHECKING:
    from datamodules.base import CCNNDataModule

PROG = "python -m datamodules.prepare"
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130  # the shell's code for SIGINT
LRA_TASKS = ("ListOps", "AAN", "PathFinder")


def _single_names() -> list[str]:
    """The datasets ``all`` prepares one by one (the LRA tasks come from one release, prepared as ``LRA``)."""
    return [name for name in DATAMODULES if name not in LRA_TASKS]


def dataset_names() -> list[str]:
    """What ``<dataset>`` accepts."""
    return [*_single_names(), *LRA_TASKS, "LRA", "all"]


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


# ------------------------------------------------------------------------------------------- the command line


def _parser() -> tuple[OneLineParser, list[str]]:
    """The parser, and its option strings (for the did-you-mean of a misspelt option)."""
    parser = OneLineParser(
        prog=PROG,
        description=__doc__.split("\n\n")[0],
        epilog="exit status: 0 every dataset is ready, 1 a dataset failed, 2 refused, 130 interrupted",
    )
    parser.add_argument("dataset", metavar="dataset", help=f"one of: {', '.join(dataset_names())}")
    data_dir = parser.add_argument(
        "--data-dir", type=Path, default=Path("data"), help="the dataset.data_dir of your runs (default: %(default)s)"
    )
    return parser, [*data_dir.option_strings, "--help"]


def _unknown_argument(extras: list[str], known: list[str]) -> str:
    """The refusal of the arguments ``parse_known_args`` left over, with the option a misspelt one meant."""
    options = [extra for extra in extras if extra.startswith("-")]
    if not options:
        return f"unexpected argument {extras[0]!r}: give one dataset (and --data-dir)"
    option = options[0].split("=", 1)[0]
    return f"unknown option {option}{did_you_mean(option, known)}"


def _data_dir_problem(data_dir: Path) -> str | None:
    """Why datasets cannot be downloaded and cached under ``data_dir``, or ``None``.

    Writability is tried, not read from permission bits: root ignores those, while an immutable folder, a read-only
    mount or ``/proc`` refuse root too. The try is a temporary file in ``data_dir``, or in its nearest existing
    parent when it does not exist yet (creating folders there needs the same right); it is removed at once, and the
    folder's modification time put back, so that a refused command leaves no trace there.
    """
    folder = Path(os.path.abspath(data_dir))
    while not folder.exists() and not folder.is_symlink() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        what = "a broken link" if folder.is_symlink() and not folder.exists() else "a file"
        if folder == Path(os.path.abspath(data_dir)):
            return f"--data-dir {data_dir} is {what}, not a folder"
        return f"--data-dir {data_dir} cannot be created: {folder} is {what}, not a folder"
    before = folder.stat()
    try:
        handle, name = tempfile.mkstemp(prefix=".prepare-write-check-", dir=folder)
    except OSError as error:
        return (
            f"--data-dir {data_dir} is not writable: cannot create a file in {folder} ({error.strerror or error}); "
            "datasets are downloaded and cached there: choose a writable folder"
        )
    os.close(handle)
    with contextlib.suppress(OSError):  # utime: only the folder's owner may set its times
        os.unlink(name)
        os.utime(folder, ns=(before.st_atime_ns, before.st_mtime_ns))
    return None


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    """The checked command line; a bad one exits with status 2 and one line, before torch is imported."""
    parser, options = _parser()
    args, extras = parser.parse_known_args(argv)
    if extras:  # first: an unknown option's value would otherwise be taken for the dataset
        parser.error(_unknown_argument(extras, options))
    names = dataset_names()
    if args.dataset not in names:
        hint = did_you_mean(args.dataset, names) or f"; one of: {', '.join(names)}"
        parser.error(f"unknown dataset {args.dataset!r}{hint}")
    if (problem := _data_dir_problem(args.data_dir)) is not None:
        parser.error(problem)
    return args


# ------------------------------------------------------------------------------------------- preparing the data


def _check_options(cls: type) -> dict[str, Any]:
    """Options that make the check of a dataset independent of a run's settings.

    A run holds out ``dataset.params.val_size`` training examples (5000 for MNIST and CIFAR by default); a small
    copy can hold fewer, which is the run's setting to change, not a fault of the data, and prepare has no such flag.
    One held-out example reads and checks every split all the same; no cache key depends on ``val_size``.
    """
    return {"val_size": 1} if "val_size" in inspect.signature(cls).parameters else {}


def datamodules_for(name: str, data_dir: Path) -> Iterator[tuple[str, CCNNDataModule]]:
    """The datamodules that ``<dataset>`` stands for, with the label of their line, made one at a time (each holds
    its data once prepared: the previous one is freed when the next is made)."""
    from datamodules import datamodule_class, lra_common  # torch and Lightning: only once the command line is good

    def made(task: str, **options: Any) -> CCNNDataModule:
        cls = datamodule_class(task)
        return cls(data_dir=data_dir, num_workers=0, **_check_options(cls), **options)

    if name != "LRA":
        yield name, made(name)
        return
    for task in ("ListOps", "AAN"):
        yield task, made(task)
    for resolution, difficulty in lra_common.PATHFINDER_SETS:
        label = f"PathFinder resolution={resolution} difficulty={difficulty}"
        yield label, made("PathFinder", resolution=resolution, difficulty=difficulty)


def prepare(label: str, datamodule: CCNNDataModule) -> str:
    """Fetch the data when needed (``download=True``) and read every split; returns the line saying where it is.

    Raises:
        DataError: the data is missing, partial or corrupt, as a run would find it, or its cache cannot be written.
    """
    from datamodules.cache import cache_writes_required

    with cache_writes_required():  # a run goes on without its cache; prepare's line would say it was cached
        datamodule.prepare_data()
        datamodule.setup()  # the checks of a run: a copy whose folders all exist can still be partial or corrupt
    if not datamodule.layouts():  # generated locally and cached in a folder of the dataset's name
        cache = datamodule.data_dir / datamodule.name
        return f"{label}: ready in {cache} (generated and cached, {human_size(folder_size(cache))})"
    layout = datamodule.locate()
    return f"{label}: ready in {layout.root} ({layout.name} layout, {human_size(folder_size(layout.root))})"


def failure_line(label: str, name: str, error: BaseException) -> str:
    """One ``error:`` line for a dataset that failed; the messages of some datamodules already start with the
    dataset's name (``MNIST: every mirror failed ...``), which is not repeated."""
    message = " ".join(str(error).split())  # one line, whatever the message held
    message = message.removeprefix(f"{name}: ")
    return f"error: {label}: {message}"


def prepare_all(dataset: str, data_dir: Path) -> int:
    """Prepare ``dataset`` (every one for ``all``), one line each; returns the exit status."""
    from datamodules.base import DataError

    status = 0
    for name in [*_single_names(), "LRA"] if dataset == "all" else [dataset]:
        for label, datamodule in datamodules_for(name, data_dir):
            try:
                print(prepare(label, datamodule), flush=True)
            except (DataError, OSError) as error:  # OSError: e.g. a disk that fills up while extracting
                print(failure_line(label, datamodule.name, error), file=sys.stderr, flush=True)
                status = EXIT_FAILED
                break  # the other LRA tasks would try the same download again
    return status


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (see the module's docstring). A refused command line exits
    (``SystemExit(2)``) from here."""
    try:
        args = parse_arguments(argv)
        return prepare_all(args.dataset, args.data_dir)
    except KeyboardInterrupt:
        # Downloads, extractions and cache files are written aside and renamed when complete, and removed when
        # interrupted; datasets reported ready before stay ready.
        print("error: interrupted; nothing half-written was left (datasets reported ready stay ready)", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
