"""``python -m experiments.resolution_study``: settings and refusals before anything trains, a tiny real study (rows,
table, plot), a re-run that skips what is recorded, and the table's statistics."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from experiments import resolution_study as study
from tests.conftest import TINY, tree

FLAGS = [flag for flag in TINY if not flag.startswith("dataset.params.val_size")]


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


def refusal(argv: list[str], capsys, tmp_path: Path) -> str:
    """The one line of a refused study (exit 2), which wrote nothing under ``tmp_path``."""
    before = tree(tmp_path)
    code = study.main([*argv, "--output", str(tmp_path / "out")])
    assert code == 2
    assert tree(tmp_path) == before
    [line] = capsys.readouterr().err.strip().splitlines()
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
    ],
)
def test_what_cannot_run_is_refused_before_anything_trains(argv, named, capsys, tmp_path):
    base = ["--train-at", "40", "--evaluate-at", "20", "40", "--seeds", "0"]
    assert named in refusal([*base, *argv], capsys, tmp_path)


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
    assert study.main(argv) == 0  # everything is recorded: nothing trains, the table is written again
    assert tree(tmp_path / "out" / "runs") == runs and (tmp_path / "out" / "results.csv").read_text() == recorded


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
