"""What a researcher watches: a quiet console, main.log holding it, the resume command on Ctrl-C, the multirun
summary. Through ``python main.py`` as a user runs it."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO, TINY, interruptible, run_main
from training.run.checkpoints import read_checkpoint

ENV = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}
MAIN = str(REPO / "main.py")


def test_main_log_keeps_what_is_logged_under_a_live_progress_bar_and_none_of_its_frames(tmp_path, capsys):
    # A real Rich display on a terminal, as Lightning's bar draws it, with the epoch lines logged meanwhile: the
    # console handler writes them through Rich's redirection of stdout, above the bar; the file gets the records only.
    import logging

    from rich.console import Console
    from rich.progress import Progress

    from training.run.logs import ConsoleHandler

    log = tmp_path / "main.log"
    logger = logging.getLogger("tests.console")
    handlers = [ConsoleHandler(), logging.FileHandler(log)]
    for handler in handlers:
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("run folder: here")
        console = Console(file=sys.stdout, force_terminal=True, width=60)
        with Progress(console=console, auto_refresh=False) as progress:
            bar = progress.add_task("Epoch 1/2", total=3)
            for epoch in (1, 2):
                for _ in range(3):
                    progress.update(bar, advance=1, refresh=True)
                logger.info(f"epoch {epoch}/2 | val/acc=0.{epoch}")
                progress.reset(bar, description="Epoch 2/2")
                progress.refresh()
        logger.info("Final: done")
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()
    shown = capsys.readouterr().out
    assert "\x1b[" in shown and shown.count("Epoch 2/2") > 1  # the frames were drawn and redrawn on the console
    assert "epoch 1/2 | val/acc=0.1" in shown
    assert log.read_text() == "run folder: here\nepoch 1/2 | val/acc=0.1\nepoch 2/2 | val/acc=0.2\nFinal: done\n"


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
    noises = ("💡 Tip", "GPU available", "TPU available", "LeafSpec", "smaller than the logging interval", "FLOPs")
    for noise in noises:
        assert noise not in shown, noise
    # The model summary is still there, without its column of zeros: 870 parameters, counted without padding.
    assert "Trainable params: 870, non-trainable: 0" in shown
    log = (run / "main.log").read_text()
    lines = [line for line in result.stdout.splitlines() if line.startswith(("run folder:", "epoch", "Final:"))]
    assert lines[0] == f"run folder: {run}, note: first try" and lines[-1].startswith("Final: ")
    assert len(lines) == 3 and all(line in log.splitlines() for line in lines)
    assert "Trainable params: 870" in log  # the table too


@pytest.mark.slow
def test_ctrl_c_prints_the_command_that_resumes_the_run(data_dir, tmp_path):
    run = tmp_path / "run"
    # Epochs of about 100 steps (a second each): the interrupt comes as the second starts, after the first one's
    # checkpoint; a test process that sees the checkpoint late still finds the run training.
    flags = [*TINY, "train.epochs=3", "train.batch_size=16", "dataset.params.num_samples=2000"]
    process = subprocess.Popen(
        [sys.executable, MAIN, *flags, f"dataset.data_dir={data_dir}", f"train.output_dir={run}"],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=interruptible,
    )
    shown = []
    for line in process.stdout:  # type: ignore[union-attr]
        shown.append(line)
        if line.startswith("epoch 1/3 |"):
            break
    last = run / "checkpoints" / "last.ckpt"  # written after the epoch line, at the very end of the epoch
    deadline = time.monotonic() + 120
    while not last.is_file() and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    output = "".join(shown) + process.communicate(timeout=120)[0]
    assert process.returncode == 130, output[-2000:]
    held = read_checkpoint(last)["epoch"] + 1  # Lightning counts from 0, the epoch lines from 1
    [interrupted] = re.findall(
        rf"\nInterrupted during epoch (\d+)/3; last.ckpt holds epoch {held}\. The run continues", output
    )
    assert 1 <= held < 3 and int(interrupted) in (held, held + 1)  # the next epoch, or its start after the save
    notice = output.split("The run continues from its last checkpoint with:\n")[1].splitlines()[0].strip()
    words = shlex.split(notice)
    assert words[:2] == [sys.executable, MAIN] and words[-1] == f"train.resume={last}"
    assert notice in (run / "main.log").read_text()

    # The printed command's flags, from the folder the run was started in, through main.py's own entry function.
    resumed = run_main(*words[2:], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert read_checkpoint(last)["epoch"] == 2
    assert f"run folder: {run}" in resumed.stdout
    epochs = [line.split(" |")[0] for line in resumed.stdout.splitlines() if line.startswith("epoch ")]
    assert epochs == [f"epoch {k}/3" for k in range(held + 1, 4)]
    # Lightning's warnings about the run's own checkpoint folder and its info lines on restoring are gone.
    assert "exists and is not empty" not in resumed.stdout + resumed.stderr
    assert "Restored all states" not in resumed.stdout + resumed.stderr


def test_a_multirun_ends_with_one_line_per_job_and_a_job_that_fails_running_fails_it(data_dir, tmp_path):
    sweep = tmp_path / "sweep"
    flags = ["optimizer.lr=0.01,1e30", f"dataset.data_dir={data_dir}", f"hydra.sweep.dir={sweep}"]
    result = run_main("-m", *TINY, *flags, cwd=tmp_path)
    assert result.returncode == 1  # a job failed while running (a bad value would have refused the whole sweep)
    summary = result.stdout.split("multirun: 1 of 2 jobs done\n")[1].splitlines()
    assert summary[0].split()[:2] == ["0", "optimizer.lr=0.01"] and summary[0].endswith(str(sweep / "0"))
    assert "val/acc=" in summary[0] and "test/acc=" in summary[0]
    assert summary[1].split()[:3] == ["1", "optimizer.lr=1e+30", "error:"]  # as Hydra writes the job's value
    assert (sweep / "1" / "main.log").is_file()  # the failed job's folder holds what it did, and its log why


def test_a_multirun_whose_jobs_name_their_folders_summarises_where_each_wrote(data_dir, tmp_path):
    sweep, runs = tmp_path / "sweep", tmp_path / "runs"
    folders = [f"train.output_dir={runs}/" + "${hydra:job.num}", f"hydra.sweep.dir={sweep}"]
    result = run_main("-m", *TINY, "seed=0,1", f"dataset.data_dir={data_dir}", *folders, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = result.stdout.split("multirun: 2 of 2 jobs done\n")[1].splitlines()
    assert [line.split()[:2] for line in summary] == [["0", "seed=0"], ["1", "seed=1"]]
    assert summary[0].endswith(str(runs / "0")) and summary[1].endswith(str(runs / "1"))
    assert all((runs / n / "checkpoints" / "best.ckpt").is_file() for n in ("0", "1"))
    assert sorted(p.name for p in sweep.iterdir()) == ["jobs.jsonl", "multirun.yaml"]  # no empty job folders


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
