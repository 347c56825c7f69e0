"""What a researcher watches: a quiet console, main.log holding it, the resume command on Ctrl-C, the multirun
summary. Through ``python main.py`` as a user runs it."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO, TINY
from training.checkpoints import read_checkpoint

ENV = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}
MAIN = str(REPO / "main.py")


def test_the_console_is_quiet_and_main_log_holds_what_it_showed(data_dir, tmp_path):
    run = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, MAIN, *TINY, f"dataset.data_dir={data_dir}", f"train.output_dir={run}", "comment=first try"],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    shown = result.stdout + result.stderr
    for noise in ("💡 Tip", "was configured so", "TPU available", "LeafSpec", "smaller than the logging interval"):
        assert noise not in shown, noise
    log = (run / "main.log").read_text()
    lines = [line for line in result.stdout.splitlines() if line.startswith(("run folder:", "epoch", "Final:"))]
    assert lines[0] == f"run folder: {run}, note: first try" and lines[-1].startswith("Final: ")
    assert len(lines) == 3 and all(line in log.splitlines() for line in lines)


@pytest.mark.slow
def test_ctrl_c_prints_the_command_that_resumes_the_run(data_dir, tmp_path):
    run = tmp_path / "run"
    flags = [*TINY, "train.epochs=40", "dataset.params.num_samples=2000", f"dataset.data_dir={data_dir}"]
    process = subprocess.Popen(
        [sys.executable, MAIN, *flags, f"train.output_dir={run}"],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while not last.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output[-2000:]
    notice = output.split("The run continues from its last checkpoint with:\n")[1].splitlines()[0].strip()
    words = shlex.split(notice)
    assert words[:2] == ["python", "main.py"] and words[-1] == f"train.resume={last}"
    assert notice in (run / "main.log").read_text()
    done = read_checkpoint(last)["epoch"]

    # The printed command, run from the repository as printed (with a shorter run so the test ends soon).
    command = [sys.executable, MAIN, *[w for w in words[2:] if not w.startswith("train.epochs=")], "train.epochs=2"]
    resumed = subprocess.run(command, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert read_checkpoint(last)["epoch"] == max(done, 1)
    assert f"run folder: {run}" in resumed.stdout


def test_a_multirun_ends_with_one_line_per_job(data_dir, tmp_path):
    sweep = tmp_path / "sweep"
    flags = ["dataset.params.val_size=100,1000", f"dataset.data_dir={data_dir}", f"hydra.sweep.dir={sweep}"]
    result = subprocess.run(
        [sys.executable, MAIN, "-m", *TINY, *flags],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2  # one job failed
    summary = result.stdout.split("multirun: 1 of 2 jobs done\n")[1].splitlines()
    assert summary[0].split()[:2] == ["0", "dataset.params.val_size=100"] and summary[0].endswith(str(sweep / "0"))
    assert "val/acc=" in summary[0] and "test/acc=" in summary[0]
    assert summary[1].split()[:3] == ["1", "dataset.params.val_size=1000", "error:"]
    assert sorted(p.name for p in sweep.iterdir()) == ["0", "multirun.yaml"]  # the failed job left no folder
