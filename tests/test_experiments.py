"""experiments/: the results file, the seed runner (in process and as a command, Ctrl-C included), the README
table and plot, the Optuna sweeper config, and every ``python main.py ...`` command in experiments/README.md (so the
docs cannot drift from the configs)."""

from __future__ import annotations

import importlib.util
import json
import math
import multiprocessing
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

import pytest
import yaml
from hydra.experimental.callback import Callback

from experiments import outputs, summarize
from experiments import results as results_file
from experiments import run as runner
from tests.conftest import REPO, TINY, compose, interruptible, run_main, tree
from training.cli import exit_code
from training.config.checks import ConfigError, check_config
from training.config.flags import FLAGS
from training.run.folder import holds_run
from training.tools import OutputError, ToolFailedError

README = REPO / "experiments" / "README.md"
ENV = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}

FAKE_METRICS = {
    0: {"val/acc": 0.91, "test/acc": 0.90, "parameters": 198769.0},
    1: {"val/acc": 0.93, "test/acc": 0.92, "parameters": 198769.0},
    2: {"val/acc": 0.92, "test/acc": 0.94, "parameters": 198769.0},
}


def no_check(configs) -> None:
    """For runs whose ``train`` is a stand-in: their presets' data is not on this machine."""


def seeds_in(path: Path) -> list[int]:
    """The seeds recorded in a results file (none before it exists)."""
    return [int(row["seed"]) for row in results_file.read_results(path)] if path.exists() else []


# ----------------------------------------------------------------------------------------------- the runner, in process
def test_run_seeds_records_each_seed_in_its_own_folder_before_the_next_starts(tmp_path):
    results, base = tmp_path / "results.csv", tmp_path / "runs"
    seen = []

    def fake_train(cfg):
        # What is on disk when this seed starts: every earlier seed's row is already there.
        seen.append((cfg.seed, cfg.kernel.omega_0, cfg.train.epochs, cfg.train.output_dir, seeds_in(results)))
        return FAKE_METRICS[cfg.seed]

    ticks = iter(range(100))
    rows = runner.run_seeds(
        "smnist",
        "ccnn_4_140",
        [0, 1, 2],
        base,
        ["train.epochs=3"],
        results,
        train=fake_train,
        clock=lambda: 10.0 * next(ticks),
        check=no_check,
    )
    assert seen == [
        (0, 2976.49, 3, str(base / "seed0"), []),  # the preset's omega_0, the extra flag, a folder per seed
        (1, 2976.49, 3, str(base / "seed1"), [0]),
        (2, 2976.49, 3, str(base / "seed2"), [0, 1]),
    ]
    assert results_file.read_results(results) == rows
    assert [r["test_acc"] for r in rows] == ["90.0000", "92.0000", "94.0000"]
    assert [r["run_dir"] for r in rows] == [str(base / f"seed{s}") for s in (0, 1, 2)]
    assert {r["wall_s"] for r in rows} == {"10.0"} and {r["extra"] for r in rows} == {"train.epochs=3"}
    text = runner.format_summary("smnist", "ccnn_4_140", rows)
    assert text == "smnist/ccnn_4_140: test 92.00 ± 2.00 % (n=3), val 92.00 ± 1.00 % (n=3)"


def test_a_seed_that_fails_leaves_the_earlier_seeds_recorded(tmp_path, capsys):
    results = tmp_path / "results.csv"

    def train(cfg):
        if cfg.seed == 1:
            raise KeyboardInterrupt  # Ctrl-C during the second seed
        return FAKE_METRICS[cfg.seed]

    with pytest.raises(KeyboardInterrupt):
        runner.run_seeds("smnist", "ccnn_4_140", [0, 1, 2], tmp_path / "runs", [], results, train=train, check=no_check)
    assert seeds_in(results) == [0]
    assert "seed 1 did not finish" in capsys.readouterr().err


def test_a_seed_that_fails_while_training_is_one_failure_naming_what_is_kept(tmp_path):
    results = tmp_path / "results.csv"

    def train(cfg):
        if cfg.seed == 1:
            raise ConfigError("optimizer.lr made the loss non-finite", "optimizer.lr")  # an error main.py reports
        return FAKE_METRICS[cfg.seed]

    with pytest.raises(ToolFailedError) as failed:
        runner.run_seeds("smnist", "ccnn_4_140", [0, 1, 2], tmp_path / "runs", [], results, train=train, check=no_check)
    message = str(failed.value)
    assert "optimizer.lr" in message and str(tmp_path / "runs" / "seed1") in message and "\n" not in message
    assert exit_code(failed.value) == 1 and seeds_in(results) == [0]


def test_a_row_that_cannot_be_written_is_a_failure_naming_the_results_file(tmp_path, monkeypatch):
    def full_disk(path, row):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runner, "append_result", full_disk)
    train = lambda cfg: FAKE_METRICS[cfg.seed]  # noqa: E731
    with pytest.raises(ToolFailedError) as failed:
        runner.run_seeds("smnist", "ccnn_4_140", [0], tmp_path / "runs", [], tmp_path / "r.csv", train, check=no_check)
    assert str(tmp_path / "r.csv") in str(failed.value) and str(tmp_path / "runs" / "seed0") in str(failed.value)


def test_ctrl_c_while_the_seeds_are_checked_says_nothing_was_written(tmp_path, capsys):
    def interrupted(configs):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.run_seeds("smnist", "ccnn_4_140", [0], tmp_path / "runs", [], tmp_path / "r.csv", check=interrupted)
    [line] = capsys.readouterr().err.splitlines()
    assert "nothing was written" in line and tree(tmp_path) == {}


def test_a_wrong_extra_flag_stops_before_any_seed_trains(tmp_path):
    trained = []
    with pytest.raises(runner.RunRefusedError) as refused:
        runner.run_seeds(
            "smnist",
            "ccnn_4_140",
            [0, 1],
            tmp_path / "runs",
            ["train.epoch=3"],
            tmp_path / "r.csv",
            train=trained.append,
        )
    assert "--extra" in str(refused.value) and "train.epoch" in str(refused.value)
    assert trained == [] and tree(tmp_path) == {}


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["optimizer.lr=nan"], "optimizer.lr"),
        (["scheduler.name=cosinee"], "scheduler.name"),
        (["dataset.download=False"], "MNIST"),  # the first seed's data, checked before it trains
    ],
)
def test_every_seed_is_checked_as_main_py_would_before_the_first_trains(tmp_path, extra, named):
    trained = []
    data = tmp_path / "no_data"
    with pytest.raises(runner.RunRefusedError) as refused:
        runner.run_seeds(
            "smnist",
            "ccnn_4_140",
            [0, 1],
            tmp_path / "runs",
            [f"dataset.data_dir={data}", *extra],
            tmp_path / "r.csv",
            train=trained.append,
        )
    assert named in str(refused.value) and "\n" not in str(refused.value)
    assert trained == [] and tree(tmp_path) == {}


def test_train_output_dir_is_the_folder_of_the_seed_folders():
    assert runner.split_output_dir(["a=1", "train.output_dir=x", "++train.output_dir=y", "b=2"]) == (
        "y",
        ["a=1", "b=2"],
    )
    assert runner.split_output_dir(["train.output_dir_x=1"]) == (None, ["train.output_dir_x=1"])


def test_plan_skips_recorded_seeds_of_the_same_experiment_only(tmp_path):
    results = tmp_path / "results.csv"
    for seed, extra in ((0, []), (1, ["train.epochs=5", "device=cpu"]), (2, [])):
        row = results_file.result_row(
            "smnist", "ccnn_4_140", seed, FAKE_METRICS[seed], 1.0, "2025-01-01", "m", extra=extra
        )
        results_file.append_result(results, row)
    results_file.append_result(results, results_file.result_row("pmnist", "ccnn_4_140", 1, {}, 1.0, "2025-01-01", "m"))
    base, todo, recorded = runner.plan("smnist", "ccnn_4_140", [0, 1, 2, 3], [], results, "stamp")
    assert base == REPO / "outputs" / "experiments" / "smnist" / "ccnn_4_140" / "stamp"
    assert todo == [1, 3] and [r["seed"] for r in recorded] == ["0", "2"]
    # Same flags in another order, and a train.output_dir, are the same experiment: seed 1 is recorded.
    flags = ["device=cpu", "train.epochs=5", f"train.output_dir={tmp_path / 'x'}"]
    base, todo, _ = runner.plan("smnist", "ccnn_4_140", [0, 1], flags, results, "stamp")
    assert base == tmp_path / "x" and todo == [0]


@pytest.mark.parametrize(
    ("setup", "args", "named"),
    [
        (None, ("smnist", "ccnn_9_999", [0]), "smnist/ccnn_9_999"),  # no such preset
        (None, ("smnist", "ccnn_4_140", [0, 1, 0]), "--seeds 0 1 0"),  # a seed listed twice
        (["seed=5"], ("smnist", "ccnn_4_140", [0, 1]), "--extra seed=5"),  # flags the runner sets itself
        (["+experiment=pmnist/ccnn_4_140"], ("smnist", "ccnn_4_140", [0]), "--extra +experiment=pmnist/ccnn_4_140"),
        (["train.resume=r/last.ckpt"], ("smnist", "ccnn_4_140", [0]), "--extra train.resume=r/last.ckpt"),
        ("folder", ("smnist", "ccnn_4_140", [0, 1]), "seed1"),  # it holds a run
        ("bad_csv", ("smnist", "ccnn_4_140", [0]), "results.csv"),  # not a results CSV of this version
    ],
)
def test_plan_refuses_before_anything_is_written(tmp_path, setup, args, named):
    out = tmp_path / "x"
    results = tmp_path / "results.csv"
    if setup == "folder":
        (out / "seed1" / "checkpoints").mkdir(parents=True)
        (out / "seed1" / "checkpoints" / "last.ckpt").write_text("a run's")
    if setup == "bad_csv":
        results.write_text("name,score\nx,1\n")
    flags = setup if isinstance(setup, list) else []
    before = tree(tmp_path)
    with pytest.raises(runner.RunRefusedError) as refused:
        runner.plan(*args, [*flags, f"train.output_dir={out}"], results, "stamp")
    assert named in str(refused.value)
    assert tree(tmp_path) == before


def test_a_seed_folder_left_before_its_first_checkpoint_is_used_again(tmp_path):
    # What an interrupted start leaves (Hydra's log): no run, so the seed runs there, as main.py would.
    out, results = tmp_path / "x", tmp_path / "results.csv"
    (out / "seed1").mkdir(parents=True)
    (out / "seed1" / "main.log").write_text("an interrupted start\n")
    _, todo, _ = runner.plan("smnist", "ccnn_4_140", [0, 1], [f"train.output_dir={out}"], results, "stamp")
    assert todo == [0, 1]


# ----------------------------------------------------------------------------------------------------- the results file
def test_result_row_and_aggregate_are_pure():
    rows = [
        results_file.result_row(
            "text", "ccnn_4_140", s, FAKE_METRICS[s], 5.0, f"2025-01-0{s + 1}", "m (cpu)", epochs=60, run_dir="r"
        )
        for s in (0, 1, 2)
    ]
    rows.append(
        results_file.result_row("text", "ccnn_4_140", 3, {"test/acc": 0.1}, 1.0, "2025-02-01", "m", extra=["x=1"])
    )
    rows.append(results_file.result_row("text", "ccnn_6_380", 0, {"test/acc": 0.5}, 1.0, "2025-01-05", "m"))
    assert rows[0] == {
        "task": "text",
        "variant": "ccnn_4_140",
        "seed": "0",
        "test_acc": "90.0000",
        "val_acc": "91.0000",
        "epochs": "60",
        "date": "2025-01-01",
        "machine": "m (cpu)",
        "wall_s": "5.0",
        "extra": "",
        "run_dir": "r",
    }
    summary = results_file.aggregate(rows)
    four = summary[("text", "ccnn_4_140")]  # the run with extra flags is not averaged in
    assert four["n"] == 3 and four["mean"] == pytest.approx(92.0) and four["std"] == pytest.approx(2.0)
    assert four["date"] == "2025-01-03" and four["seeds"] == [0, 1, 2]
    one = summary[("text", "ccnn_6_380")]
    assert (one["mean"], one["n"], one["date"], one["seeds"]) == (50.0, 1, "2025-01-05", [0])
    assert math.isnan(one["std"])  # one seed says nothing about the spread


def test_a_seed_recorded_twice_counts_once_by_its_latest_row():
    def row(seed: int, accuracy: float, date: str) -> dict[str, str]:
        return results_file.result_row("text", "ccnn_4_140", seed, {"test/acc": accuracy}, 1.0, date, "m")

    # Seed 1 was trained by two invocations at once: both appended a row.
    rows = [row(0, 0.90, "2025-01-01"), row(1, 0.80, "2025-01-02"), row(2, 0.95, "2025-01-02")]
    rows += [row(1, 0.92, "2025-01-03"), row(2, 0.97, "2025-01-02")]  # a later day; the same day, appended last
    summary = results_file.aggregate(rows)[("text", "ccnn_4_140")]
    assert summary["seeds"] == [0, 1, 2] and summary["n"] == 3
    assert summary["mean"] == pytest.approx((90 + 92 + 97) / 3)
    assert summary["std"] == pytest.approx(results_file.mean_std([90.0, 92.0, 97.0])[1])


def test_mean_std_is_the_sample_standard_deviation():
    mean, std, n = results_file.mean_std([90.0, 92.0, 95.0])
    assert (mean, n) == (pytest.approx(92.333333333), 3)
    assert std == pytest.approx(math.sqrt(((90 - mean) ** 2 + (92 - mean) ** 2 + (95 - mean) ** 2) / 2))  # n - 1
    assert std == pytest.approx(2.5166114784)  # the population value would be 2.0548
    single = results_file.mean_std([99.1])
    assert single[0] == 99.1 and math.isnan(single[1]) and single[2] == 1
    empty = results_file.mean_std([])
    assert math.isnan(empty[0]) and empty[2] == 0
    assert results_file.plus_minus(99.1, math.nan) == "99.10"
    assert results_file.plus_minus(99.1, 0.25) == "99.10 ± 0.25"


def test_append_writes_the_header_once_and_keeps_hand_edits_on_their_own_lines(tmp_path):
    path = tmp_path / "sub" / "r.csv"
    row = results_file.result_row(
        "pmnist", "ccnn_4_140", 0, FAKE_METRICS[0], 1.0, "2025-01-01", "m", extra=["comment=a b"]
    )
    results_file.append_result(path, row)
    results_file.append_result(path, row | {"seed": "1"})
    assert seeds_in(path) == [0, 1]
    assert path.read_text().count("task,variant,seed") == 1
    assert results_file.read_results(path)[0]["extra"] == "'comment=a b'"  # one flag, quoted as a shell would
    path.write_text(path.read_text().rstrip("\n"))  # saved by an editor without the final newline
    results_file.append_result(path, row | {"seed": "2"})
    assert seeds_in(path) == [0, 1, 2]
    assert list(path.parent.iterdir()) == [path]  # no temporary left


def _append_many(path: str, seed: int) -> None:
    for i in range(100):
        row = results_file.result_row("smnist", "ccnn_4_140", seed * 1000 + i, {}, 1.0, "2025-01-01", "m" * 200)
        results_file.append_result(Path(path), row)


def test_concurrent_invocations_append_whole_rows_and_lose_none(tmp_path):
    path = tmp_path / "r.csv"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_many, args=(str(path), seed)) for seed in (1, 2, 3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    assert sorted(seeds_in(path)) == sorted(s * 1000 + i for s in (1, 2, 3) for i in range(100))
    assert path.read_text().count("task,variant,seed") == 1


@pytest.mark.parametrize(
    ("content", "where"),
    [
        (None, None),  # no such file
        ("folder", None),
        (b"\x89PNG\r\n\x1a\n\xff\xfe", None),  # not a text file
        ("task,variant,seed\nsmnist,ccnn_4_140,0\n", None),  # not a results CSV of this version
        (",".join(results_file.COLUMNS) + "\nsmnist,ccnn_4_140,0\n", "line 2"),  # 3 fields of 11
        (",".join(results_file.COLUMNS) + "\nsmnist,ccnn_4_140,zero,1,1,1,d,m,1,,r\n", "line 2"),  # seed
        (",".join(results_file.COLUMNS) + "\nsmnist,ccnn_4_140,0,ninety,1,1,d,m,1,,r\n", "line 2"),  # accuracy
        (",".join(results_file.COLUMNS) + "\nsmnist,ccnn_4_140,0,150,99,1,d,m,1,,r\n", "test_acc"),  # not a %
        (",".join(results_file.COLUMNS) + "\nsmnist,ccnn_4_140,0,90,-1,1,d,m,1,,r\n", "val_acc"),
        (",".join(results_file.COLUMNS) + "\nsmnist,ccnn_4_140,0,nan,90,1,d,m,1,,r\n", "test_acc"),
    ],
    ids=[
        "missing",
        "folder",
        "binary",
        "old columns",
        "short row",
        "seed not a number",
        "accuracy not a number",
        "accuracy above 100",
        "accuracy below 0",
        "accuracy nan",
    ],
)
def test_read_results_refuses_what_is_not_a_results_file_naming_it(tmp_path, content, where):
    path = tmp_path / "results.csv"
    if content == "folder":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(results_file.ResultsFileError) as error:
        results_file.read_results(path)
    message = str(error.value)
    assert str(path) in message and "\n" not in message
    assert where is None or where in message


# ------------------------------------------------------------------------------------------------------------ summarize
def test_summarize_writes_table_and_png(tmp_path):
    results = tmp_path / "results.csv"
    for s, acc in ((1, 0.9950), (2, 0.9970), (3, 0.9990)):
        metrics = {"test/acc": acc, "val/acc": acc}
        row = results_file.result_row("smnist", "ccnn_4_140", s, metrics, 3.0, "2025-03-0" + str(s), "m")
        results_file.append_result(results, row)
    results_file.append_result(
        results, results_file.result_row("cifar10", "ccnn_6_380", 0, {"test/acc": 0.9}, 1, "d", "m")
    )
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{summarize.START}\nold table\n{summarize.END}\noutro\n")
    png = tmp_path / "plot.png"
    params = {"smnist/ccnn_4_140": 198769}
    table = summarize.summarize(results, readme, png, parameters=params)

    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old table" not in text
    assert table in text
    line = next(r for r in table.splitlines() if "experiment=smnist/ccnn_4_140`" in r)
    assert "| 99.70 ± 0.20 (n=3, 2025-03-03) |" in line and "198,769" in line and "99.72 [P?]" in line
    line = next(r for r in table.splitlines() if "experiment=cifar10/ccnn_6_380`" in r)
    assert line.endswith("| 90.00 (n=1, d) |")  # one seed: no ± (its spread is unknown, not zero)
    assert table.count("not run yet") == 2 * len(summarize.TASKS) - 2
    assert "| ✗ [P]" in table  # Retrieval / Path-X: the paper has no result; nothing invented
    data = png.read_bytes()
    assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "plot.png", "results.csv"]

    with pytest.raises(summarize.MarkersError, match="results:start"):
        summarize.replace_between_markers("no markers", table)


@pytest.mark.parametrize(
    ("results_content", "readme_content", "named"),
    [
        (None, "table", "missing.csv"),  # no such results file
        ("name,score\n", "table", "results.csv"),  # not a results CSV of this version
        ("", "table", "results.csv"),  # empty
        ("header", "no markers here", "README.md"),  # no table markers in the README
    ],
    ids=["missing", "other columns", "empty", "no markers"],
)
def test_summarize_refuses_a_bad_file_in_one_line_and_leaves_the_readme_alone(
    tmp_path, capsys, results_content, readme_content, named
):
    results = tmp_path / ("missing.csv" if results_content is None else "results.csv")
    if results_content == "header":
        results.write_text(",".join(results_file.COLUMNS) + "\n")
    elif results_content is not None:
        results.write_text(results_content)
    readme = tmp_path / "README.md"
    text = f"intro\n{summarize.START}\nour table\n{summarize.END}\n" if readme_content == "table" else readme_content
    readme.write_text(text)
    before = tree(tmp_path)

    argv = ["--results", str(results), "--readme", str(readme), "--plot", str(tmp_path / "plot.png")]
    assert summarize.main(argv) == 2

    [line] = capsys.readouterr().err.splitlines()
    assert str(tmp_path / named) in line, line
    assert readme.read_text() == text and tree(tmp_path) == before


def summarize_folder(tmp_path: Path) -> tuple[Path, Path]:
    """A results file with one row and a README with the markers, in ``tmp_path``."""
    results = tmp_path / "results.csv"
    results_file.append_result(
        results, results_file.result_row("smnist", "ccnn_4_140", 0, {"test/acc": 0.99}, 1.0, "2025-01-01", "m")
    )
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{summarize.START}\nour table\n{summarize.END}\n")
    return results, readme


ROW = "{task},{variant},0,{test},90,1,2025-01-01,m,1,,r"


@pytest.mark.parametrize(
    ("row", "plot", "named"),
    [
        (ROW.format(task="notask", variant="ccnn_9_9", test="50"), "plot.png", ["line 3", "notask/ccnn_9_9"]),
        (ROW.format(task="_base", variant="paper", test="50"), "plot.png", ["line 3", "_base/paper"]),
        (ROW.format(task="smnist", variant="ccnn_4_140", test="150"), "plot.png", ["line 3", "test_acc", "150"]),
        (None, "plot.txt", ["--plot", "plot.txt", ".png"]),
        (None, "afolder", ["--plot", "afolder"]),
        (None, "afolder.png", ["--plot", "afolder.png"]),  # a folder, whatever its name
        (None, "theirs.png", ["--plot", "theirs.png"]),  # a file the tool did not write
        (None, "matplotlib.png", ["--plot", "matplotlib.png"]),  # a plot, but not this tool's
        (None, "/proc/plot.png", ["--plot", "/proc/plot.png"]),
        (None, "afile/plot.png", ["--plot", "afile"]),
    ],
)
def test_summarize_refuses_rows_and_plots_it_cannot_use_before_writing_anything(
    tmp_path, monkeypatch, capsys, row, plot, named
):
    monkeypatch.chdir(tmp_path)
    results, readme = summarize_folder(tmp_path)
    if row is not None:
        with results.open("a") as file:
            file.write(row + "\n")
    (tmp_path / "afolder").mkdir()
    (tmp_path / "afolder.png").mkdir()
    (tmp_path / "afile").write_text("a file")
    (tmp_path / "theirs.png").write_text("my notes")
    (tmp_path / "matplotlib.png").write_bytes(outputs.PNG_SIGNATURE + text_chunk("Software", "Matplotlib version3"))
    before, text = tree(tmp_path), readme.read_text()
    line = refusal_line(summarize.main, ["--results", str(results), "--readme", str(readme), "--plot", plot], capsys)
    assert all(name in line for name in named), line
    assert tree(tmp_path) == before and readme.read_text() == text


def text_chunk(key: str, value: str) -> bytes:
    """A PNG tEXt chunk (its CRC is not checked by the reader)."""
    data = key.encode("latin-1") + b"\0" + value.encode("latin-1")
    return len(data).to_bytes(4, "big") + b"tEXt" + data + b"\0\0\0\0"


def test_summarize_refuses_a_readme_it_cannot_write_before_writing_the_plot(tmp_path, monkeypatch, capsys):
    """An immutable README (root may write anything else): refused naming it, and the plot is not written."""
    results, readme = summarize_folder(tmp_path)
    real_open = os.open

    def immutable(path, flags, *args, **kwargs):
        if Path(path) == readme and flags & (os.O_WRONLY | os.O_RDWR):
            raise PermissionError(1, "Operation not permitted", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", immutable)
    before = tree(tmp_path)
    argv = ["--results", str(results), "--readme", str(readme), "--plot", str(tmp_path / "plot.png")]
    line = refusal_line(summarize.main, argv, capsys)
    assert f"--readme {readme}" in line and ".new" not in line and tree(tmp_path) == before


def test_summarize_rewrites_its_own_plot_and_names_rows_outside_the_table(tmp_path, capsys):
    results, readme = summarize_folder(tmp_path)
    results_file.append_result(  # a preset that exists but is not in the paper's grid: named, not refused
        results, results_file.result_row("blobs3d", "ccnn_2_16", 0, {"test/acc": 1.0}, 1.0, "2025-01-01", "m")
    )
    png = tmp_path / "plot.png"
    summarize.summarize(results, readme, png, parameters={})
    assert outputs.is_marked_png(png, summarize.TOOL)
    assert "blobs3d/ccnn_2_16" in capsys.readouterr().out
    first = png.stat().st_mtime_ns
    summarize.summarize(results, readme, png, parameters={})  # its own plot: written again
    assert png.stat().st_mtime_ns != first and outputs.is_marked_png(png, summarize.TOOL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "plot.png", "results.csv"]  # no temporaries


def test_a_failure_while_writing_leaves_every_output_as_it_was(tmp_path):
    first, second = tmp_path / "a.md", tmp_path / "b.png"
    first.write_text("old")

    def fails(path: Path) -> None:
        raise ValueError("Format txt is not supported")

    with pytest.raises(ToolFailedError) as failed:
        outputs.write_files(
            [outputs.Output(first, lambda path: path.write_text("new"), True), outputs.Output(second, fails, False)]
        )
    assert str(second) in str(failed.value) and exit_code(failed.value) == 1
    assert first.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.md"]


def test_a_new_output_is_never_linked_over_a_file_that_appeared_meanwhile(tmp_path):
    path = tmp_path / "plot.png"

    def write_and_race(temporary: Path) -> None:
        temporary.write_text("ours")
        path.write_text("theirs")  # another process took the name while this one was writing

    with pytest.raises(OutputError):
        outputs.write_files([outputs.Output(path, write_and_race, False)])
    assert path.read_text() == "theirs" and sorted(p.name for p in tmp_path.iterdir()) == ["plot.png"]


def test_paper_anchors_carry_provenance_tags():
    for (task, _), anchor in summarize.PAPER.items():
        assert task in dict(summarize.TASKS)
        assert re.match(r"\[(R|P|P\?)\]", anchor.source), anchor
        assert (anchor.value is None) == (anchor.text in ("—", "✗"))


def readme_commands(readme: Path = README) -> list[str]:
    """Every ``python main.py ...`` command in a README (code blocks and inline code)."""
    text = readme.read_text()
    found = re.findall(r"python main\.py[^`\n#]*", text)
    return sorted({c.strip() for c in found})


ALL_README_COMMANDS = [
    (p.relative_to(REPO).as_posix(), c) for p in (README, REPO / "README.md") for c in readme_commands(p)
]


def test_readme_has_commands_for_every_preset_once_the_table_is_generated():
    # The committed README must hold the generated table (run `python -m experiments.summarize`).
    commands = readme_commands()
    for task, _ in summarize.TASKS:
        for variant in summarize.VARIANTS:
            assert f"python main.py experiment={task}/{variant}" in commands


def optuna_plugin_installed() -> bool:
    try:
        return importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is not None
    except ModuleNotFoundError:  # no hydra_plugins namespace at all
        return False


@pytest.mark.parametrize(("readme", "command"), ALL_README_COMMANDS)
def test_every_readme_command_composes(readme, command):
    words = shlex.split(re.sub(r"<[^>]+>", "placeholder", command))[2:]  # drop "python main.py"; fill <run> etc.
    # -m / --multirun: a sweep of the same config; compose its first point (key=a,b -> key=a).
    overrides = [re.sub(r"^([^=]+)=([^,\[]+),.*$", r"\1=\2", w) for w in words if not w.startswith("-")]
    sweeper = [o for o in overrides if o.lstrip("+").startswith("hparams_search=")]
    if sweeper and not optuna_plugin_installed():
        overrides = [o for o in overrides if o not in sweeper]  # the plugin is not installed here
    check_config(compose(overrides))


def test_optuna_sweeper_config_names_existing_flags():
    path = REPO / "cfg" / "hparams_search" / "omega_mask_optuna.yaml"
    assert path.read_text().startswith("# @package _global_")
    config = yaml.safe_load(path.read_text())
    assert {"override /hydra/sweeper": "optuna"} in config["defaults"]
    sweeper = config["hydra"]["sweeper"]
    assert sweeper["direction"] == "maximize"
    assert set(sweeper["params"]) == {"kernel.omega_0", "mask.init_value"}
    assert sweeper["params"]["kernel.omega_0"].startswith("tag(log, interval(")
    assert set(sweeper["params"]) <= set(FLAGS)
    assert "hydra-optuna-sweeper" in README.read_text()


class RecordReturn(Callback):
    """A Hydra callback that keeps what the task function returned (what a sweeper receives)."""

    returned: ClassVar[list[object]] = []

    def on_job_end(self, config, job_return, **kwargs) -> None:
        RecordReturn.returned.append(job_return.return_value)


def test_main_returns_the_validation_accuracy_that_sweepers_maximise(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(RecordReturn, "returned", [])
    record = f"+hydra.callbacks.record._target_={RecordReturn.__module__}.RecordReturn"
    result = run_main(*tiny, "seed=2", record, cwd=tmp_path)  # a seed whose val and test accuracies differ
    assert result.returncode == 0, result.stderr[-2000:]
    final = json.loads((tmp_path / "run" / "results.json").read_text())
    assert final["val/acc"] != final["test/acc"]  # so that returning the other one would show
    assert RecordReturn.returned == [pytest.approx(final["val/acc"])]


# --------------------------------------------------------------------------------------------- the runner, as a command
def run_command(cwd: Path, results: Path, seeds: list[int], flags: list[str]) -> list[str]:
    command = [sys.executable, "-m", "experiments.run", "smnist", "ccnn_4_140", "--results", str(results)]
    return [*command, "--seeds", *map(str, seeds), "--extra", *flags]


def refusal_line(main, argv: list[str], capsys) -> str:
    """The one line on stderr of a command line refused with exit 2 (by its parser or its checks)."""
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's refusal
        code = stop.code
    captured = capsys.readouterr()
    assert code == 2, captured.err
    [line] = captured.err.splitlines()
    return line


# Every case but the first gets these (its own --extra flags come after them and win): a run that was not refused
# would read no data and write only under the test's folder ("{tmp}", which holds a file "afile").
SAFE = ["--results", "{tmp}/r.csv", "--extra", "dataset.download=False", "dataset.data_dir={tmp}/no_data"]
SAFE += ["train.output_dir={tmp}/runs"]


@pytest.mark.parametrize(
    ("argv", "extra", "named"),
    [
        ([], None, ["task", "variant"]),
        (["smnist", "ccnn_4_140", "--seeds", "a"], [], ["--seeds", "'a'"]),
        (["smnist", "ccnn_4_140", "--seeds", "-1"], [], ["--seeds", "-1"]),
        (["smnist", "ccnn_4_140", "--seeds", "4294967296"], [], ["--seeds", "4294967296"]),
        (["smnst", "ccnn_4_140"], [], ["smnst/ccnn_4_140", "smnist"]),  # main.py's did-you-mean
        (["smnist", "ccnn_4_14"], [], ["smnist/ccnn_4_14", "ccnn_4_140"]),  # the task's presets
        (["../preset_base", "paper"], [], ["../preset_base/paper"]),  # a config file, but no preset
        (["smnist", "ccnn_4_140"], ["optimzer.lr=0.1"], ["--extra", "optimzer", "optimizer.lr"]),
        (["smnist", "ccnn_4_140"], ["optimizer.lr=-1"], ["--extra", "optimizer.lr", "-1"]),
        (["smnist", "ccnn_4_140"], ["optimizer.lr"], ["--extra", "optimizer.lr"]),
        (["smnist", "ccnn_4_140"], ["optimizer.lr=0.1,0.2"], ["--extra", "optimizer.lr=0.1,0.2"]),
        (["smnist", "ccnn_4_140"], ["train.epoch=3"], ["--extra", "train.epoch"]),
        (["smnist", "ccnn_4_140", "--results", "/proc/r.csv"], [], ["--results", "/proc/r.csv"]),
        (["smnist", "ccnn_4_140", "--results", "{tmp}/afile/r.csv"], [], ["--results", "afile"]),
        (["smnist", "ccnn_4_140"], ["train.output_dir={tmp}/afile"], ["train.output_dir", "afile"]),
        (["smnist", "ccnn_4_140"], ["train.output_dir=/proc/o"], ["train.output_dir", "/proc"]),
        (["smnist", "ccnn_4_140", "--result", "{tmp}/r.csv"], [], ["--result "]),  # no abbreviation of --results
    ],
)
def test_run_command_refuses_in_one_line_naming_the_culprit_and_writes_nothing(
    tmp_path, monkeypatch, capsys, argv, extra, named
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("a file")
    words = argv if extra is None else [*SAFE[:2], *argv, *SAFE[2:], *extra]  # a later --results wins
    before = tree(tmp_path)
    line = refusal_line(runner.main, [word.format(tmp=tmp_path) for word in words], capsys)
    assert all(name in line for name in named), line
    assert tree(tmp_path) == before


# Runs command lines of the experiment tools in a fresh interpreter; says their exit codes and whether torch was
# imported (their refusals that need no torch must come before it: a second, not the seconds torch takes to load).
REFUSALS_WITHOUT_TORCH = """
import contextlib, io, json, sys
from experiments import resolution_study, run, summarize
tools = {"run": run.main, "study": resolution_study.main, "summarize": summarize.main}
codes = []
for tool, argv in json.loads(sys.argv[1]):
    with contextlib.redirect_stderr(io.StringIO()):
        try:
            codes.append(tools[tool](argv))
        except SystemExit as stop:
            codes.append(stop.code)
print(json.dumps({"codes": codes, "torch": "torch" in sys.modules}))
"""


def test_refusals_that_need_no_torch_come_before_torch_is_imported(tmp_path):
    results, readme = summarize_folder(tmp_path)
    (tmp_path / "afile").write_text("a file")
    run = ["smnist", "ccnn_4_140", "--results", str(tmp_path / "r.csv"), "--extra", f"train.output_dir={tmp_path}"]
    study = ["--train-at", "40", "--evaluate-at", "40", "--output", str(tmp_path / "o"), "--extra"]
    with results.open("a") as file:
        file.write("notask,ccnn_9_9,0,50,50,1,d,m,1,,r\n")
    cases = [
        ("run", [*run, "optimzer.lr=0.1"]),
        ("run", [*run, "optimizer.lr=-1"]),
        ("run", [*run, "--seeds", "-1"]),
        ("run", [*run, "--results", "/proc/r.csv"]),
        ("run", [*run, f"train.output_dir={tmp_path / 'afile'}"]),
        ("study", [*study, "optimzer.lr=0.1"]),
        ("study", [*study, "--setting", "bl=kernel.bandlimit=-1"]),
        ("study", [*study, "--output", str(tmp_path / "afile")]),
        ("study", [*study, "dataset.params.seq_length=80"]),  # the flag --train-at sets
        ("study", [*study, "--preset", "listops/ccnn_4_140"]),  # no resolution to change
        ("summarize", ["--results", str(results), "--readme", str(readme), "--plot", str(tmp_path / "p.png")]),
        ("summarize", ["--results", str(tmp_path / "r.csv"), "--readme", str(readme), "--plot", "p.txt"]),
    ]
    before = tree(tmp_path)
    command = [sys.executable, "-c", REFUSALS_WITHOUT_TORCH, json.dumps(cases)]
    done = subprocess.run(command, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {"codes": [2] * len(cases), "torch": False}
    assert tree(tmp_path) == before


@pytest.mark.slow
def test_run_command_keeps_finished_seeds_through_ctrl_c_and_the_same_command_trains_the_rest(
    data_dir, tmp_path, tmp_path_factory, monkeypatch, capsys
):
    """Each seed gets its own folder under train.output_dir, its row is written when it ends, Ctrl-C keeps it. The
    interrupted command runs as a process of its own (it gets the signal); the same command again runs in this one."""
    work, logs = tmp_path, tmp_path_factory.mktemp("logs")
    results, out = work / "results.csv", work / "runs"
    # Seeds of 5 epochs of 32 steps (2-6 s each): on a loaded machine this process may see seed 1's folder late, and
    # seed 1 must still be training when the interrupt arrives (with 4 epochs of 6 steps it had sometimes finished).
    flags = [
        "dataset.name=MNIST1D",
        "dataset.data_type=default",
        *TINY,
        "dataset.params.num_samples=2000",
        "train.epochs=5",
        f"dataset.data_dir={data_dir}",
    ]
    command = run_command(work, results, [0, 1], [*flags, f"train.output_dir={out}"])
    with open(logs / "out", "w") as stdout, open(logs / "err", "w") as stderr:
        process = subprocess.Popen(command, cwd=work, env=ENV, stdout=stdout, stderr=stderr, preexec_fn=interruptible)
        deadline = time.monotonic() + 300
        while not (out / "seed1").exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert process.poll() is None, "the command ended before seed 1 started: " + (logs / "err").read_text()
        process.send_signal(signal.SIGINT)  # Ctrl-C while seed 1 trains
        process.wait(timeout=120)
    assert process.returncode != 0
    assert seeds_in(results) == [0]
    assert str(out / "seed1") in (logs / "err").read_text()  # the unfinished seed's folder is named
    best0 = out / "seed0" / "checkpoints" / "best.ckpt"
    seed0_checkpoint = (best0.stat().st_mtime_ns, best0.read_bytes())

    # The same command: seed 0 is recorded; seed 1's folder is never written over once it holds a run (a
    # checkpoint), and is used again while it holds none (interrupted before its first epoch ended, as is usual here).
    monkeypatch.chdir(work)
    if holds_run(out / "seed1"):
        recorded, seed1 = results.read_bytes(), tree(out / "seed1")
        assert runner.main(command[3:]) == 2
        [line] = capsys.readouterr().err.splitlines()
        assert str(out / "seed1") in line, line
        assert results.read_bytes() == recorded and tree(out / "seed1") == seed1
        shutil.rmtree(out / "seed1")
    assert runner.main(command[3:]) == 0, capsys.readouterr().err[-3000:]
    rows = results_file.read_results(results)
    assert [r["seed"] for r in rows] == ["0", "1"]
    assert [r["run_dir"] for r in rows] == [str(out / "seed0"), str(out / "seed1")]
    assert {r["extra"] for r in rows} == {shlex.join(flags)}  # the folder is in run_dir, not in the flags
    assert (best0.stat().st_mtime_ns, best0.read_bytes()) == seed0_checkpoint  # seed 1 did not write over seed 0
    for seed in (0, 1):
        config = yaml.safe_load((out / f"seed{seed}" / "config.yaml").read_text())
        assert (config["seed"], config["train"]["output_dir"]) == (seed, str(out / f"seed{seed}"))
    assert sorted(p.name for p in work.iterdir()) == ["results.csv", "runs"]  # nothing else, anywhere
    assert sorted(p.name for p in out.iterdir()) == ["seed0", "seed1"]
