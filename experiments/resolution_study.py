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
holds the table (mean ± sample standard deviation over seeds, in %) and ``<output>/results.png`` the plot. Refused
in one line (exit 2) before anything trains: an unknown preset or flag, a setting without ``=``, a repeated seed or
setting, a dataset without a resolution flag, a resolution too coarse for the network's kernels or too large for the
machine's memory (``training.evaluation.memory``), a run folder that is not empty.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from experiments.results import mean_std, plus_minus
from experiments.run import REPO, display_path, machine_name

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


class StudyRefusedError(Exception):
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
    return name, shlex.split(flags)


def compose_run(preset: str | None, overrides: Sequence[str]) -> DictConfig:
    """The config ``python main.py [experiment=<preset>] <overrides>`` runs with."""
    from training.config.compose import compose

    return compose([*([f"experiment={preset}"] if preset else []), *overrides])


def resolution_option(cfg: DictConfig) -> str:
    """The dataset's resolution argument (``dataset.params.<option>``)."""
    from datamodules import datamodule_class

    option = datamodule_class(cfg.dataset.name).resolution_option
    if option is None:
        raise StudyRefusedError(f"dataset.name={cfg.dataset.name} has no resolution to change")
    return option


def check_flags(cfg: DictConfig) -> None:
    """The checks ``main.py`` makes before it reads any data: the flags, ``test.resolutions``, the network and
    optimizer settings (by building the module), and each resolution's kernel grids and the memory its evaluation
    needs (so that a resolution the machine cannot hold is refused before the first run trains).

    Raises:
        ConfigError: naming the flag.
    """
    from training.build import build_datamodule, build_module
    from training.config.checks import check_config
    from training.evaluation.resolution import check_resolutions, check_resolutions_fit
    from training.run.devices import select_accelerator

    check_config(cfg)
    datamodule = build_datamodule(cfg)
    check_resolutions(cfg, datamodule)
    module = build_module(cfg, datamodule.meta)
    check_resolutions_fit(cfg, datamodule, module.net, select_accelerator(cfg.device))


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


def append_rows(path: Path, rows: Sequence[dict[str, str]]) -> None:
    """Append ``rows`` in one write (the header first if the file is new), flushed to disk."""
    text = io.StringIO()
    writer = csv.DictWriter(text, COLUMNS, lineterminator="\n")
    if not path.exists() or path.stat().st_size == 0:
        writer.writeheader()
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, text.getvalue().encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


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
    """Compose every run's config and check everything that can be checked before training; write nothing.

    Returns:
        The configs of the runs still to do, by (setting, seed), and the rows already recorded.
    """
    for what, values in (("--seeds", seeds), ("--evaluate-at", evaluate_at), ("--setting", [n for n, _ in settings])):
        if len(set(values)) != len(values):
            raise StudyRefusedError(f"{what}: a value is listed twice")
    for flag in extra:
        if flag.split("=", 1)[0].lstrip("+~") in ("seed", "experiment", "test.resolutions", "train.output_dir"):
            raise StudyRefusedError(f"--extra {flag}: the study sets it itself")
    rows = read_rows(output / "results.csv")
    done = {(row["setting"], int(row["seed"])) for row in rows}
    configs: dict[tuple[str, int], DictConfig] = {}
    option = None
    for name, flags in settings:
        for seed in seeds:
            if (name, seed) in done:
                continue
            folder = runs / name / f"seed{seed}"
            if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
                raise StudyRefusedError(f"{folder} is not empty: remove it (each run trains in a fresh folder)")
            try:
                cfg = compose_run(preset, [f"seed={seed}", *flags, *extra, f"train.output_dir={folder}"])
                option = option or resolution_option(cfg)
                resolutions = ",".join(map(str, evaluate_at))
                cfg = compose_run(
                    preset,
                    [
                        f"seed={seed}",
                        f"dataset.params.{option}={train_at}",
                        f"test.resolutions=[{resolutions}]",
                        *flags,
                        *extra,
                        f"train.output_dir={folder}",
                    ],
                )
                check_flags(cfg)
            except (HydraException, OmegaConfBaseException, ValueError) as error:  # ConfigError is a ValueError
                raise StudyRefusedError(f"setting {name}: {' '.join(str(error).split())}") from None
            configs[(name, seed)] = cfg
    return configs, rows


def run_study(
    configs: dict[tuple[str, int], DictConfig],
    settings: Sequence[tuple[str, list[str]]],
    extra: Sequence[str],
    output: Path,
    train: Callable[[Any], dict[str, Any]] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> list[dict[str, str]]:
    """Train every planned run and append its rows (one per evaluated resolution) when it finishes."""
    if train is None:
        from training.run.execute import train
    flags_of = dict(settings)
    machine = machine_name()
    written: list[dict[str, str]] = []
    for (name, seed), cfg in configs.items():
        start = clock()
        metrics = train(cfg)
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
                "run_dir": display_path(Path(cfg.train.output_dir)),
            }
            for value in cfg.test.resolutions
        ]
        append_rows(output / "results.csv", rows)
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
    """Test accuracy against the resolution (log scale), one line per setting, bars of one sample std."""
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
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_summary(rows: Sequence[dict[str, str]], output: Path) -> None:
    """``results.md`` (the table) and ``results.png`` (the plot) in ``output``."""
    (output / "results.md").write_text(markdown_table(rows) + "\n", encoding="utf-8")
    write_plot(rows, output / "results.png")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default=None, help="experiment=<task>/<variant>; default: cfg/config.yaml alone")
    parser.add_argument("--train-at", type=int, required=True, help="the training resolution")
    parser.add_argument("--evaluate-at", type=int, nargs="+", required=True, help="the test resolutions")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--setting", action="append", default=None, help="NAME=FLAGS, e.g. 'bandlimit=kernel.bandlimit=1.0'"
    )
    parser.add_argument("--extra", nargs="*", default=[], help="flags for every run, e.g. train.epochs=5")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="folder of results.csv, .md and .png")
    parser.add_argument("--runs", type=Path, default=None, help="folder of the run folders (default: <output>/runs)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the study; exit 0, 2 when refused before training, 130 on Ctrl-C."""
    args = parse_args(argv)
    output = args.output.expanduser().absolute()
    runs = args.runs.expanduser().absolute() if args.runs else output / "runs"
    try:
        settings = [parse_setting(text) for text in (args.setting or ["plain="])]
        configs, recorded = plan_study(
            args.preset, args.train_at, args.evaluate_at, args.seeds, settings, args.extra, output, runs
        )
        skipped = sorted({(r["setting"], r["seed"]) for r in recorded})
        if skipped:
            print(f"already in {output / 'results.csv'}, skipped: {', '.join(f'{n} seed {s}' for n, s in skipped)}")
        rows = [*recorded, *run_study(configs, settings, args.extra, output)]
    except StudyRefusedError as error:
        print(f"experiments.resolution_study: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    if rows:
        write_summary(rows, output)
        print(markdown_table(rows))
        print(f"table: {display_path(output / 'results.md')}, plot: {display_path(output / 'results.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
