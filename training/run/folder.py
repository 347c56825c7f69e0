"""Run folders belong to one run: chosen and checked before anything is written, locked while the run lives.

Hydra makes the run folder (``hydra.run.dir``, or a multirun job's ``hydra.sweep.dir``/``subdir``) and its log
``main.log``; cfg/config.yaml names it (``training.config.resolvers``). Every check below runs before Hydra makes it
(``training.cli``).

A folder *holds a run* when it has a run's checkpoints or the results of a finished run (``results.json``). A new run
never writes into such a folder; only resuming that run does (``train.resume=<folder>/checkpoints/last.ckpt``). A
folder with neither (a run stopped before its first epoch ended) may be used again. Two processes never write into
one folder at the same time: the first takes an exclusive lock (``<folder>/.lock``, an ``flock`` that the operating
system releases when the process ends, however it ends), the second is refused.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from pathlib import Path
from typing import IO

LOCK_NAME = ".lock"


class RunFolderError(RuntimeError):
    """The run folder cannot be used: it holds another run, another process is writing to it, or it is not a
    folder. The message names the folder and the way out."""


RESULTS_NAME = "results.json"


def holds_run(folder: Path) -> bool:
    """Whether ``folder`` holds what a run that got somewhere writes: a checkpoint, or a finished run's results."""
    return any((folder / "checkpoints").glob("*.ckpt")) or (folder / RESULTS_NAME).is_file()


def _holder(folder: Path) -> str | None:
    """The lock holder's description when another process holds ``folder``'s lock, else ``None``."""
    path = folder / LOCK_NAME
    if not path.is_file():
        return None
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            return handle.read().strip() or "another process"
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


def _in_use(folder: Path, holder: str, resuming: bool) -> RunFolderError:
    # A resume continues in its run's own folder: there is no other folder to choose.
    other = "" if resuming else " or choose another train.output_dir"
    return RunFolderError(f"run folder {folder} is in use by {holder}; wait for it to end{other}.")


def nearest_existing(path: Path) -> Path:
    """``path``, or the nearest folder above it that exists: where the folders that would be made start."""
    return next(parent for parent in (path, *path.parents) if parent.exists())


def write_refusal(folder: Path) -> OSError | None:
    """Why no file can be made in ``folder``, or ``None``. Tried with a temporary file rather than read from the
    permission bits: those do not say what a read-only mount, an immutable folder or ``/proc`` refuse, and allow
    everything to root."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return None
    except OSError as error:
        return error


def unusable(folder: Path) -> str | None:
    """Why no run can write into ``folder`` (it is a file; the folder, or the nearest of its parents that exists,
    takes no new file), or ``None``."""
    if folder.exists() and not folder.is_dir():
        return "exists and is not a folder"
    existing = nearest_existing(folder)
    if write_refusal(existing) is not None:
        return f"cannot be created or written in: {existing} is not a folder this process can write in"
    return None


def check_run_folder(folder: Path, resuming: bool) -> None:
    """Raise :class:`RunFolderError` unless a run may write into ``folder``. Writes nothing.

    Args:
        folder: the run folder.
        resuming: the run continues the run that ``folder`` holds (its checkpoint is in ``folder/checkpoints``).
    """
    problem = unusable(folder)
    if problem is not None:
        raise RunFolderError(f"run folder {folder} {problem}; choose another train.output_dir.")
    holder = _holder(folder)
    if holder is not None:
        raise _in_use(folder, f"a running process ({holder})", resuming)
    if not resuming and holds_run(folder):
        raise RunFolderError(
            f"run folder {folder} already holds a run (its checkpoints or {RESULTS_NAME}); a new run never writes "
            f"over another. Choose another train.output_dir, or continue that run with "
            f"train.resume={folder / 'checkpoints' / 'last.ckpt'}."
        )


class RunLock:
    """The exclusive lock of a run folder, held from :meth:`acquire` until :meth:`release` or process exit."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._handle: IO[str] | None = None

    def acquire(self, resuming: bool) -> None:
        """Create the folder, take its lock, and check again under the lock (another run may have started since the
        first check). Raises :class:`RunFolderError`; on failure nothing new is left behind."""
        created = not self.folder.exists()
        lock_path = self.folder / LOCK_NAME
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            lock_existed = lock_path.exists()
            handle = open(lock_path, "a+")  # noqa: SIM115 (held open for the run's lifetime)
        except OSError as error:  # e.g. a read-only or pseudo file system that os.access did not tell apart
            raise RunFolderError(
                f"run folder {self.folder} cannot be created ({error.strerror}); choose another train.output_dir."
            ) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise _in_use(self.folder, "a running process", resuming) from None
        try:
            if not resuming and holds_run(self.folder):
                check_run_folder(self.folder, resuming)  # raises, naming the folder
        except RunFolderError:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
            if not lock_existed:
                lock_path.unlink(missing_ok=True)
            if created:
                _remove_empty(self.folder)
            raise
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {os.uname().nodename}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        """Release the lock (the lock file stays; it holds no state)."""
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def _remove_empty(folder: Path) -> None:
    """Remove ``folder`` and its empty parents that this process created (best effort; never a non-empty one)."""
    try:
        folder.rmdir()
    except OSError:
        return


__all__ = [
    "RunFolderError",
    "RunLock",
    "check_run_folder",
    "holds_run",
    "nearest_existing",
    "unusable",
    "write_refusal",
]
