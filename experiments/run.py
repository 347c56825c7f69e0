"""Run one paper preset over several seeds, recording each seed's row in ``experiments/results.csv`` as it finishes.

    python -m experiments.run smnist ccnn_4_140 --seeds 0 1 2 [--extra train.epochs=5 device=cuda ...]

Each seed runs what ``python main.py experiment=<task>/<variant> seed=<s> <extra...>`` runs (same config
composition, same ``train``), in this process, in a folder of its own, ``<base>/seed<s>``: ``<base>`` is
``train.output_dir`` when ``--extra`` sets it, else ``outputs/experiments/<task>/<variant>/<date>_<time>``. Before
any seed trains, every seed gets the checks ``main.py`` makes before writing (its flags first, before torch is
imported, then its network, optimizer, device, data of every split, checkpoints and run folder); a seed folder that
that holds a run, and a results file that is not one or cannot be written, are refused too. A refusal is one line on
stderr naming the option or flag at fault, exit 2, with nothing written; a seed that fails while training is one
line, exit 1, saying what is kept.

Seeds the results file already holds for the same task, variant and ``--extra`` flags are skipped (say so, and
are averaged in), so after an interruption the same command trains only what is missing; to train a seed again,
remove its row. Accuracies in the CSV are percentages. The mean and sample standard deviation over the seeds are
printed at the end; ``python -m experiments.summarize`` turns the CSV into the README table and plot.
"""

from __future__ import annotations

import argparse
import platform
import re
import socket
import sys
import time
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from argcheck.command_line import OneLineParser
from argcheck.rules import Seed
from experiments.outputs import check_folder
from experiments.results import (
    ResultsFileError,
    append_result,
    check_appendable,
    mean_std,
    plus_minus,
    result_row,
    same_extra,
)
from training.cli import EXIT_INTERRUPTED, composition_message, exit_code, one_line, presets, report
from training.run.folder import holds_run
from training.tools import OutputError, RequestError, ToolFailedError

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "experiments" / "results.csv"
# ``train.output_dir=X`` (also with Hydra's + or ++ prefix): X is the folder that holds one folder per seed.
OUTPUT_DIR_FLAG = re.compile(r"^\+{0,2}train\.output_dir=(?P<path>.*)$")
# Flags the runner sets itself: from --extra they would make every row lie about its seed or preset.
RUNNER_FLAGS = {
    "seed": "the seeds come from --seeds",
    "experiment": "the preset comes from the task and variant arguments",
    "train.resume": "every seed trains from scratch; continue one run with python main.py ... train.resume=<ckpt>",
}

NOTHING_WRITTEN = "error: interrupted before the first seed trained; nothing was written."


class RunRefusedError(RequestError):
    """The invocation cannot start: nothing has been trained or written. The message names the culprit."""


def seed_value(text: str) -> int:
    """An ``argparse`` type: a seed, in the range the ``seed`` flag takes (``argcheck.rules.Seed``)."""
    rule = typing.get_args(Seed)[1]
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not rule.admits(value):
        raise argparse.ArgumentTypeError(f"must be {rule.describe()}, got {text}")
    return value


def split_output_dir(extra: Sequence[str]) -> tuple[str | None, list[str]]:
    """``train.output_dir`` from the ``--extra`` flags (the last one wins, as in Hydra), and the other flags."""
    base, rest = None, []
    for flag in extra:
        match = OUTPUT_DIR_FLAG.match(flag)
        if match:
            base = match["path"]
        else:
            rest.append(flag)
    return base, rest


def seed_folder(base: Path, seed: int) -> Path:
    """The run folder of ``seed`` under the invocation's folder."""
    return base / f"seed{seed}"


def display_path(path: Path) -> str:
    """``path`` relative to the repository when it is inside it (rows stay valid in another clone), else absolute."""
    return path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path)


def machine_name() -> str:
    """Host and accelerator, e.g. ``node7 (NVIDIA H100 80GB HBM3)`` or ``laptop (cpu)``."""
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return f"{socket.gethostname() or platform.node()} ({device})"


def compose_preset(task: str, variant: str, overrides: Sequence[str] = ()):
    """The config ``python main.py experiment=<task>/<variant> <overrides>`` runs with."""
    from training.config.compose import compose

    return compose([f"experiment={task}/{variant}", *overrides])


def _epochs_run(metrics: dict[str, Any]) -> int | None:
    """Epochs completed, from the run's last checkpoint (beside the one it evaluated)."""
    evaluated = metrics.get("checkpoint")
    if not evaluated:
        return None
    last = Path(evaluated).parent / "last.ckpt"
    try:
        import torch

        return int(torch.load(last, map_location="cpu", weights_only=False)["epoch"]) + 1
    except Exception:  # informative only: a finished seed's row is never lost over it; the column stays empty
        return None


def unknown_preset(name: str) -> str:
    """What ``main.py experiment=<name>`` says of ``name``, which is not a preset (with its did-you-mean)."""
    overrides = [f"experiment={name}"]
    try:
        from training.config.compose import compose

        compose(overrides)
    except (HydraException, OmegaConfBaseException) as error:
        return composition_message(error, overrides)
    tasks = sorted({preset.split("/")[0] for preset in presets()})  # Hydra took a path: no message of its own
    return f"experiment={name} is not a preset; tasks with presets: {', '.join(tasks)}."


def plan(
    task: str, variant: str, seeds: Sequence[int], extra: Sequence[str], results: Path, stamp: str
) -> tuple[Path, list[int], list[dict[str, str]]]:
    """Check what the arguments alone decide; write nothing, import no torch.

    Returns:
        The folder holding the seed folders, the seeds to train, and the rows already recorded for the others.

    Raises:
        RunRefusedError: no such preset, a repeated seed, a flag the runner sets itself, a results file that is not
            one or cannot be written, or a seed folder that holds a run.
    """
    if f"{task}/{variant}" not in presets():  # not a path test: "../preset_base paper" names a file, not a preset
        raise RunRefusedError(f"{task} {variant}: {unknown_preset(f'{task}/{variant}')}")
    if len(set(seeds)) != len(seeds):
        raise RunRefusedError(f"--seeds {' '.join(map(str, seeds))}: a seed is listed twice")
    for flag in extra:
        key = flag.lstrip("+~").split("=", 1)[0]
        if key in RUNNER_FLAGS:
            raise RunRefusedError(f"--extra {flag}: {RUNNER_FLAGS[key]}")
    try:
        rows = check_appendable(results)
    except ResultsFileError as error:
        raise RunRefusedError(str(error)) from None
    user_base, flags = split_output_dir(extra)
    recorded = {
        int(row["seed"]): row
        for row in rows
        if row["task"] == task and row["variant"] == variant and same_extra(row, flags)
    }
    base = (
        Path(user_base).expanduser().absolute()
        if user_base
        else REPO / "outputs" / "experiments" / task / variant / stamp
    )
    todo = [seed for seed in seeds if seed not in recorded]
    if todo:
        try:
            check_folder(base, f"--extra train.output_dir={user_base}" if user_base else f"run folders {base}")
        except OutputError as error:
            raise RunRefusedError(str(error)) from None
    for seed in todo:
        folder = seed_folder(base, seed)
        # A folder left by a seed stopped before its first checkpoint holds no run and is used again, as main.py
        # uses such a folder (the interrupt notice says so).
        if folder.exists() and (not folder.is_dir() or holds_run(folder)):
            raise RunRefusedError(
                f"{folder} holds another run: each seed runs in a folder of its own and never over another run. "
                "Remove it or choose another train.output_dir."
            )
    return base, todo, [recorded[seed] for seed in seeds if seed in recorded]


def compose_seeds(task: str, variant: str, seeds: Sequence[int], base: Path, extra: Sequence[str]) -> dict[int, Any]:
    """Every seed's config, as ``main.py`` composes it (no torch).

    Raises:
        RunRefusedError: a ``--extra`` flag Hydra cannot compose, with the line ``main.py`` prints for it.
    """
    configs = {}
    for seed in seeds:
        overrides = [f"seed={seed}", *extra, f"train.output_dir={seed_folder(base, seed)}"]
        try:
            configs[seed] = compose_preset(task, variant, overrides)
        except (HydraException, OmegaConfBaseException) as error:
            raise RunRefusedError(f"--extra: {composition_message(error, overrides)}") from None
    return configs


def check_flags(configs: dict[int, Any], extra: Sequence[str]) -> None:
    """Every seed's flags, as ``main.py`` checks them first (no torch, so that a wrong value is refused at once).

    Raises:
        RunRefusedError: with ``main.py``'s line, after the option that set the flag at fault (``--seeds`` for the
            seed, ``--extra`` for a flag it gives).
    """
    from training.config.checks import ConfigError, check_config

    given = {flag.lstrip("+~").split("=", 1)[0] for flag in extra}
    for seed, cfg in configs.items():
        try:
            check_config(cfg)
        except ConfigError as error:
            option = f"--seeds {seed}: " if error.flag == "seed" else "--extra: " if error.flag in given else ""
            raise RunRefusedError(f"{option}{error}") from None


def check_seeds(configs: Sequence[Any]) -> None:
    """The checks ``main.py`` makes before it writes anything, for every seed, before the first one trains: every
    seed's flags first (no torch), then every seed's network, data, checkpoints and run folder.

    Raises:
        RunRefusedError: with the line ``main.py`` would print.
    """
    from training.config.checks import check_config

    try:
        for cfg in configs:
            check_config(cfg)
        from training.run.execute import prepare  # torch: only once every seed's flags passed

        for cfg in configs:
            prepare(cfg)
    except Exception as error:
        if exit_code(error) is None:
            raise
        raise RunRefusedError(one_line(error).removeprefix("error: ")) from None


def run_seeds(
    task: str,
    variant: str,
    seeds: Sequence[int],
    base: Path,
    extra: Sequence[str] = (),
    results: Path = RESULTS,
    train: Callable[[Any], dict[str, Any]] | None = None,
    clock: Callable[[], float] = time.perf_counter,
    check: Callable[[Sequence[Any]], None] = check_seeds,
) -> list[dict[str, str]]:
    """Train the preset once per seed in ``base/seed<s>``, appending each seed's row to ``results`` when it ends.

    Every seed's config is composed and checked (its flags, then ``check``) before the first one trains, so a wrong
    ``--extra`` flag, missing data or an unusable checkpoint stops the invocation before anything is written.
    ``train`` and ``check`` are injectable for tests.

    Returns:
        The rows written, one per seed.

    Raises:
        RunRefusedError: before anything trained.
        ToolFailedError: a seed failed (one line: what failed, what is kept); a bug's own error after that line.
    """
    try:
        configs = compose_seeds(task, variant, seeds, base, extra)
        check_flags(configs, extra)
        check(list(configs.values()))
        if train is None:
            from training.run.execute import train
    except KeyboardInterrupt:
        print(NOTHING_WRITTEN, file=sys.stderr, flush=True)
        raise
    machine = machine_name()
    rows: list[dict[str, str]] = []
    for seed in seeds:
        folder = seed_folder(base, seed)
        done = ", ".join(r["seed"] for r in rows) or "none"
        kept = (
            f"seed {seed} did not finish (its files: {folder}). Seeds recorded by this invocation: {done}, in "
            f"{results}. The same command trains the seeds not recorded yet; with a fixed train.output_dir, remove "
            f"{folder} first."
        )
        start = clock()
        try:
            metrics = train(configs[seed])
        except Exception as error:
            if exit_code(error) is None:  # a bug: what is kept, then its traceback
                print(f"error: {kept}", file=sys.stderr, flush=True)
                raise
            raise ToolFailedError(f"{one_line(error).removeprefix('error: ')} {kept}") from error
        except BaseException:  # Ctrl-C, or Lightning's exit after it: what is kept, then stop
            print(f"error: interrupted: {kept}", file=sys.stderr, flush=True)
            raise
        row = result_row(
            task,
            variant,
            seed,
            metrics,
            clock() - start,
            time.strftime("%Y-%m-%d"),
            machine,
            _epochs_run(metrics),
            extra,
            display_path(folder),
        )
        try:
            append_result(results, row)
        except OSError as error:  # checked writable before: a full disk, or the file changed meanwhile
            raise ToolFailedError(
                f"--results {results}: seed {seed} trained (its run: {folder}) but its row could not be written "
                f"({error.strerror or error}). Seeds recorded by this invocation: {done}."
            ) from error
        rows.append(row)
        print(f"seed {seed}: test {row['test_acc']} %, val {row['val_acc']} %, {row['wall_s']} s -> {results}")
    return rows


def format_summary(task: str, variant: str, rows: Sequence[dict[str, str]]) -> str:
    """``<task>/<variant>: test 93.10 ± 0.50 % (n=3), val ...`` over ``rows``."""
    test = mean_std(float(r["test_acc"]) for r in rows if r["test_acc"])
    val = mean_std(float(r["val_acc"]) for r in rows if r["val_acc"])
    return (
        f"{task}/{variant}: test {plus_minus(test[0], test[1])} % (n={test[2]}), "
        f"val {plus_minus(val[0], val[1])} % (n={val[2]})"
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; a bad one is one line on stderr and exit 2."""
    parser = OneLineParser(
        prog="python -m experiments.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("task", help="folder under cfg/experiment, e.g. smnist")
    parser.add_argument("variant", help="preset name, e.g. ccnn_4_140")
    parser.add_argument("--seeds", type=seed_value, nargs="+", default=[0, 1, 2])
    parser.add_argument("--extra", nargs="*", default=[], help="more flag=value overrides, e.g. device=cuda")
    parser.add_argument("--results", type=Path, default=RESULTS, help="CSV to append to")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the seeds; exit 0, 2 when refused before training (one line), 1 when a seed failed, 130 on Ctrl-C."""
    args = parse_args(argv)
    _, flags = split_output_dir(args.extra)
    try:
        base, todo, recorded = plan(
            args.task, args.variant, args.seeds, args.extra, args.results, time.strftime("%Y-%m-%d_%H-%M-%S")
        )
    except KeyboardInterrupt:
        print(NOTHING_WRITTEN, file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        return report(error)
    for row in recorded:
        print(f"seed {row['seed']}: already in {args.results} (test {row['test_acc']} %, {row['date']}); skipped")
    try:
        rows = run_seeds(args.task, args.variant, todo, base, flags, args.results) if todo else []
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED  # run_seeds said what is kept
    except Exception as error:
        return report(error)  # a refusal (2) or a failed seed (1) in one line; a bug's traceback
    print(format_summary(args.task, args.variant, [*recorded, *rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
