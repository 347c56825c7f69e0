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
    assert sorted(p.name for p in sweep.iterdir()) == ["0", "jobs.jsonl", "multirun.yaml"]  # no folder for job 1


def test_the_multirun_record_survives_parallel_writers_and_summarises_each_job(tmp_path):
    from concurrent.futures import ProcessPoolExecutor

    from training.multirun import RECORD_NAME, read_jobs, record_job, summary_lines

    overrides = [["lr=0.1", "seed=0"], ["lr=0.2", "seed=0"], ["lr=0.3", "seed=0"]] * 20
    with ProcessPoolExecutor(max_workers=4) as pool:  # as submitit runs jobs, in separate processes
        for n, flags in enumerate(overrides):
            pool.submit(record_job, tmp_path, tmp_path / str(n), flags, "val/acc=0.5", n == 4)
    jobs = read_jobs(tmp_path / RECORD_NAME)
    assert sorted(int(job["job"]) for job in jobs) == list(range(60))
    lines = summary_lines(jobs)
    assert lines[0] == "multirun: 59 of 60 jobs done"
    assert lines[1] == f"     0  lr=0.1  val/acc=0.5  {tmp_path / '0'}"  # seed=0 is the same in every job
    assert lines[5] == "     4  lr=0.2  val/acc=0.5"  # a failed job: no folder
    assert read_jobs(tmp_path / RECORD_NAME, offset=(tmp_path / RECORD_NAME).stat().st_size) == []
