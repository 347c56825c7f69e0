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
import pytorch_lightning as pl

from tests.conftest import REPO, TINY, main_py
from training.checkpoints import read_checkpoint
from training.console import ConsoleLog, ProgressBar

ENV = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}
MAIN = str(REPO / "main.py")


def test_main_log_keeps_what_is_printed_under_a_live_progress_bar_and_none_of_its_frames(tmp_path, capsys):
    # A real Rich display on a terminal, as Lightning's bar draws it: frames that grow from one line to three, the
    # epoch lines printed through Rich's redirection of stdout (so they arrive in the same chunk as the erase codes of
    # the frame before and the next frame), and the last frame left on the screen.
    from rich.console import Console
    from rich.progress import Progress

    log = tmp_path / "main.log"
    with ConsoleLog(log):
        print("run folder: here")
        console = Console(file=sys.stdout, force_terminal=True, soft_wrap=True, width=60)
        with Progress(console=console, auto_refresh=False) as progress:
            bars = [progress.add_task("Epoch 1/2", total=3)]
            for epoch in (1, 2):
                for _ in range(3):
                    progress.update(bars[0], advance=1, refresh=True)
                bars.append(progress.add_task(f"val/acc: 0.{epoch}", total=None))
                progress.refresh()
                print(f"epoch {epoch}/2 | val/acc=0.{epoch} | " + "a long line that the terminal wraps " * 3)
                progress.reset(bars[0], description="Epoch 2/2")
                progress.refresh()
        print("Final: done")
    shown = capsys.readouterr().out
    assert "\x1b[1A" in shown and shown.count("Epoch 2/2") > 3  # the frames were drawn and redrawn on the console
    long = "a long line that the terminal wraps " * 3
    assert (
        log.read_text()
        == f"run folder: here\nepoch 1/2 | val/acc=0.1 | {long}\nepoch 2/2 | val/acc=0.2 | {long}\nFinal: done\n"
    )


def test_text_in_the_chunk_of_a_redraws_erase_codes_reaches_main_log(tmp_path):
    # The chunk the audit found dropped whole: the erase codes of a 3-line frame, the epoch line, the next frame.
    log = tmp_path / "main.log"
    with ConsoleLog(log):
        sys.stdout.write("\x1b[?25lEpoch 1/2 \x1b[35m━━\x1b[0m 1/4\n  val/loss: 2.0\n  val/acc: 0.3")
        sys.stdout.write(
            "\r\x1b[2K\x1b[1A\x1b[2K\x1b[1A\x1b[2Kepoch 1/2 | val/acc=0.3000\nEpoch 2/2 ━━ 0/4\n  val/loss: 2.0"
        )
        sys.stdout.write("\r\x1b[2K\x1b[1A\x1b[2KEpoch 2/2 ━━ 4/4\n  val/loss: 1.5\n\x1b[?25h")
        sys.stdout.write("time: 1.0s in all\rtime: 2.0s in all\n")  # outside a display, a carriage return rewrites
    assert log.read_text() == "epoch 1/2 | val/acc=0.3000\ntime: 2.0s in all\n"


def test_the_progress_bar_counts_epochs_from_1_and_shows_no_logger_version(tmp_path):
    from pytorch_lightning.callbacks import RichProgressBar
    from pytorch_lightning.demos.boring_classes import BoringModel
    from pytorch_lightning.loggers import CSVLogger

    bar, lightnings = ProgressBar(), RichProgressBar()
    trainer = pl.Trainer(max_epochs=2, callbacks=[bar], logger=CSVLogger(tmp_path, name="", version="logs"))
    module = BoringModel()
    for callback in (bar, lightnings):
        callback.setup(trainer, module, "fit")
    assert lightnings._get_train_description(0).strip() == "Epoch 0/1"  # what Lightning shows for the first of two
    assert [bar._get_train_description(e).strip() for e in (0, 1)] == ["Epoch 1/2", "Epoch 2/2"]
    assert lightnings.get_metrics(trainer, module) == {"v_num": "logs"}
    assert bar.get_metrics(trainer, module) == {}


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
    noises = ("💡 Tip", "was configured so", "TPU available", "LeafSpec", "smaller than the logging interval", "FLOPs")
    for noise in noises:
        assert noise not in shown, noise
    # The model summary is still there, without its column of zeros: 870 parameters, counted without padding.
    assert "Trainable params: 870, non-trainable: 0, size: 0.003 MB" in shown
    log = (run / "main.log").read_text()
    lines = [line for line in result.stdout.splitlines() if line.startswith(("run folder:", "epoch", "Final:"))]
    assert lines[0] == f"run folder: {run}, note: first try" and lines[-1].startswith("Final: ")
    assert len(lines) == 3 and all(line in log.splitlines() for line in lines)


@pytest.mark.slow
def test_ctrl_c_prints_the_command_that_resumes_the_run(data_dir, tmp_path):
    run = tmp_path / "run"
    # Epochs of 58 steps (half a second to a second each): the interrupt comes after the first. Eight of them, as the
    # epoch line can reach this process late on a loaded machine: the run must still be training when it arrives.
    flags = [*TINY, "train.epochs=8", "dataset.params.num_samples=3000"]
    process = subprocess.Popen(
        [sys.executable, MAIN, *flags, f"dataset.data_dir={data_dir}", f"train.output_dir={run}"],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    shown = []
    for line in process.stdout:  # type: ignore[union-attr]
        shown.append(line)
        if line.startswith("epoch 1/8 |"):
            break
    last = run / "checkpoints" / "last.ckpt"  # written after the epoch line, at the very end of the epoch
    deadline = time.monotonic() + 120
    while not last.is_file() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # into a later epoch
    process.send_signal(signal.SIGINT)
    output = "".join(shown) + process.communicate(timeout=120)[0]
    assert process.returncode == 130, output[-2000:]
    held = read_checkpoint(last)["epoch"] + 1  # Lightning counts from 0, the epoch lines from 1
    [interrupted] = re.findall(
        rf"\nInterrupted during epoch (\d+)/8; last.ckpt holds epoch {held}\. The run continues", output
    )
    assert 1 <= held < 8 and int(interrupted) in (held, held + 1)  # the next epoch, or its start after the save
    notice = output.split("The run continues from its last checkpoint with:\n")[1].splitlines()[0].strip()
    words = shlex.split(notice)
    assert words[:2] == [sys.executable, MAIN] and words[-1] == f"train.resume={last}"
    assert notice in (run / "main.log").read_text()

    # The printed command, exactly as printed, from the folder the run was started in.
    resumed = subprocess.run(words, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert read_checkpoint(last)["epoch"] == 7
    assert f"run folder: {run}" in resumed.stdout
    epochs = [line.split(" |")[0] for line in resumed.stdout.splitlines() if line.startswith("epoch ")]
    assert epochs == [f"epoch {k}/8" for k in range(held + 1, 9)]
    # Lightning's warning about the run's own checkpoint folder is gone; the time summary covers the whole run.
    assert "exists and is not empty" not in resumed.stdout + resumed.stderr
    summary = next(line for line in resumed.stdout.splitlines() if line.startswith("time: "))
    assert re.match(r"time: \S+ in all, \S+ of it before the run was resumed: ", summary), summary


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


def test_a_multirun_whose_jobs_name_their_folders_summarises_where_each_wrote(data_dir, tmp_path):
    sweep, runs = tmp_path / "sweep", tmp_path / "runs"
    folders = [f"train.output_dir={runs}/" + "${hydra:job.num}", f"hydra.sweep.dir={sweep}"]
    result = main_py("-m", *TINY, "seed=0,1", f"dataset.data_dir={data_dir}", *folders, cwd=tmp_path)
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
