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

from experiments import results as results_file
from experiments import run as runner
from experiments import summarize
from tests.conftest import REPO, TINY, compose, interruptible, run_main, tree
from training.config.checks import check_config
from training.config.flags import FLAGS

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
        ("folder", ("smnist", "ccnn_4_140", [0, 1]), "seed1"),  # not empty
        ("bad_csv", ("smnist", "ccnn_4_140", [0]), "results.csv"),  # not a results CSV of this version
    ],
)
def test_plan_refuses_before_anything_is_written(tmp_path, setup, args, named):
    out = tmp_path / "x"
    results = tmp_path / "results.csv"
    if setup == "folder":
        (out / "seed1").mkdir(parents=True)
        (out / "seed1" / "notes.txt").write_text("mine")
    if setup == "bad_csv":
        results.write_text("name,score\nx,1\n")
    flags = setup if isinstance(setup, list) else []
    before = tree(tmp_path)
    with pytest.raises(runner.RunRefusedError) as refused:
        runner.plan(*args, [*flags, f"train.output_dir={out}"], results, "stamp")
    assert named in str(refused.value)
    assert tree(tmp_path) == before


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
    ],
    ids=["missing", "folder", "binary", "old columns", "short row", "seed not a number", "accuracy not a number"],
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


def test_run_command_refuses_a_wrong_flag_in_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    command = run_command(tmp_path, tmp_path / "results.csv", [0, 1], ["train.epoch=3"])
    assert runner.main(command[3:]) == 2  # python -m experiments.run <args>, in this process
    [line] = capsys.readouterr().err.splitlines()
    assert "--extra" in line and "train.epoch" in line, line
    assert tree(tmp_path) == {}


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

    # The same command: seed 0 is recorded; seed 1's unfinished folder is not written over.
    monkeypatch.chdir(work)
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
