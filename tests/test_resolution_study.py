"""``python -m experiments.resolution_study``: settings and refusals before anything trains, a tiny real study (rows,
table, plot), a re-run that skips what is recorded, and the table's statistics."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from datamodules import DATAMODULES, datamodule_class
from experiments import resolution_study as study
from tests.conftest import TINY, tree

FLAGS = [flag for flag in TINY if not flag.startswith("dataset.params.val_size")]


@pytest.mark.parametrize("name", sorted(DATAMODULES))
def test_the_resolution_flag_read_from_source_is_the_datamodules_own(name):
    from omegaconf import OmegaConf

    option = datamodule_class(name).resolution_option  # the imported class's
    assert study._option_in_source(DATAMODULES[name]) == option
    cfg = OmegaConf.create({"dataset": {"name": name}})
    if option is None:
        with pytest.raises(study.StudyRefusedError, match=f"dataset.name={name}"):
            study.resolution_option(cfg)
    else:
        assert study.resolution_option(cfg) == option


def test_settings_are_a_name_and_flags():
    assert study.parse_setting("plain=") == ("plain", [])
    assert study.parse_setting("band_limit-1=kernel.bandlimit=1.0 mask.threshold=0.05") == (
        "band_limit-1",
        ["kernel.bandlimit=1.0", "mask.threshold=0.05"],
    )
    for bad in ("=kernel.bandlimit=1.0", "half.band=kernel.bandlimit=0.5", "no flags", "bad", "bandlimit"):
        with pytest.raises(study.StudyRefusedError) as error:
            study.parse_setting(bad)
        assert f"--setting {bad!r}" in str(error.value)


def refusal(argv: list[str], capsys, tmp_path: Path, output: str | None = None) -> str:
    """The one line of a refused study (exit 2, by its parser or its checks), which wrote nothing under
    ``tmp_path``."""
    before = tree(tmp_path)
    try:
        code = study.main([*argv, "--output", output or str(tmp_path / "out")])
    except SystemExit as stop:  # argparse's refusal
        code = stop.code
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert tree(tmp_path) == before
    [line] = captured.err.strip().splitlines()
    return line


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--seeds", "0", "0"], "--seeds"),  # a seed listed twice
        (["--setting", "a=", "--setting", "a=kernel.bandlimit=1.0"], "--setting"),  # a setting listed twice
        (["--extra", "seed=3"], "--extra seed=3"),  # flags the study sets itself
        (["--extra", "test.resolutions=[20]"], "--extra test.resolutions=[20]"),
        (["--extra", "kernel.bandlimt=1.0"], "kernel.bandlimt"),  # not a flag
        (["--setting", "b=kernel.bandlimit=2.0"], "kernel.bandlimit"),  # outside (0, 1]
        (["--preset", "listops/ccnn_4_140"], "dataset.name=ListOps"),  # no resolution to change
        (["--setting", "bad"], "--setting 'bad'"),  # not a setting "bad" without flags
        (["--evaluate-at", "40", "100000000"], "test.resolutions: 100000000"),  # beyond the machine's memory
        (["--evaluate-at", "1", "40"], "--evaluate-at 1 40"),  # a length MNIST-1D cannot take
        (["--evaluate-at", "-20", "40"], "--evaluate-at"),
        (["--train-at", "0"], "--train-at"),
        (["--train-at", "forty"], "--train-at"),
        (["--train-at", "1"], "--train-at 1"),  # a length MNIST-1D cannot take
        (["--seeds", "-1"], "--seeds"),
        (["--extra", "optimzer.lr=0.1"], "--extra: optimzer"),  # main.py's message, not Hydra's "+optimzer.lr"
        (["--setting", "bl=kernel.bandlimt=1.0"], "--setting bl: kernel.bandlimt"),
        (["--setting", "bl=kernel.bandlimit=-1"], "--setting bl: kernel.bandlimit"),
        (["--setting", "s=seed=3"], "--setting s seed=3"),  # what the study sets, from a setting too
        (["--setting", "s=train.resume=x.ckpt"], "--setting s train.resume=x.ckpt"),
        (["--extra", "dataset.params.seq_length=80"], "--extra dataset.params.seq_length=80"),  # --train-at's
        (["--setting", "long=dataset.params.seq_length=80"], "--setting long dataset.params.seq_length=80"),
        (["--preset", "smnist/ccnn_4_14"], "--preset smnist/ccnn_4_14"),
        (["--preset", "../preset_base/paper"], "--preset ../preset_base/paper"),  # a config file, but no preset
        (["--evaluate", "40"], "--evaluate"),  # no abbreviation of --evaluate-at
    ],
)
def test_what_cannot_run_is_refused_before_anything_trains(argv, named, capsys, tmp_path, data_dir):
    base = ["--train-at", "40", "--evaluate-at", "20", "40", "--seeds", "0", "--extra", f"dataset.data_dir={data_dir}"]
    line = refusal([*base, *argv], capsys, tmp_path)
    assert named in line, line


@pytest.mark.parametrize(
    ("output", "runs", "named"),
    [
        ("afile", None, "--output {tmp}/afile"),
        ("/proc/o", None, "--output /proc/o"),
        ("afile/o", None, "--output {tmp}/afile/o"),
        ("out", "afile", "--runs {tmp}/afile"),
        ("out", "/proc/runs", "--runs /proc/runs"),
        ("theirs", None, "results.md"),  # a folder with someone's results.md and results.png
        ("their_plot", None, "results.png"),  # the study's table, someone's plot
        ("their_csv", None, "results.csv"),
    ],
)
def test_an_output_the_study_cannot_use_is_refused_before_anything_trains(output, runs, named, capsys, tmp_path):
    (tmp_path / "afile").write_text("a file")
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "results.md").write_text("my notes\n")
    (tmp_path / "theirs" / "results.png").write_text("my plot")
    (tmp_path / "their_plot").mkdir()
    (tmp_path / "their_plot" / "results.md").write_text(study.TABLE_HEADER + " 40 |\n")
    (tmp_path / "their_plot" / "results.png").write_text("my plot")
    (tmp_path / "their_csv").mkdir()
    (tmp_path / "their_csv" / "results.csv").write_text("name,score\nx,1\n")
    argv = ["--train-at", "40", "--evaluate-at", "40", "--seeds", "0"]
    argv += ["--runs", str(tmp_path / runs) if runs else str(tmp_path / "runs")]
    line = refusal(argv, capsys, tmp_path, output=str(tmp_path / output))
    assert named.format(tmp=tmp_path) in line, line


def test_the_study_takes_its_own_plots_as_its_own(tmp_path):
    rows = [{"setting": "s", "seed": "0", "resolution": "40", "trained_at": "40", "test_acc": "90", "flags": ""}]
    rows[0]["extra"] = ""
    study.write_plot(rows, tmp_path / "results.png")
    assert study.is_study_plot(tmp_path / "results.png")  # marked
    import matplotlib.pyplot as plt

    plt.figure()
    plt.savefig(tmp_path / "other.png")  # a Matplotlib plot, unmarked: the study's only beside its own table
    plt.close("all")
    assert not study.is_study_plot(tmp_path / "other.png")
    (tmp_path / "results.md").write_text(study.markdown_table(rows) + "\n")
    assert study.is_study_table(tmp_path / "results.md") and study.is_study_plot(tmp_path / "other.png")


def test_a_table_that_became_someone_elses_during_the_study_is_not_written_over(tmp_path):
    from training.cli import exit_code
    from training.tools import ToolFailedError

    rows = [{"setting": "s", "seed": "0", "resolution": "40", "trained_at": "40", "test_acc": "90", "flags": ""}]
    rows[0]["extra"] = ""
    (tmp_path / "results.md").write_text("notes written while the study trained\n")
    with pytest.raises(ToolFailedError) as failed:
        study.write_summary(rows, tmp_path)
    assert exit_code(failed.value) == 1 and "results.md" in str(failed.value)  # a failure: the runs are recorded
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.md"]


def test_a_run_that_fails_is_one_line_naming_what_is_kept(tmp_path, capsys):
    from tests.conftest import compose
    from training.config.checks import ConfigError
    from training.tools import ToolFailedError

    cfg = compose([f"train.output_dir={tmp_path / 'runs' / 'plain' / 'seed0'}", "test.resolutions=[40]"])

    def train(cfg):
        raise ConfigError("optimizer.lr made the loss non-finite", "optimizer.lr")

    with pytest.raises(ToolFailedError) as failed:
        study.run_study({("plain", 0): cfg}, [("plain", [])], [], tmp_path, train=train)
    assert "optimizer.lr" in str(failed.value) and str(tmp_path / "runs" / "plain" / "seed0") in str(failed.value)
    assert "\n" not in str(failed.value) and not (tmp_path / "results.csv").exists()


def test_an_evaluation_resolution_the_network_cannot_take_is_refused(capsys, tmp_path):
    argv = ["--train-at", "40", "--evaluate-at", "40", "3", "--extra", "net.no_blocks=2", "net.downsampling=[0,1]"]
    line = refusal(argv, capsys, tmp_path)
    assert "test.resolutions: 3" in line and "net.downsampling" in line


def test_a_run_folder_that_is_not_empty_is_refused(capsys, tmp_path):
    folder = tmp_path / "runs" / "plain" / "seed0"
    folder.mkdir(parents=True)
    (folder / "other.txt").write_text("another run's file")
    argv = ["--train-at", "40", "--evaluate-at", "40", "--seeds", "0", "--runs", str(tmp_path / "runs")]
    assert str(folder) in refusal(argv, capsys, tmp_path)
    assert (folder / "other.txt").read_text() == "another run's file"


def test_a_tiny_study_records_rows_table_and_plot_and_a_rerun_trains_nothing_again(data_dir, tmp_path):
    argv = ["--train-at", "40", "--evaluate-at", "20", "40", "--seeds", "0", "--output", str(tmp_path / "out")]
    argv += ["--setting", "plain=", "--setting", "bandlimit=kernel.bandlimit=1.0"]
    argv += ["--extra", *FLAGS, "dataset.params.val_size=100", f"dataset.data_dir={data_dir}"]
    assert study.main(argv) == 0
    with open(tmp_path / "out" / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["setting"], r["seed"], r["resolution"], r["trained_at"]) for r in rows] == [
        ("plain", "0", "20", "40"),
        ("plain", "0", "40", "40"),
        ("bandlimit", "0", "20", "40"),
        ("bandlimit", "0", "40", "40"),
    ]
    assert rows[2]["flags"] == "kernel.bandlimit=1.0" and rows[0]["flags"] == ""
    for row in rows:  # the run's own record of the same numbers
        with open(tmp_path / "out" / "runs" / row["setting"] / "seed0" / "resolutions.csv", newline="") as handle:
            own = {r["resolution"]: r for r in csv.DictReader(handle)}
        assert float(row["test_acc"]) == pytest.approx(100 * float(own[row["resolution"]]["test_acc"]), abs=5e-5)
    table = (tmp_path / "out" / "results.md").read_text()
    assert table.splitlines()[0] == "| setting | flags | seeds | 20 | 40 (training) |"
    plain = next(line for line in table.splitlines() if line.startswith("| plain |"))
    assert plain == f"| plain | (none) | 0 | {float(rows[0]['test_acc']):.2f} | {float(rows[1]['test_acc']):.2f} |"
    assert (tmp_path / "out" / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    runs, recorded = tree(tmp_path / "out" / "runs"), (tmp_path / "out" / "results.csv").read_text()
    assert study.is_study_plot(tmp_path / "out" / "results.png")
    assert study.main(argv) == 0  # everything is recorded: nothing trains, the table is written again
    assert tree(tmp_path / "out" / "runs") == runs and (tmp_path / "out" / "results.csv").read_text() == recorded
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["results.csv", "results.md", "results.png", "runs"]


def test_the_table_gives_the_mean_and_sample_standard_deviation_over_seeds():
    rows = [
        {"setting": "s", "seed": str(seed), "resolution": res, "trained_at": "40", "test_acc": acc, "flags": "f=1"}
        for seed, res, acc in [(0, "40", "90"), (1, "40", "92"), (2, "40", "94"), (0, "80", "50")]
    ]
    for row in rows:
        row["extra"] = "train.epochs=5"
    assert study.markdown_table(rows).splitlines() == [
        "| setting | flags | seeds | 40 (training) | 80 |",
        "|---|---|---|---|---|",
        "| s | `f=1` | 0, 1, 2 | 92.00 ± 2.00 | 50.00 |",
        "",
        "Flags of every run: `train.epochs=5`",
    ]
