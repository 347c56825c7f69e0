"""Turn a results CSV (from ``experiments.run``) into the table of ``experiments/README.md`` and a bar plot.

    python -m experiments.summarize [--results experiments/results.csv] [--readme experiments/README.md]
                                    [--plot experiments/results.png]

The table is rewritten between ``<!-- results:start -->`` and ``<!-- results:end -->``; one row per preset with
its command, parameter count, the paper's accuracy (with its provenance tag) and ours (mean ± sample std over
seeds, n, date of the latest run), or "not run yet". Rows of a preset outside the paper's grid (e.g.
``blobs3d/ccnn_2_16``) are named on stdout, not tabulated.

Refused with one line naming the file (exit 2) before anything is written: a results file that is missing or not a
results CSV, a row of a preset that does not exist or with an accuracy outside [0, 100] (its line is named), a README
without the markers or that cannot be written, and a ``--plot`` that is not a ``.png`` name, is a folder, cannot be
written, or is a file the tool did not write. The tool rewrites only its own plots: those that carry its mark (a PNG
text chunk ``Source: python -m experiments.summarize``), and the repository's ``experiments/results.png``. Both
outputs are written aside and put in place only once both are written.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from argcheck.command_line import OneLineParser
from experiments.outputs import Output, check_output, is_marked_png, png_metadata, write_files
from experiments.results import ResultsFileError, aggregate, numbered_results, plus_minus
from experiments.run import REPO, RESULTS
from training.cli import report
from training.tools import OutputError, RequestError

TOOL = "experiments.summarize"
README = REPO / "experiments" / "README.md"
PLOT = REPO / "experiments" / "results.png"
PRESET_DIR = REPO / "cfg" / "experiment"
START, END = "<!-- results:start -->", "<!-- results:end -->"

# (task, title) in table order; every task has the variants ccnn_4_140 and ccnn_6_380.
TASKS: tuple[tuple[str, str], ...] = (
    ("smnist", "sMNIST"),
    ("pmnist", "pMNIST"),
    ("scifar10", "sCIFAR10"),
    ("sc_raw", "Speech Commands raw"),
    ("sc_mfcc", "Speech Commands MFCC"),
    ("listops", "LRA ListOps"),
    ("text", "LRA Text"),
    ("retrieval", "LRA Retrieval (new)"),
    ("image", "LRA Image"),
    ("pathfinder", "LRA Pathfinder"),
    ("pathx", "LRA Path-X (new)"),
    ("image2d", "2D Image"),
    ("pathfinder2d", "2D Pathfinder"),
    ("cifar10", "CIFAR-10"),
    ("cifar100", "CIFAR-100"),
    ("stl10", "STL-10"),
)
VARIANTS = ("ccnn_4_140", "ccnn_6_380")


class Anchor(NamedTuple):
    """An accuracy to compare with: the number to plot (None: nothing to plot), its text, its source."""

    value: float | None
    text: str
    source: str


NONE = Anchor(None, "—", "")
# From /work/shared/reference/peers.md §1 with its provenance tags: [R] verified in a repository or thread,
# [P] recalled from the paper (unverified), [P?] low-confidence recollection. Key: (task, variant), variant "*" =
# the number is not tied to a variant in peers.md. Anything peers.md does not give is "—".
_LRA_1D = "[P] CCNN 1D LRA row (arXiv 2206.03398), variant not stated"
PAPER: dict[tuple[str, str], Anchor] = {
    ("smnist", "*"): Anchor(99.72, "99.72", "[P?] CCNN, variant not stated"),
    ("pmnist", "*"): Anchor(98.84, "98.84", "[P?] CCNN, variant not stated"),
    ("scifar10", "ccnn_4_140"): Anchor(93.08, "93.08", "[P?]"),
    ("scifar10", "ccnn_6_380"): Anchor(94.0, "≈94", "[P?] 'higher than 4,140'"),
    ("sc_raw", "*"): Anchor(None, "—", "[P?] only 'SOTA, > 98.32 (S4)' is recalled"),
    ("listops", "*"): Anchor(43.60, "43.60", _LRA_1D),
    ("text", "*"): Anchor(84.08, "84.08", _LRA_1D),
    ("retrieval", "*"): Anchor(None, "✗", "[P] not run in the paper (counted as 50 in its LRA average)"),
    ("image", "*"): Anchor(88.90, "88.90", _LRA_1D),
    ("pathfinder", "*"): Anchor(91.51, "91.51", _LRA_1D),
    ("pathx", "*"): Anchor(None, "✗", "[P] CCNN failed / not run (counted as 50)"),
    ("image2d", "*"): Anchor(91.0, "≈91", "[P?] CCNN 2D, variant not stated"),
    ("pathfinder2d", "*"): Anchor(94.5, "≈94–95", "[P?] CCNN 2D, variant not stated"),
    ("cifar10", "ccnn_4_140"): Anchor(91.82, "91.82", "[R] ccnn PR #1 reproduction, 3 seeds (92.79/91.87/90.80)"),
    ("cifar10", "ccnn_6_380"): Anchor(93.0, "≈93", "[P?]"),
}


def paper_anchor(task: str, variant: str) -> Anchor:
    return PAPER.get((task, variant)) or PAPER.get((task, "*")) or NONE


def command(task: str, variant: str) -> str:
    return f"python main.py experiment={task}/{variant}"


def preset_parameters() -> dict[str, int]:
    """Parameter count of every preset, built from the datasets' metadata (no data is read)."""
    from ckconv.hints import count_parameters
    from training.build import build_datamodule, build_network
    from training.config.compose import compose

    counts = {}
    for task, _ in TASKS:
        for variant in VARIANTS:
            cfg = compose([f"experiment={task}/{variant}", "train.dry_run=True"])
            counts[f"{task}/{variant}"] = count_parameters(build_network(cfg, build_datamodule(cfg).meta).parameters())
    return counts


def _ours(summary: dict[str, Any] | None) -> str:
    if summary is None:
        return "not run yet"
    return f"{plus_minus(summary['mean'], summary['std'])} (n={summary['n']}, {summary['date']})"


def build_table(rows: Sequence[dict[str, str]], parameters: dict[str, int]) -> str:
    """The markdown table: one row per preset."""
    summary = aggregate(rows)
    lines = [
        "| Task | Variant | Command | Parameters | Paper test acc. % (source) | Ours test acc. %, mean ± std |",
        "|---|---|---|---|---|---|",
    ]
    for task, title in TASKS:
        for variant in VARIANTS:
            anchor = paper_anchor(task, variant)
            paper = f"{anchor.text} {anchor.source}".strip()
            count = parameters.get(f"{task}/{variant}")
            lines.append(
                f"| {title} | {variant.removeprefix('ccnn_').replace('_', ',')} | `{command(task, variant)}` | "
                f"{'?' if count is None else f'{count:,}'} | {paper} | {_ours(summary.get((task, variant)))} |"
            )
    return "\n".join(lines)


class MarkersError(RequestError):
    """The README lacks the markers between which the table goes."""


def replace_between_markers(text: str, table: str) -> str:
    """``text`` with ``table`` between the markers, which must be there in order (``MarkersError`` otherwise)."""
    if START not in text or END not in text or text.index(START) > text.index(END):
        raise MarkersError(f"README must contain {START} followed by {END}.")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table}\n{END}{tail}"


def plot(rows: Sequence[dict[str, str]], path: Path) -> Path:
    """Bar plot per preset: ours (mean, error bar = std) next to the paper's number where there is one; a PNG that
    carries the tool's mark."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = aggregate(rows)
    labels, ours, errors, paper = [], [], [], []
    for task, _ in TASKS:
        for variant in VARIANTS:
            labels.append(f"{task}\n{variant.removeprefix('ccnn_').replace('_', ',')}")
            found = summary.get((task, variant))
            ours.append(found["mean"] if found else math.nan)
            errors.append(found["std"] if found and not math.isnan(found["std"]) else 0.0)
            value = paper_anchor(task, variant).value
            paper.append(math.nan if value is None else value)
    x = range(len(labels))
    fig, ax = plt.subplots(figsize=(max(10, 0.55 * len(labels)), 4.5))
    ax.bar([i - 0.2 for i in x], paper, width=0.4, label="paper / reference (see tags in README)", color="0.7")
    ax.bar([i + 0.2 for i in x], ours, width=0.4, yerr=errors, capsize=2, label="ours (mean ± std)", color="C0")
    ax.set_xticks(list(x), labels, rotation=90, fontsize=7)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    if not summary:
        ax.set_title("CCNN presets: ours not run yet")
    else:
        ax.set_title("CCNN presets: test accuracy, ours vs paper")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, format="png", metadata=png_metadata(TOOL))
    plt.close(fig)
    return path


def read_rows(results: Path) -> tuple[list[dict[str, str]], list[str]]:
    """The rows of ``results``, checked: each names a preset that exists.

    Returns:
        The rows, and the presets (``task/variant``) of rows outside the table (presets beyond the paper's grid).

    Raises:
        ResultsFileError: not a results CSV, or a row of a preset that does not exist (its line is named).
    """
    table = {(task, variant) for task, _ in TASKS for variant in VARIANTS}
    rows, outside = [], []
    for line, row in numbered_results(results, allow_empty=False):  # empty: every row "not run yet"
        task, variant = row["task"], row["variant"]
        if (task, variant) not in table:
            if not (PRESET_DIR / task / f"{variant}.yaml").is_file() or task.startswith("_"):
                raise ResultsFileError(
                    f"{results}, line {line}: no preset {task}/{variant} (cfg/experiment/{task}/{variant}.yaml); "
                    "fix or remove the row"
                )
            outside.append(f"{task}/{variant}")
        rows.append(row)
    return rows, sorted(set(outside))


def is_own_plot(path: Path) -> bool:
    """Whether the plot at ``path`` is the tool's: it carries its mark, or it is the repository's plot (from
    before the mark; tracked by git)."""
    return is_marked_png(path, TOOL) or path.resolve() == PLOT.resolve()


def check_outputs(readme: Path, plot_path: Path) -> tuple[str, bool]:
    """Both outputs, before either is written: the README is readable, has the markers and can be rewritten; the
    plot is a ``.png`` name, not a folder, new or the tool's own, where it can be written.

    Returns:
        The README's text, and whether the plot exists (it is replaced).

    Raises:
        RequestError: naming the option and file at fault.
    """
    what = f"--readme {readme}"
    try:
        text = readme.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise RequestError(f"{what} is a folder; pass the README file.") from None
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise RequestError(f"{what} cannot be read ({reason}).") from None
    try:
        replace_between_markers(text, "")
    except MarkersError as error:
        raise MarkersError(f"{what}: {error}") from None
    check_output(readme, what, lambda _: True, TOOL)  # its own text is kept: only the table between the markers
    what = f"--plot {plot_path}"
    if plot_path.is_dir():
        raise OutputError(f"{what} is a folder; pass a file name ending in .png.")
    if plot_path.suffix.lower() != ".png":
        raise OutputError(f"{what}: the plot is a PNG image; pass a file name ending in .png.")
    return text, check_output(plot_path, what, is_own_plot, TOOL)


def summarize(results: Path, readme: Path, plot_path: Path, parameters: dict[str, int] | None = None) -> str:
    """Regenerate the README table and the plot from ``results``; return the table.

    Every check comes first (no torch): ``results``, then both outputs. Then the slow part (the presets' parameter
    counts), then both files are written aside and put in place together.

    Raises:
        ResultsFileError: ``results`` is missing, not a results CSV, or has a row that cannot be tabulated.
        MarkersError: ``readme`` lacks the table markers.
        RequestError: an output that cannot be written, or a plot the tool did not write (nothing is written).
        ToolFailedError: writing failed (nothing was changed).
    """
    rows, outside = read_rows(results)
    text, replace_plot = check_outputs(readme, plot_path)
    table = build_table(rows, preset_parameters() if parameters is None else parameters)
    write_files(
        [
            Output(plot_path, lambda path: plot(rows, path), replace_plot),
            Output(readme, lambda path: path.write_text(replace_between_markers(text, table), "utf-8"), True),
        ]
    )
    if outside:
        print(f"not in the table (presets beyond the paper's grid): {', '.join(outside)}")
    return table


def main(argv: Sequence[str] | None = None) -> int:
    """Regenerate the table and plot; exit 0, 2 with one line naming the file at fault (nothing written), 1 with
    one line if writing failed (nothing changed)."""
    parser = OneLineParser(
        prog=f"python -m {TOOL}", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="the results CSV of experiments.run")
    parser.add_argument("--readme", type=Path, default=README, help="the README whose table is rewritten")
    parser.add_argument("--plot", type=Path, default=PLOT, help="the bar plot to write (.png)")
    args = parser.parse_args(argv)
    try:
        table = summarize(args.results, args.readme, args.plot)
    except Exception as error:
        return report(error)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
