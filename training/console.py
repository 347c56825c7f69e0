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
from pytorch_lightning.callbacks import RichModelSummary, RichProgressBar
from pytorch_lightning.utilities.model_summary.model_summary import get_formatted_model_size, get_human_readable_count

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
# Lightning's warning on resuming, about the run's own checkpoints/ folder, which training.run_folder has checked.
_RESUME_NOISE = r"Checkpoint directory .* exists and is not empty\."
# A terminal control sequence (CSI: ESC [ parameters letter): cursor movement, line erasing, colours, cursor shown or
# hidden. Captured: the parameters and the letter.
_CONTROL = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")
_TOKENS = re.compile(r"(\x1b\[[0-9;?]*[A-Za-z]|\r|\n)")


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_NOISE)


def quiet_lightning() -> None:
    """Drop Lightning's advertisement and default-announcing info lines and three warnings about its internals or
    about folders this project checks itself, so that what remains on the console is what a user should read. Safe to
    call more than once."""
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero"):
        log = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in log.filters):
            log.addFilter(_DropNoise())
    for pattern in (*_WARNING_NOISE, _RESUME_NOISE):
        warnings.filterwarnings("ignore", message=pattern)


def quiet_sweep_libraries() -> None:
    """Silence the info lines that libraries of the Optuna sweeper log when they are imported.

    Hydra's logging configuration lets every library's info records through to the console. ``import optuna`` (2.10)
    imports alembic, which from 1.18 on logs ``setup plugin alembic.autogenerate.*`` for each of its built-in plugins;
    optuna lowers alembic's level to warnings itself, but only later, when it opens a storage. Lowering it before the
    sweeper is imported (the multirun's first callback runs before that) keeps alembic's warnings and drops its
    announcements.
    """
    logging.getLogger("alembic").setLevel(logging.WARNING)


class _Tee:
    """A text stream that writes to the console stream and, without the frames of live displays, to a file.

    What reaches the file is the text a reader of the console keeps: control sequences are stripped, and the lines of
    a display that redraws itself in place (Rich's progress bar) are left out. Such a display hides the cursor while
    it is live and, before each redraw, moves the cursor up over its previous frame and erases it; text printed
    meanwhile (the epoch line) comes in the same chunk, between the erase codes and the next frame. So while a display
    is live the tee holds the lines written since the last redraw; where the first text after the next redraw's cursor
    movement lands tells that the lines above stay on the screen (they go to the file) and that the lines from there
    down were a frame (they are rewritten). The last frame, still held when the cursor is shown again or the stream
    closes, is dropped too. Outside a live display a carriage return starts its line again, as on a terminal.
    """

    def __init__(self, stream: IO[str], file: IO[str]) -> None:
        self._stream = stream
        self._file = file
        self._lines = [""]  # text not yet in the file: the held lines, the last one unfinished
        self._row = 0  # the cursor's line in self._lines
        self._live = False
        self._redrawing = False  # the cursor moved for a redraw and no text was written since

    def write(self, text: str) -> int:
        written = self._stream.write(text)
        for token in _TOKENS.split(text):
            if token:
                self._feed(token)
        return written

    def _feed(self, token: str) -> None:
        control = _CONTROL.fullmatch(token)
        if self._redrawing and control is None and token not in "\r\n":
            # The first text after a redraw's cursor movement: the lines above where it lands stay on the screen.
            self._commit(self._row)
            self._redrawing = False
        if token == "\n":
            self._row += 1
            if self._row == len(self._lines):
                self._lines.append("")
            if not self._live:
                self._commit(self._row)
        elif token == "\r":
            self._lines[self._row] = ""  # the line is written again from its start
            self._redrawing = self._live
        elif control is None:
            self._lines[self._row] += token
        elif control.groups() == ("?25", "l"):  # cursor hidden: a live display starts
            self._live = True
        elif control.groups() == ("?25", "h") and self._live:  # cursor shown: the display ended, its last frame
            self._drop_frame()  # is left out
        elif control.group(2) == "A":  # cursor up, over lines of a frame that the redraw erases
            self._live = self._redrawing = True
            self._row = max(0, self._row - int(control.group(1) or 1))
        elif control.group(2) == "K":  # erase (part of) the line: a redraw
            self._live = self._redrawing = True
            self._lines[self._row] = ""
        # colours and other controls change no text

    def _commit(self, row: int) -> None:
        """Write the held lines above ``row`` to the file and stop holding them."""
        if row > 0:
            self._file.write("".join(line + "\n" for line in self._lines[:row]))
            del self._lines[:row]
            self._row -= row

    def _drop_frame(self) -> None:
        self._lines, self._row, self._live, self._redrawing = [""], 0, False, False

    def finish(self) -> None:
        """Write a last unfinished line (outside a live display) to the file (which stays open)."""
        if not self._live and self._lines[-1]:
            self._file.write(self._lines[-1])
        self._drop_frame()

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
            for tee in (sys.stdout, sys.stderr):
                if isinstance(tee, _Tee):
                    tee.finish()
            sys.stdout, sys.stderr = self._saved
        if self._handler is not None:
            logging.getLogger().removeHandler(self._handler)
        if self._file is not None:
            self._file.close()


def resume_command(folder: Path) -> str:
    """The command that continues the run in ``folder``, to paste in the folder the run was started from: the
    interpreter and ``main.py`` that run it now (absolute paths), this run's flags, and ``train.resume`` at its last
    checkpoint (Hydra's record of the command line when there is one)."""
    last = folder / "checkpoints" / "last.ckpt"
    try:
        from hydra.core.hydra_config import HydraConfig

        overrides = list(HydraConfig.get().overrides.task)
    except (ImportError, ValueError):  # train(cfg) called from Python: the flags are the caller's
        return f"train.resume={last} with the same flags"
    kept = [o for o in overrides if not o.lstrip("+~").startswith(("train.resume=", "train.output_dir="))]
    script = Path(sys.argv[0]).resolve()  # main.py: Hydra leaves the working folder as it was (hydra.job.chdir)
    return shlex.join([sys.executable, str(script), *kept, f"train.resume={last}"])


def checkpoint_epoch(path: Path) -> int | None:
    """The number (counted from 1) of the last epoch the checkpoint at ``path`` holds; ``None`` if it is unreadable."""
    from training.checkpoints import CheckpointError, read_checkpoint

    try:
        epoch = read_checkpoint(path).get("epoch")
    except CheckpointError:
        return None
    return epoch + 1 if isinstance(epoch, int) else None  # Lightning stores the 0-based epoch that was completed


class InterruptNotice(pl.Callback):
    """On Ctrl-C, say which epoch was running and which one the last checkpoint holds (counted from 1, as the epoch
    lines are), and print the exact command that resumes the run."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, KeyboardInterrupt) or not trainer.is_global_zero:
            return
        last = self.folder / "checkpoints" / "last.ckpt"
        if not last.is_file():
            print(f"\nInterrupted before the first checkpoint; nothing to resume in {self.folder}.", flush=True)
            return
        # Read from the file rather than inferred from the running epoch: an interrupt that comes after an epoch's
        # checkpoint was written, but before the next epoch started, leaves that epoch in last.ckpt.
        held = checkpoint_epoch(last)
        holds = f"; last.ckpt holds epoch {held}" if held is not None else ""
        print(
            f"\nInterrupted during epoch {trainer.current_epoch + 1}/{trainer.max_epochs}{holds}. The run continues "
            f"from its last checkpoint with:\n  {resume_command(self.folder)}",
            flush=True,
        )


class ProgressBar(RichProgressBar):
    """Lightning's live progress bar, numbering epochs as the epoch lines do and without the logger's version.

    Lightning shows ``Epoch 0/1`` for the first of two epochs (0-based, against the last index) and a ``v_num``
    field (the CSV logger's version, always ``logs`` here). Its console does not wrap printed lines (``soft_wrap``):
    the terminal wraps them on screen, and ``main.log`` receives each epoch line whole.
    """

    def __init__(self) -> None:
        super().__init__(console_kwargs={"soft_wrap": True})

    def _get_train_description(self, current_epoch: int) -> str:
        description = f"Epoch {current_epoch + 1}"
        if self.trainer.max_epochs is not None:
            description += f"/{self.trainer.max_epochs}"
        # As Lightning does: padded to the validation bar's description, so that the bar does not jump.
        return f"{description:{len(self.validation_description)}}"

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics


_TEXT = (" ", "Name", "Type", "Mode")  # the summary's columns that are not numbers


class ModelTable(RichModelSummary):
    """Lightning's model summary table without its FLOPs column and total.

    Lightning counts FLOPs only by running ``example_input_array`` through the model, which this project's modules
    do not define (the input size is the dataset's), so every count read 0. torch's FLOP counter also skips the FFT
    convolutions where a CCNN spends its operations, so a count would mislead even with an example input.
    """

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int,
        **summarize_kwargs: Any,
    ) -> None:
        from rich import get_console
        from rich.table import Table

        console = get_console()
        table = Table(header_style=summarize_kwargs.get("header_style", "bold magenta"))
        columns = [(name, values) for name, values in summary_data if name != "FLOPs"]
        for name, _ in columns:
            table.add_column(name, style="dim" if name == " " else None, justify="left" if name in _TEXT else "right")
        for row in zip(*(values for _, values in columns)):
            table.add_row(*row)
        console.print(table)
        trainable = get_human_readable_count(trainable_parameters).strip()  # Lightning pads its counts
        frozen = get_human_readable_count(total_parameters - trainable_parameters).strip()
        size = get_formatted_model_size(model_size)
        console.print(f"[bold]Trainable params[/]: {trainable}, non-trainable: {frozen}, size: {size} MB")
        modes = total_training_modes
        console.print(f"[bold]Modules in train mode[/]: {modes['train']}, in eval mode: {modes['eval']}")

    @classmethod
    def show(cls, module: Any, max_depth: int) -> None:
        """Print ``module``'s table now, outside a fit (``train.dry_run``)."""
        from pytorch_lightning.utilities.model_summary import ModelSummary

        summary = ModelSummary(module, max_depth=max_depth)
        cls.summarize(
            summary._get_summary_data(),
            summary.total_parameters,
            summary.trainable_parameters,
            summary.model_size,
            summary.total_training_modes,
            total_flops=0,
        )
