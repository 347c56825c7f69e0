"""The results CSV: one row per trained seed, written by ``experiments.run``, read by ``experiments.summarize``.

A row is appended the moment its seed finishes, in one ``write`` to a file opened for appending, so an interrupted
invocation keeps the seeds it finished and two invocations writing the same file do not overwrite each other's
rows. A new file appears with its header already in it (written aside, then linked into place).
"""

from __future__ import annotations

import csv
import io
import math
import shlex
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from experiments.outputs import append_csv_rows, check_folder
from experiments.outputs import check_appendable as check_writable
from training.tools import RequestError

COLUMNS = (
    "task",
    "variant",
    "seed",
    "test_acc",
    "val_acc",
    "epochs",
    "date",
    "machine",
    "wall_s",
    "extra",
    "run_dir",
)


class ResultsFileError(RequestError):
    """A results CSV that cannot be read or appended to; the message names the file and what to do."""


def result_row(
    task: str,
    variant: str,
    seed: int,
    metrics: dict[str, Any],
    wall_s: float,
    date: str,
    machine: str,
    epochs: int | None = None,
    extra: Sequence[str] = (),
    run_dir: str = "",
) -> dict[str, str]:
    """One CSV row from the metrics ``training.run.execute.train`` returned (accuracies there are fractions, here %).

    Args:
        task: Folder under ``cfg/experiment``, e.g. ``smnist``.
        variant: Preset name, e.g. ``ccnn_4_140``.
        seed: The run's ``seed``.
        metrics: What ``train`` returned; ``test/acc`` and ``val/acc`` are read.
        wall_s: Seconds the seed took.
        date: ``YYYY-MM-DD``.
        machine: Where it ran, e.g. ``node7 (NVIDIA H100 80GB HBM3)``.
        epochs: Epochs completed, if known.
        extra: Overrides given on top of the preset (``--extra``); a row with any is a different experiment.
        run_dir: The run's folder (checkpoints, logs, config).
    """

    def percent(key: str) -> str:
        value = metrics.get(key)
        return "" if value is None else f"{100.0 * float(value):.4f}"

    return {
        "task": task,
        "variant": variant,
        "seed": str(seed),
        "test_acc": percent("test/acc"),
        "val_acc": percent("val/acc"),
        "epochs": "" if epochs is None else str(epochs),
        "date": date,
        "machine": machine,
        "wall_s": f"{wall_s:.1f}",
        "extra": shlex.join(extra),
        "run_dir": run_dir,
    }


def same_extra(row: dict[str, str], extra: Sequence[str]) -> bool:
    """Whether ``row`` was run with the overrides ``extra`` (in any order)."""
    return sorted(shlex.split(row["extra"])) == sorted(extra)


def read_results(path: Path, allow_empty: bool = True) -> list[dict[str, str]]:
    """The rows of a results CSV, checked: the header is ``COLUMNS``, seeds are integers, accuracies percentages.

    An empty file (not even a header) has no rows when ``allow_empty`` (a file to append to); a reader that would
    take it for "no result yet" passes ``allow_empty=False``. Raises ``ResultsFileError`` naming the file (and line)
    for anything else.
    """
    return [row for _, row in numbered_results(path, allow_empty)]


def _percentage(text: str) -> float:
    """An accuracy of the file: a number in [0, 100] (a fraction written as such, or NaN, is not one)."""
    value = float(text)
    if not 0.0 <= value <= 100.0:  # also False for NaN
        raise ValueError(f"{text} is not a percentage in [0, 100]")
    return value


def numbered_results(path: Path, allow_empty: bool = True) -> list[tuple[int, dict[str, str]]]:
    """:func:`read_results` with the line of each row in the file, for messages that name a row."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultsFileError(f"{path}: no such results file (experiments.run writes it; check --results)") from None
    except IsADirectoryError:
        raise ResultsFileError(f"{path}: is a folder, not a results CSV (check --results)") from None
    except UnicodeDecodeError:
        raise ResultsFileError(f"{path}: not a text file, so not a results CSV (check --results)") from None
    except OSError as error:
        raise ResultsFileError(f"{path}: cannot be read ({error.strerror})") from None
    if not text:
        if allow_empty:
            return []
        raise ResultsFileError(f"{path}: empty, not a results CSV (no header line; check --results)")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = tuple(next(reader))
    if header != COLUMNS:
        raise ResultsFileError(
            f"{path}: not a results CSV of this version (header {','.join(header)!r}; expected {','.join(COLUMNS)!r})"
        )
    rows = []
    for values in reader:
        line = reader.line_num
        if not values:
            continue
        if len(values) != len(COLUMNS):
            raise ResultsFileError(f"{path}, line {line}: {len(values)} fields, expected {len(COLUMNS)}")
        row = dict(zip(COLUMNS, values, strict=True))
        try:
            int(row["seed"])
            for key in ("test_acc", "val_acc"):
                if row[key]:
                    try:
                        _percentage(row[key])
                    except ValueError as error:
                        raise ValueError(f"{key}: {error}") from None
            shlex.split(row["extra"])
        except ValueError as error:
            raise ResultsFileError(f"{path}, line {line}: {error}") from None
        rows.append((line, row))
    return rows


def check_appendable(path: Path) -> list[dict[str, str]]:
    """Fail now, before hours of training, if rows could not be added to ``path``; return the rows it holds.

    A missing file is fine where it can be made (``append_result`` creates it and the folders above it): the
    nearest existing folder above it is tried with a temporary file, since permission bits do not tell root about
    read-only mounts or ``/proc``.
    """
    path = Path(path)
    what = f"--results {path}"
    try:
        if path.exists():
            rows = read_results(path)
            check_writable(path, what)
            return rows
        check_folder(path.parent, what)
    except RequestError as error:
        raise ResultsFileError(str(error)) from None
    return []


def append_result(path: Path, row: dict[str, str]) -> None:
    """Add one row to the results CSV at ``path`` (created with its header if missing), durably, in one write
    (``experiments.outputs.append_csv_rows``)."""
    append_csv_rows(path, COLUMNS, [row])


def mean_std(values: Iterable[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation and count of ``values``.

    The sample standard deviation (``statistics.stdev``, divisor n - 1) estimates the spread of the accuracy a new
    seed would give; the population one (``pstdev``) would understate it for the 3 seeds a row usually has. It is
    undefined for one value: NaN there (shown as no ± at all), and the mean is NaN for no values.
    """
    data = [float(v) for v in values]
    mean = statistics.fmean(data) if data else math.nan
    std = statistics.stdev(data) if len(data) > 1 else math.nan
    return mean, std, len(data)


def plus_minus(mean: float, std: float) -> str:
    """``99.10 ± 0.20``, or ``99.10`` when the spread is unknown (one seed)."""
    return f"{mean:.2f}" if math.isnan(std) else f"{mean:.2f} ± {std:.2f}"


def aggregate(rows: Iterable[dict[str, str]], key: str = "test_acc") -> dict[tuple[str, str], dict[str, Any]]:
    """Per (task, variant): mean, sample std and n of ``key`` over the rows that have it, the latest date, the seeds.

    Only rows run with the preset as is (empty ``extra``) count: a run with overridden flags is a different
    experiment and is not averaged with the preset's. A seed recorded twice (two invocations that trained it at the
    same time) counts once, by its latest row: counted twice, it would shrink the spread as if it were two seeds.
    """
    groups: dict[tuple[str, str], dict[int, dict[str, str]]] = {}
    for row in rows:
        if row.get("extra") or not row.get(key):
            continue
        seeds = groups.setdefault((row["task"], row["variant"]), {})
        seed = int(row["seed"])
        if seed not in seeds or row["date"] >= seeds[seed]["date"]:  # ISO dates: later sorts after; ties: the last
            seeds[seed] = row
    summary = {}
    for group, by_seed in groups.items():
        members = list(by_seed.values())
        mean, std, n = mean_std(float(r[key]) for r in members)
        summary[group] = {
            "mean": mean,
            "std": std,
            "n": n,
            "date": max(r["date"] for r in members),
            "seeds": sorted(int(r["seed"]) for r in members),
        }
    return summary
