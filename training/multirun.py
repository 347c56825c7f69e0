"""A multirun's record of its jobs, and its one-line-per-job summary at the end.

Each job appends one JSON line to ``<hydra.sweep.dir>/jobs.jsonl`` when it ends (a single ``O_APPEND`` write, so jobs
that a launcher runs in parallel processes, e.g. submitit's, do not mix their lines). :class:`JobSummary`, a Hydra
callback (cfg/config.yaml ``hydra.callbacks``), runs in the process that launched the sweep: at the end it prints the
jobs of this multirun, one line each with the flags that differ between them, and sets :data:`exit_code`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

RECORD_NAME = "jobs.jsonl"
exit_code = 0  # 1 when a job of the last multirun failed while running; main.py exits with it


def record_job(
    sweep_dir: Path, folder: Path, overrides: list[str], outcome: str, failed: bool, run_folder: Path | None = None
) -> None:
    """Append one job's outcome to the sweep's record.

    Args:
        sweep_dir: the multirun's ``hydra.sweep.dir``.
        folder: Hydra's folder of the job (its name is the job's number).
        overrides: the job's overrides.
        outcome: the job's accuracies, or its error.
        failed: whether the job failed.
        run_folder: where the job's run wrote, when not ``folder`` (a ``train.output_dir`` of its own).
    """
    where = str(run_folder or folder)
    record = {"job": folder.name, "folder": where, "overrides": overrides, "outcome": outcome, "failed": failed}
    line = json.dumps(record) + "\n"
    sweep_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(sweep_dir / RECORD_NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def read_jobs(record: Path, offset: int = 0) -> list[dict[str, Any]]:
    """The jobs recorded from byte ``offset`` on (a sweep folder used again holds the earlier multiruns' lines)."""
    if not record.is_file():
        return []
    with open(record, "rb") as file:
        file.seek(offset)
        return [json.loads(line) for line in file.read().decode().splitlines() if line.strip()]


def summary_lines(jobs: list[dict[str, Any]]) -> list[str]:
    """``multirun: k of n jobs done`` and one line per job: number, the flags that differ between jobs, outcome."""
    every = [set(job["overrides"]) for job in jobs]
    varying = [o for o in dict.fromkeys(o for job in jobs for o in job["overrides"]) if not all(o in s for s in every)]
    done = sum(not job["failed"] for job in jobs)
    lines = [f"multirun: {done} of {len(jobs)} jobs done"]
    for job in sorted(jobs, key=lambda job: int(job["job"]) if str(job["job"]).isdigit() else 0):
        flags = " ".join(o for o in job["overrides"] if o in varying) or "(no swept flag)"
        where = "" if job["failed"] else f"  {job['folder']}"
        lines.append(f"  {job['job']:>4}  {flags}  {job['outcome']}{where}")
    return lines


class JobSummary(Callback):
    """Hydra callback: remembers where this multirun's records start, and prints its summary when it ends. As the
    multirun's first hook it also quiets the sweeper's libraries."""

    running: JobSummary | None = None  # the summary of the multirun under way in this process

    def __init__(self) -> None:
        self._offset = 0
        self._record: Path | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # optuna (2.10) imports alembic, which from 1.18 on logs an info line for each of its built-in plugins;
        # before Hydra imports the sweeper, its level drops to warnings (optuna does so only when it opens a storage).
        logging.getLogger("alembic").setLevel(logging.WARNING)
        if "Optuna" in str(config.hydra.sweeper.get("_target_", "")):
            import optuna  # the extra [sweep]: here, as the sweeper is Optuna's

            optuna.logging.set_verbosity(optuna.logging.WARNING)  # its "A new study created" line, in colour
        self._record = Path(config.hydra.sweep.dir) / RECORD_NAME
        self._offset = self._record.stat().st_size if self._record.is_file() else 0
        JobSummary.running = self

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self.summarize()

    def summarize(self) -> list[dict[str, Any]]:
        """Print the summary of this multirun's jobs, set :data:`exit_code`, and return the jobs."""
        global exit_code
        JobSummary.running = None
        jobs = read_jobs(self._record, self._offset) if self._record is not None else []
        if jobs:
            print("\n".join(summary_lines(jobs)), flush=True)
        exit_code = 1 if any(job["failed"] for job in jobs) else 0
        return jobs


def failed_whole() -> bool:
    """After the sweeper raised: whether it did so because every job of its multirun failed (Optuna asks for the
    best of no completed trial), in which case the summary is printed here, since the sweep's end never came."""
    running = JobSummary.running
    if running is None:
        return False
    jobs = running.summarize()
    return bool(jobs) and all(job["failed"] for job in jobs)
