"""What a researcher watches: a quiet console, ``<run>/main.log`` holding what it showed, and the exact command that
resumes an interrupted run."""

from __future__ import annotations

import logging
import re
import shlex
import sys
import warnings
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import pytorch_lightning as pl

# Lightning's info lines that no user acts on: an advertisement, facts that never change on a machine, and
# announcements of its own defaults.
_NOISE = (
    "💡 Tip:",
    "TPU available:",
    "HPU available:",
    "Loading `train_dataloader` to estimate number of stepping batches",
    "Trainer already configured with model summary callbacks",
)
# Warnings about Lightning's own internals, or about settings this project makes on purpose (metrics are logged per
# epoch, so a logging interval longer than a short epoch loses nothing).
_WARNING_NOISE = (
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",
    r"The number of training batches \(\d+\) is smaller than the logging interval.*",
)
# Terminal control sequences: cursor movement and line erasing (a live progress bar redrawing itself), and colours.
_REDRAW = re.compile(r"\r|\x1b\[\d*[ABKJ]|\x1b\[\?25[lh]")
_COLOUR = re.compile(r"\x1b\[[0-9;]*m")


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_NOISE)


def quiet_lightning() -> None:
    """Drop Lightning's advertisement and default-announcing info lines and two warnings about its internals, so
    that what remains on the console is what a user should read. Safe to call more than once."""
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero"):
        log = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in log.filters):
            log.addFilter(_DropNoise())
    for pattern in _WARNING_NOISE:
        warnings.filterwarnings("ignore", message=pattern)


class _Tee:
    """A text stream that writes to the console stream and, without progress-bar redraws and colours, to a file."""

    def __init__(self, stream: IO[str], file: IO[str]) -> None:
        self._stream = stream
        self._file = file

    def write(self, text: str) -> int:
        written = self._stream.write(text)
        if not _REDRAW.search(text):
            self._file.write(_COLOUR.sub("", text))
        return written

    def flush(self) -> None:
        self._stream.flush()
        self._file.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ... of the console stream
        return getattr(self._stream, name)


class ConsoleLog:
    """Copy what this process prints (stdout, stderr and log records) into ``path``, appending, while active.

    A resumed run appends to the same ``main.log``. Output of live progress bars is shown on the console only.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None
        self._handler: logging.Handler | None = None
        self._saved: tuple[Any, Any] | None = None

    def __enter__(self) -> ConsoleLog:
        self._file = open(self.path, "a", encoding="utf-8", buffering=1)  # closed in __exit__
        self._saved = (sys.stdout, sys.stderr)
        sys.stdout = _Tee(sys.stdout, self._file)  # type: ignore[assignment]
        sys.stderr = _Tee(sys.stderr, self._file)  # type: ignore[assignment]
        # Log records reach the console through handlers that hold the original streams; copy them here too.
        self._handler = logging.StreamHandler(self._file)
        self._handler.setFormatter(logging.Formatter("%(message)s"))
        self._handler.addFilter(_DropNoise())
        logging.getLogger().addHandler(self._handler)
        return self

    def __exit__(self, kind: type | None, error: BaseException | None, trace: TracebackType | None) -> None:
        if self._saved is not None:
            sys.stdout, sys.stderr = self._saved
        if self._handler is not None:
            logging.getLogger().removeHandler(self._handler)
        if self._file is not None:
            self._file.close()


def resume_command(folder: Path) -> str:
    """The command that continues the run in ``folder``: this run's flags, and ``train.resume`` at its last
    checkpoint (Hydra's record of the command line when there is one)."""
    last = folder / "checkpoints" / "last.ckpt"
    try:
        from hydra.core.hydra_config import HydraConfig

        overrides = list(HydraConfig.get().overrides.task)
    except (ImportError, ValueError):  # train(cfg) called from Python: the flags are the caller's
        return f"train.resume={last} with the same flags"
    kept = [o for o in overrides if not o.lstrip("+~").startswith(("train.resume=", "train.output_dir="))]
    return shlex.join(["python", "main.py", *kept, f"train.resume={last}"])


class InterruptNotice(pl.Callback):
    """On Ctrl-C, say which epoch the last checkpoint holds and print the exact command that resumes the run."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, KeyboardInterrupt) or not trainer.is_global_zero:
            return
        last = self.folder / "checkpoints" / "last.ckpt"
        if not last.is_file():
            print(f"\nInterrupted before the first checkpoint; nothing to resume in {self.folder}.", flush=True)
            return
        done = trainer.current_epoch  # the epoch that was running; last.ckpt holds the ones before it
        print(
            f"\nInterrupted during epoch {done}. The run continues from its last checkpoint with:\n"
            f"  {resume_command(self.folder)}",
            flush=True,
        )
