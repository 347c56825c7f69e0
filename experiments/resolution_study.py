"""A resolution study: train at one resolution over several seeds and settings, test each model at a list of
resolutions, and tabulate and plot the test accuracy against the resolution, one line per setting.

    python -m experiments.resolution_study --train-at 40 --evaluate-at 20 40 80 160 --seeds 0 1 2 \\
        --setting plain= --setting "bandlimit=kernel.bandlimit=1.0"
    python -m experiments.resolution_study --preset cifar10/ccnn_4_140 --train-at 16 --evaluate-at 16 32 \\
        --seeds 0 --setting plain= --extra train.epochs=20

Each run is what ``python main.py [experiment=<preset>] seed=<s> dataset.params.<option>=<train-at>
test.resolutions=[<evaluate-at>] <setting flags> <extra>`` runs (the same composition and ``train``),
in its own folder ``<runs>/<setting>/seed<s>`` (``--runs``, by default ``<output>/runs``); ``<option>`` is the
dataset's resolution flag (an image side, the MNIST-1D length or the Speech Commands sample rate). A setting is
``name=flag=value flag=value ...`` (``plain=``: no flag). Every run's rows (one per resolution) are appended to
``<output>/results.csv`` when it finishes, so an interrupted study keeps the runs it finished; the same command again
skips the (setting, seed) pairs already there (several processes may share one output folder, each with other
settings or seeds; run the command once more at the end to tabulate them all). At the end, ``<output>/results.md``
holds the table (mean ± sample standard deviation over seeds, in %) and ``<output>/results.png`` the plot.

Every run is checked as ``main.py`` checks one, before the first trains (every run's flags first, before torch is
imported). Refused in one line naming the option at fault (exit 2), with nothing written: an unknown preset or flag
(``main.py``'s message, did-you-mean included), a setting without ``=``, a repeated seed or setting, a flag the study
sets itself (``seed``, ``test.resolutions``, ``train.output_dir``, ``train.resume``, or the dataset's resolution flag,
which ``--train-at`` sets), a dataset without a resolution flag, a resolution too coarse for the network's kernels or
too large for the machine's memory (``training.evaluation.memory``), a run folder that is not empty, an ``--output``
or ``--runs`` that is a file or where nothing can be written, and an ``--output`` holding a ``results.csv``,
``results.md`` or ``results.png`` the study did not write. The study rewrites only its own: a ``results.md`` that
begins with its table's header, a ``results.png`` that carries its mark (a PNG text chunk ``Source: python -m
experiments.resolution_study``; an unmarked Matplotlib plot beside the study's own ``results.md`` is taken for one of
an earlier version). A run that fails while training is one line (exit 1) saying which runs are kept.
"""

from __future__ import annotations

import argparse
import ast
import csv
import io
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from argcheck import source
from argcheck.command_line import OneLineParser, positive_int
from experiments.outputs import (
    Output,
    append_csv_rows,
    check_appendable,
    check_folder,
    check_output,
    is_marked_png,
    is_matplotlib_png,
    png_metadata,
    write_files,
)
from experiments.results import mean_std, plus_minus
from experiments.run import REPO, display_path, machine_name, seed_value, unknown_preset
from training.cli import EXIT_INTERRUPTED, composition_message, exit_code, one_line, presets, report
from training.tools import OutputError, RequestError, ToolFailedError

TOOL = "experiments.resolution_study"
COLUMNS = (
    "setting",
    "seed",
    "resolution",
    "trained_at",
    "test_acc",
    "test_loss",
    "flags",
    "extra",
    "wall_s",
    "machine",
    "run_dir",
)
DEFAULT_OUTPUT = REPO / "outputs" / "resolution_study"
TABLE_HEADER = "| setting | flags | seeds |"  # how results.md begins: the study's own table
# Flags the study sets itself, and the option that sets them: from --extra or a setting they would make the rows lie.
STUDY_FLAGS = {
    "seed": "from --seeds",
    "experiment": "from --preset",
    "test.resolutions": "from --evaluate-at",
    "train.output_dir": "from --runs",
    "train.resume": "every run trains from scratch",
}
NOTHING_WRITTEN = "error: interrupted before the first run trained; nothing was written."


class StudyRefusedError(RequestError):
    """The study cannot start; nothing has been trained or written. The message names the culprit."""


def parse_setting(text: str) -> tuple[str, list[str]]:
    """``"name=flag=value flag=value"`` -> ``("name", ["flag=value", ...])``; ``"plain="`` has no flags.

    A text without ``=`` is refused: ``--setting bandlimit`` (the flags forgotten) would otherwise train the plain
    network under that name.
    """
    name, equals, flags = text.partition("=")
    if not equals or not name or not name.replace("_", "").replace("-", "").isalnum():
        raise StudyRefusedError(
            f"--setting {text!r}: expected NAME=FLAGS with a name of letters, digits, '-' or '_' (e.g. plain= for no "
            "flags, or 'bandlimit=kernel.bandlimit=1.0')"
        )
    try:
        return name, shlex.split(flags)
    except ValueError as error:  # an unclosed quote
        raise StudyRefusedError(f"--setting {text!r}: its flags cannot be split as a shell would ({error})") from None


def flag_key(flag: str) -> str:
    """``+dataset.params.seq_length=80`` -> ``dataset.params.seq_length``."""
    return flag.lstrip("+~").split("=", 1)[0]


def compose_run(preset: str | None, overrides: Sequence[str]) -> DictConfig:
    """The config ``python main.py [experiment=<preset>] <overrides>`` runs with."""
    from training.config.compose import compose

    return compose([*([f"experiment={preset}"] if preset else []), *overrides])


def _option_in_source(target: str) -> str | None:
    """The ``resolution_option`` class attribute of the class ``target`` (``"module:Class"``), or of the nearest
    base class that sets it, read from source."""
    module, node = source.definition(target)
    if not isinstance(node, ast.ClassDef):
        raise source.SourceError(f"{target} is not a class")
    for statement in node.body:
        targets = statement.targets if isinstance(statement, ast.Assign) else [getattr(statement, "target", None)]
        if any(isinstance(t, ast.Name) and t.id == "resolution_option" for t in targets):
            value = getattr(statement, "value", None)
            return None if value is None else ast.literal_eval(value)
    for base in node.bases:
        if isinstance(base, ast.Name):
            try:
                return _option_in_source(source.target_of(module, base))
            except source.SourceError:
                continue  # a base outside the project (LightningDataModule): not the one that sets it
    raise source.SourceError(f"{target} sets no resolution_option")


def resolution_option(cfg: DictConfig) -> str:
    """The dataset's resolution argument (``dataset.params.<option>``): the datamodule's ``resolution_option``, read
    from its source (so that a study is refused before torch is loaded), else from the imported class.

    Raises:
        StudyRefusedError: the dataset has no resolution to change.
    """
    try:
        option = _option_in_source(source.registry("datamodules:DATAMODULES")[cfg.dataset.name])
    except (source.SourceError, KeyError, ValueError, SyntaxError):
        from datamodules import datamodule_class

        option = datamodule_class(cfg.dataset.name).resolution_option
    if option is None:
        raise StudyRefusedError(f"dataset.name={cfg.dataset.name} has no resolution to change")
    return option


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a study's results file (none if it does not exist); refused if it is not one."""
    if not path.exists():
        return []
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise StudyRefusedError(f"{path}: cannot be read as a study's results file ({error})") from None
    if rows and tuple(rows[0]) != COLUMNS:
        raise StudyRefusedError(f"{path}: not a resolution study's results file (columns {', '.join(rows[0])})")
    return rows


def is_study_table(path: Path) -> bool:
    """Whether ``path`` is a ``results.md`` the study wrote: its first line is the study's table header."""
    try:
        with open(path, encoding="utf-8") as file:
            return file.readline().startswith(TABLE_HEADER)
    except (OSError, UnicodeDecodeError):
        return False


def is_study_plot(path: Path) -> bool:
    """Whether ``path`` is a ``results.png`` the study wrote: it carries the study's mark, or (a plot of a version
    from before the mark) Matplotlib wrote it beside the study's own ``results.md``."""
    return is_marked_png(path, TOOL) or (is_matplotlib_png(path) and is_study_table(path.parent / "results.md"))


def check_outputs(output: Path, runs: Path) -> tuple[list[dict[str, str]], bool, bool]:
    """Refuse an ``--output`` or ``--runs`` where the study cannot write, or whose files are not the study's.

    Returns:
        The rows ``<output>/results.csv`` holds, and whether ``results.md`` and ``results.png`` exist (the study
        replaces its own).
    """
    what = f"--output {output}"
    check_folder(output, what)
    check_folder(runs, f"--runs {runs}")
    results = output / "results.csv"
    if results.is_dir():
        raise StudyRefusedError(f"{what}: {results} is a folder, not the study's results file")
    rows = read_rows(results)
    if results.exists():
        check_appendable(results, what)
    table = check_output(output / "results.md", what, is_study_table, TOOL)
    plot = check_output(output / "results.png", what, is_study_plot, TOOL)
    return rows, table, plot


@dataclass(frozen=True)
class Study:
    """What the command line asks for: the runs of every (setting, seed), trained at ``train_at`` and tested at
    ``evaluate_at``, in ``runs``; ``todo`` the (setting, seed) pairs not recorded yet."""

    preset: str | None
    train_at: int
    evaluate_at: tuple[int, ...]
    settings: tuple[tuple[str, tuple[str, ...]], ...]
    extra: tuple[str, ...]
    runs: Path
    todo: tuple[tuple[str, int], ...] = ()

    def folder(self, name: str, seed: int) -> Path:
        return self.runs / name / f"seed{seed}"

    def flags(self, name: str) -> list[str]:
        return list(dict(self.settings)[name])

    def overrides(self, name: str, seed: int, option: str | None = None) -> list[str]:
        """A run's flags after ``experiment=``, in main.py's order: what the study sets, the setting's, --extra's,
        and the run folder (``option``: the dataset's resolution flag, once known)."""
        trained_at = [f"dataset.params.{option}={self.train_at}"] if option else []
        resolutions = f"test.resolutions=[{','.join(map(str, self.evaluate_at))}]"
        folder = f"train.output_dir={self.folder(name, seed)}"
        return [f"seed={seed}", *trained_at, resolutions, *self.flags(name), *self.extra, folder]

    def given(self, key: str | None, name: str) -> tuple[str, str] | None:
        """The option (``--extra`` or ``--setting <name>``) and flag that set ``key`` for a run of setting ``name``
        (a setting's flags come after ``--extra``'s, as in the composition, so they win)."""
        found = [("--extra", flag) for flag in self.extra if flag_key(flag) == key]
        found += [(f"--setting {name}", flag) for flag in self.flags(name) if flag_key(flag) == key]
        return found[-1] if found else None

    def culprit(self, error: BaseException, name: str, seed: int, option: str | None = None) -> str:
        """The option of this command behind ``error`` (as a message's start): ``--evaluate-at`` or ``--train-at``
        for the flags the study sets from them, else the option that gave the flag at fault, else the run."""
        flag, text = getattr(error, "flag", None), " ".join(str(error).split())
        if flag == "test.resolutions" or text.startswith("test.resolutions"):
            return f"--evaluate-at {' '.join(map(str, self.evaluate_at))}"
        if option is not None and (flag == f"dataset.params.{option}" or f"dataset.params.{option}" in text):
            return f"--train-at {self.train_at}"
        given = self.given(flag, name)
        return given[0] if given else f"--setting {name}, seed {seed}"


def check_arguments(study: Study, seeds: Sequence[int]) -> None:
    """What the arguments alone decide: no value listed twice, no flag that the study sets itself."""
    names = [name for name, _ in study.settings]
    for what, values in (("--seeds", seeds), ("--evaluate-at", study.evaluate_at), ("--setting", names)):
        if len(set(values)) != len(values):
            raise StudyRefusedError(f"{what} {' '.join(map(str, values))}: a value is listed twice")
    given = [("--extra", flag) for flag in study.extra]
    given += [(f"--setting {name}", flag) for name, flags in study.settings for flag in flags]
    for origin, flag in given:
        if flag_key(flag) in STUDY_FLAGS:
            raise StudyRefusedError(
                f"{origin} {flag}: the study sets {flag_key(flag)} itself ({STUDY_FLAGS[flag_key(flag)]})"
            )


def check_flags(study: Study) -> None:
    """Every run's flags, composed as main.py composes them and checked as it checks them first (no torch)."""
    from training.config.checks import ConfigError, check_config

    if study.preset is not None and study.preset not in presets():  # Hydra would take a path to any config
        raise StudyRefusedError(f"--preset {study.preset}: {unknown_preset(study.preset)}")
    for origin, overrides in [(f"--preset {study.preset}", []), ("--extra", list(study.extra))]:
        try:
            compose_run(study.preset, overrides)
        except (HydraException, OmegaConfBaseException) as error:
            raise StudyRefusedError(f"{origin}: {composition_message(error, overrides)}") from None
    for name, seed in study.todo:
        overrides = study.overrides(name, seed)
        try:
            check_config(compose_run(study.preset, overrides))
        except (HydraException, OmegaConfBaseException) as error:
            raise StudyRefusedError(f"--setting {name}: {composition_message(error, overrides)}") from None
        except ConfigError as error:
            raise StudyRefusedError(f"{study.culprit(error, name, seed)}: {error}") from None


def resolution_options(study: Study) -> dict[str, str]:
    """Each setting's resolution flag (read from its datamodule's source: no torch), which only ``--train-at`` may
    set."""
    options: dict[str, str] = {}
    for name, _ in study.todo:
        if name in options:
            continue
        try:
            options[name] = resolution_option(compose_run(study.preset, [*study.flags(name), *study.extra]))
        except StudyRefusedError as error:
            given = study.given("dataset.name", name)
            culprit = given[0] if given else f"--preset {study.preset}" if study.preset else "the default config"
            raise StudyRefusedError(f"{culprit}: {error}") from None
        given = study.given(f"dataset.params.{options[name]}", name)
        if given is not None:
            raise StudyRefusedError(
                f"{given[0]} {given[1]}: dataset.params.{options[name]} is the training resolution, which the study "
                f"sets from --train-at {study.train_at}; drop the flag and pass the value as --train-at"
            )
    return options


def check_runs(study: Study, options: dict[str, str]) -> dict[tuple[str, int], DictConfig]:
    """Every run's whole plan, as main.py checks it before it writes (torch): network, data, test resolutions
    (kernel grids, memory), run folder. Returns the configs by (setting, seed)."""
    from training.config.checks import check_config
    from training.run.execute import prepare

    configs: dict[tuple[str, int], DictConfig] = {}
    for name, seed in study.todo:
        try:
            cfg = compose_run(study.preset, study.overrides(name, seed, options[name]))
            check_config(cfg)
            prepare(cfg)
        except Exception as error:
            if exit_code(error) is None:
                raise
            culprit = study.culprit(error, name, seed, options[name])
            raise StudyRefusedError(f"{culprit}: {one_line(error).removeprefix('error: ')}") from None
        configs[(name, seed)] = cfg
    return configs


def plan_study(
    preset: str | None,
    train_at: int,
    evaluate_at: Sequence[int],
    seeds: Sequence[int],
    settings: Sequence[tuple[str, list[str]]],
    extra: Sequence[str],
    output: Path,
    runs: Path,
) -> tuple[dict[tuple[str, int], DictConfig], list[dict[str, str]]]:
    """Compose every run's config and make every check ``main.py`` makes before it writes, for every run, before
    the first trains: first what needs no torch (the arguments, the output folders, every run's flags and the
    resolution flag), then the rest (each run's network, data, run folder, and each test resolution's kernel grids
    and memory). Writes nothing.

    Returns:
        The configs of the runs still to do, by (setting, seed), and the rows already recorded.

    Raises:
        StudyRefusedError, OutputError: naming the option (and flag or file) at fault.
    """
    frozen = tuple((name, tuple(flags)) for name, flags in settings)
    study = Study(preset, train_at, tuple(evaluate_at), frozen, tuple(extra), runs)
    check_arguments(study, seeds)
    rows, _, _ = check_outputs(output, runs)
    done = {(row["setting"], int(row["seed"])) for row in rows}
    study = replace(study, todo=tuple((n, s) for n, _ in settings for s in seeds if (n, s) not in done))
    for name, seed in study.todo:
        folder = study.folder(name, seed)
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise StudyRefusedError(f"{folder} is not empty: remove it (each run trains in a fresh folder)")
    check_flags(study)
    options = resolution_options(study)
    if not study.todo:
        return {}, rows  # everything is recorded: only the table and plot are written again
    return check_runs(study, options), rows


def run_study(
    configs: dict[tuple[str, int], DictConfig],
    settings: Sequence[tuple[str, list[str]]],
    extra: Sequence[str],
    output: Path,
    train: Callable[[Any], dict[str, Any]] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> list[dict[str, str]]:
    """Train every planned run and append its rows (one per evaluated resolution) when it finishes.

    Raises:
        ToolFailedError: a run failed (one line: what failed, which runs are kept); a bug's own error after that
            line.
    """
    if train is None:
        from training.run.execute import train
    flags_of = dict(settings)
    machine = machine_name()
    results = output / "results.csv"
    written: list[dict[str, str]] = []
    for (name, seed), cfg in configs.items():
        folder = Path(cfg.train.output_dir)
        done = ", ".join(dict.fromkeys(f"{r['setting']} seed {r['seed']}" for r in written)) or "none"
        kept = (
            f"{name} seed {seed} did not finish (its files: {folder}). Runs recorded by this invocation: {done}, in "
            f"{results}. The same command trains the runs not recorded yet, once {folder} is removed."
        )
        start = clock()
        try:
            metrics = train(cfg)
        except Exception as error:
            if exit_code(error) is None:  # a bug: what is kept, then its traceback
                print(f"error: {kept}", file=sys.stderr, flush=True)
                raise
            raise ToolFailedError(f"{one_line(error).removeprefix('error: ')} {kept}") from error
        except BaseException:  # Ctrl-C, or Lightning's exit after it
            print(f"error: interrupted: {kept}", file=sys.stderr, flush=True)
            raise
        wall = clock() - start
        option = resolution_option(cfg)
        trained_at = cfg.dataset.params[option]
        rows = [
            {
                "setting": name,
                "seed": str(seed),
                "resolution": str(value),
                "trained_at": str(trained_at),
                "test_acc": f"{100.0 * metrics[f'test@{value}/acc']:.4f}",
                "test_loss": f"{metrics[f'test@{value}/loss']:.6f}",
                "flags": shlex.join(flags_of[name]),
                "extra": shlex.join(extra),
                "wall_s": f"{wall:.1f}",
                "machine": machine,
                "run_dir": display_path(folder),
            }
            for value in cfg.test.resolutions
        ]
        try:
            append_csv_rows(results, COLUMNS, rows)
        except OSError as error:  # checked writable before: a full disk, or the file changed meanwhile
            raise ToolFailedError(
                f"{results}: {name} seed {seed} trained (its run: {folder}) but its rows could not be written "
                f"({error.strerror or error}). Runs recorded by this invocation: {done}."
            ) from error
        written += rows
        accuracies = ", ".join(f"{r['resolution']}: {r['test_acc']} %" for r in rows)
        print(f"{name} seed {seed} ({wall:.0f} s): {accuracies}", flush=True)
    return written


def summary(rows: Sequence[dict[str, str]]) -> dict[str, dict[int, tuple[float, float, int]]]:
    """Per setting and resolution: mean, sample standard deviation and count of the test accuracy (%)."""
    groups: dict[str, dict[int, list[float]]] = {}
    for row in rows:
        groups.setdefault(row["setting"], {}).setdefault(int(row["resolution"]), []).append(float(row["test_acc"]))
    return {name: {res: mean_std(values) for res, values in sorted(by_res.items())} for name, by_res in groups.items()}


def markdown_table(rows: Sequence[dict[str, str]]) -> str:
    """``| setting | flags | seeds | <res> ... |`` with mean ± std test accuracy (%) per resolution."""
    stats = summary(rows)
    resolutions = sorted({int(r["resolution"]) for r in rows})
    trained_at = sorted({r["trained_at"] for r in rows})
    flags = {r["setting"]: r["flags"] for r in rows}
    seeds = {name: sorted({int(r["seed"]) for r in rows if r["setting"] == name}) for name in stats}
    header = [f"{res}" + (" (training)" if str(res) in trained_at else "") for res in resolutions]
    lines = [
        f"| setting | flags | seeds | {' | '.join(header)} |",
        f"|---|---|---|{'---|' * len(resolutions)}",
    ]
    for name, by_res in stats.items():
        cells = [plus_minus(*by_res[res][:2]) if res in by_res else "—" for res in resolutions]
        shown = f"`{flags[name]}`" if flags[name] else "(none)"
        lines.append(f"| {name} | {shown} | {', '.join(map(str, seeds[name]))} | {' | '.join(cells)} |")
    extra = sorted({r["extra"] for r in rows})
    if extra != [""]:
        lines.append("")
        lines.append("Flags of every run: " + "; ".join(f"`{e}`" if e else "(none)" for e in extra))
    return "\n".join(lines)


def write_plot(rows: Sequence[dict[str, str]], path: Path) -> None:
    """Test accuracy against the resolution (log scale), one line per setting, bars of one sample std; a PNG that
    carries the study's mark (so that it is rewritten as the study's own)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, by_res in summary(rows).items():
        xs = list(by_res)
        means = [by_res[x][0] for x in xs]
        stds = [0.0 if by_res[x][2] < 2 else by_res[x][1] for x in xs]
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=name)
    for trained_at in sorted({int(r["trained_at"]) for r in rows}):
        ax.axvline(trained_at, color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("log", base=2)
    resolutions = sorted({int(r["resolution"]) for r in rows})
    ax.set_xticks(resolutions, [str(x) for x in resolutions])
    ax.set_xlabel("test resolution (dotted: training resolution)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png", metadata=png_metadata(TOOL))
    plt.close(fig)


def write_summary(rows: Sequence[dict[str, str]], output: Path) -> None:
    """``results.md`` (the table) and ``results.png`` (the plot) in ``output``: both written aside, then put in
    place together. An existing one is replaced only if it is the study's (checked again: another process may have
    put a file there since the study started)."""
    table, plot = output / "results.md", output / "results.png"
    try:
        replace_table = check_output(table, f"--output {output}", is_study_table, TOOL)
        replace_plot = check_output(plot, f"--output {output}", is_study_plot, TOOL)
    except OutputError as error:  # after the runs: a failure, not a refusal (the rows are recorded)
        raise ToolFailedError(f"{error} The runs are recorded in {output / 'results.csv'}.") from None
    write_files(
        [
            Output(table, lambda path: path.write_text(markdown_table(rows) + "\n", encoding="utf-8"), replace_table),
            Output(plot, lambda path: write_plot(rows, path), replace_plot),
        ]
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; a bad one is one line on stderr and exit 2."""
    parser = OneLineParser(
        prog=f"python -m {TOOL}", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default=None, help="experiment=<task>/<variant>; default: cfg/config.yaml alone")
    parser.add_argument("--train-at", type=positive_int, required=True, help="the training resolution")
    parser.add_argument("--evaluate-at", type=positive_int, nargs="+", required=True, help="the test resolutions")
    parser.add_argument("--seeds", type=seed_value, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--setting", action="append", default=None, help="NAME=FLAGS, e.g. 'bandlimit=kernel.bandlimit=1.0'"
    )
    parser.add_argument("--extra", nargs="*", default=[], help="flags for every run, e.g. train.epochs=5")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="folder of results.csv, .md and .png")
    parser.add_argument("--runs", type=Path, default=None, help="folder of the run folders (default: <output>/runs)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the study; exit 0, 2 when refused before training (one line), 1 when a run failed, 130 on Ctrl-C."""
    args = parse_args(argv)
    output = args.output.expanduser().absolute()
    runs = args.runs.expanduser().absolute() if args.runs else output / "runs"
    try:
        settings = [parse_setting(text) for text in (args.setting or ["plain="])]
        configs, recorded = plan_study(
            args.preset, args.train_at, args.evaluate_at, args.seeds, settings, args.extra, output, runs
        )
    except KeyboardInterrupt:
        print(NOTHING_WRITTEN, file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        return report(error)  # a refusal in one line (exit 2); a bug's traceback
    skipped = sorted({(r["setting"], r["seed"]) for r in recorded})
    if skipped:
        print(f"already in {output / 'results.csv'}, skipped: {', '.join(f'{n} seed {s}' for n, s in skipped)}")
    try:
        rows = [*recorded, *run_study(configs, settings, args.extra, output)]
        if rows:
            write_summary(rows, output)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED  # run_study said what is kept
    except Exception as error:
        return report(error)  # a failed run or summary in one line (exit 1); a bug's traceback
    if rows:
        print(markdown_table(rows))
        print(f"table: {display_path(output / 'results.md')}, plot: {display_path(output / 'results.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
