"""On Ctrl-C, the exact command that resumes the run (logged: the console and ``main.log`` keep it)."""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path

import pytorch_lightning as pl

from training.run.checkpoints import CheckpointError, read_checkpoint

log = logging.getLogger(__name__)


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
    try:
        epoch = read_checkpoint(path).get("epoch")
    except CheckpointError:
        return None
    return epoch + 1 if isinstance(epoch, int) else None  # Lightning stores the 0-based epoch that was completed


class InterruptNotice(pl.Callback):
    """On Ctrl-C, say which epoch was running and which one the last checkpoint holds (counted from 1, as the epoch
    lines are), and print the exact command that resumes the run; before the first checkpoint, say that the folder
    holds nothing to resume and may be used again."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, KeyboardInterrupt) or not trainer.is_global_zero:
            return
        last = self.folder / "checkpoints" / "last.ckpt"
        if not last.is_file():
            log.info(
                f"Interrupted before the first checkpoint: {self.folder} holds nothing to resume; a new run may use "
                "it again (the same command starts one)."
            )
            return
        # Read from the file rather than inferred from the running epoch: an interrupt that comes after an epoch's
        # checkpoint was written, but before the next epoch started, leaves that epoch in last.ckpt.
        held = checkpoint_epoch(last)
        holds = f"; last.ckpt holds epoch {held}" if held is not None else ""
        log.info(
            f"Interrupted during epoch {trainer.current_epoch + 1}/{trainer.max_epochs}{holds}. The run continues "
            f"from its last checkpoint with:\n  {resume_command(self.folder)}"
        )
