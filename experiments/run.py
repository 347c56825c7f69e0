"""Run one paper preset over several seeds and append one row per seed to ``experiments/results.csv``.

    python -m experiments.run smnist ccnn_4_140 --seeds 0 1 2 [--extra train.epochs=5 device=cuda ...]

Each seed runs what ``python main.py experiment=<task>/<variant> seed=<s> <extra...>`` runs (same config
composition, same ``training.run.train``), in this process, writing into
``outputs/experiments/<task>/<variant>/seed<s>/<timestamp>``. Accuracies in the CSV are percentages. The mean and
sample standard deviation over the seeds are printed at the end; ``python -m experiments.summarize`` turns the CSV
into the README table and plot.
"""

from __future__ import annotations

import argparse
import csv
import math
import platform
import socket
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "experiments" / "results.csv"
COLUMNS = ("task", "variant", "seed", "test_acc", "val_acc", "epochs", "date", "machine", "wall_s", "extra")


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
) -> dict[str, str]:
    """One CSV row from the metrics ``training.run.train`` returned (accuracies there are fractions)."""

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
        "extra": " ".join(extra),
    }


def mean_std(values: Iterable[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (0 for a single value) and count."""
    data = [float(v) for v in values]
    if not data:
        return math.nan, math.nan, 0
    mean = sum(data) / len(data)
    if len(data) == 1:
        return mean, 0.0, 1
    var = sum((v - mean) ** 2 for v in data) / (len(data) - 1)
    return mean, math.sqrt(var), len(data)


def aggregate(rows: Iterable[dict[str, str]], key: str = "test_acc") -> dict[tuple[str, str], dict[str, Any]]:
    """Per (task, variant): mean, std and n of ``key`` over rows that have it, and the latest date.

    Only rows run with the preset as is (empty ``extra``) count: a run with overridden flags is a different
    experiment and is not averaged with the preset's.
    """
    groups: dict[tuple[str, str], list[dict[str, str]]] = {}
    for row in rows:
        if row.get("extra") or not row.get(key):
            continue
        groups.setdefault((row["task"], row["variant"]), []).append(row)
    summary = {}
    for group, members in groups.items():
        mean, std, n = mean_std(float(r[key]) for r in members)
        summary[group] = {
            "mean": mean,
            "std": std,
            "n": n,
            "date": max(r["date"] for r in members),
            "seeds": sorted(int(r["seed"]) for r in members),
        }
    return summary


def format_summary(task: str, variant: str, rows: Sequence[dict[str, str]]) -> str:
    """``<task>/<variant>: test 93.10 ± 0.50 % (n=3), val ...`` for the rows of one invocation."""
    test = mean_std(float(r["test_acc"]) for r in rows if r["test_acc"])
    val = mean_std(float(r["val_acc"]) for r in rows if r["val_acc"])
    return (
        f"{task}/{variant}: test {test[0]:.2f} ± {test[1]:.2f} % (n={test[2]}), "
        f"val {val[0]:.2f} ± {val[1]:.2f} % (n={val[2]})"
    )


def append_rows(path: Path, rows: Sequence[dict[str, str]]) -> None:
    """Append rows to the CSV, writing the header if the file is new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.is_file() or path.stat().st_size == 0
    with open(path, "a", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        writer.writerows(rows)


def read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def machine_name() -> str:
    """Host and accelerator, e.g. ``node7 (NVIDIA H100 80GB HBM3)`` or ``laptop (cpu)``."""
    try:
        import torch

        device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    except Exception:  # pragma: no cover - torch is a dependency; be lenient in a results tool
        device = "unknown"
    return f"{socket.gethostname() or platform.node()} ({device})"


def compose_preset(task: str, variant: str, overrides: Sequence[str] = ()):
    """The config ``python main.py experiment=<task>/<variant> <overrides>`` runs with."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "cfg"), version_base="1.3"):
        return compose("config", overrides=[f"experiment={task}/{variant}", *overrides])


def _epochs_run(metrics: dict[str, Any]) -> int | None:
    """Epochs completed, from the run's last checkpoint (next to the best one)."""
    best = metrics.get("best_checkpoint")
    if not best:
        return None
    last = Path(best).parent / "last.ckpt"
    try:
        import torch

        return int(torch.load(last, map_location="cpu", weights_only=False)["epoch"]) + 1
    except Exception:
        return None


def run_seeds(
    task: str,
    variant: str,
    seeds: Sequence[int],
    extra: Sequence[str] = (),
    train: Callable[[Any], dict[str, Any]] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> list[dict[str, str]]:
    """Train the preset once per seed and return the CSV rows (``train`` is injectable for tests)."""
    if train is None:
        from training.run import train
    rows = []
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    for seed in seeds:
        out = REPO / "outputs" / "experiments" / task / variant / f"seed{seed}" / stamp
        user_out = any(o.startswith("train.output_dir=") for o in extra)
        overrides = [f"seed={seed}", *extra, *([] if user_out else [f"train.output_dir={out}"])]
        cfg = compose_preset(task, variant, overrides)
        start = clock()
        metrics = train(cfg)
        wall = clock() - start
        row = result_row(
            task, variant, seed, metrics, wall, time.strftime("%Y-%m-%d"), machine_name(), _epochs_run(metrics), extra
        )
        rows.append(row)
        print(f"seed {seed}: test {row['test_acc']} %, val {row['val_acc']} %, {row['wall_s']} s", flush=True)
    return rows


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", help="folder under cfg/experiment, e.g. smnist")
    parser.add_argument("variant", help="preset name, e.g. ccnn_4_140")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--extra", nargs="*", default=[], help="more flag=value overrides, e.g. device=cuda")
    parser.add_argument("--results", type=Path, default=RESULTS, help="CSV to append to")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not (REPO / "cfg" / "experiment" / args.task / f"{args.variant}.yaml").is_file():
        print(f"No preset cfg/experiment/{args.task}/{args.variant}.yaml", file=sys.stderr)
        return 2
    rows = run_seeds(args.task, args.variant, args.seeds, args.extra)
    append_rows(args.results, rows)
    print(format_summary(args.task, args.variant, rows))
    print(f"appended {len(rows)} rows to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
