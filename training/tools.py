"""What the commands beside ``main.py`` share (``training.predict``, ``training.plot_kernels``, ``training.export``):
the network of a checkpoint, rebuilt from the config it stores; outputs that are new files, never another's, and
never inside ``pretrained/``; one line and an exit code for whatever stops them, as ``main.py`` does (2: refused,
nothing written; 1: failed while writing, nothing left behind)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from training.cli import report
from training.run.folder import nearest_existing, write_refusal

SHIPPED_CHECKPOINTS = Path(__file__).resolve().parent.parent / "pretrained"


class RequestError(ValueError):
    """A tool's request that cannot be carried out (an argument, a path); nothing was written."""


class OutputError(RequestError):
    """An output path that cannot be used: it exists, is inside ``pretrained/``, or lies where nothing can be
    written."""


class ToolFailedError(RuntimeError):
    """A tool's work failed while writing (its output did not pass its check, a full disk); nothing was kept."""


def check_new_output(path: Path, option: str = "--out", make_folder: bool = False) -> None:
    """Refuse ``path`` unless a new file can be made there: no file or folder of that name yet (a tool never
    replaces a file it did not make), not inside ``pretrained/`` (the shipped checkpoints, tracked by git), and an
    existing folder (or, with ``make_folder``, one that can be made: a tool's own default place) where this process
    can write.

    Raises:
        OutputError: naming ``option`` and the path.
    """
    if path.exists() or path.is_symlink():
        raise OutputError(f"{option} {path} exists already; pass a new path (nothing is ever written over a file).")
    if path.resolve().is_relative_to(SHIPPED_CHECKPOINTS):
        raise OutputError(f"{option} {path} is inside {SHIPPED_CHECKPOINTS} (the shipped checkpoints); pass another.")
    if not make_folder and not path.parent.is_dir():
        raise OutputError(f"{option} {path}: the folder {path.parent} does not exist; create it or pass another path.")
    existing = nearest_existing(path.parent)  # the folders the tool would create start below it
    refusal = NotADirectoryError(f"{existing} is not a folder") if not existing.is_dir() else write_refusal(existing)
    if refusal is not None:
        raise OutputError(
            f"{option} {path} cannot be written: {existing} takes no new file ({refusal.strerror or refusal})."
        ) from refusal


def check_checkpoint_path(path: Path) -> None:
    """Refuse ``path`` unless it is a file this process can read: the checks of a checkpoint that need no torch, so
    that a mistyped path is refused before torch is imported (``read_checkpoint`` then reads what it holds).

    Raises:
        RequestError: naming the checkpoint.
    """
    if path.is_dir():
        raise RequestError(f"checkpoint {path} is a folder; pass the path of a .ckpt file.")
    if not path.is_file():
        raise RequestError(f"checkpoint {path} does not exist (pass the path of a .ckpt file).")
    if not os.access(path, os.R_OK):
        raise RequestError(f"checkpoint {path} cannot be read (permission denied).")


def write_new(path: Path, write: Callable[[Path], Any], check: Callable[[Path], Any] | None = None) -> None:
    """Make the new file ``path``: ``write`` writes a temporary file beside it (with its suffix), ``check`` may
    refuse it, and only then is it linked to ``path``, if no file of that name appeared meanwhile (nothing is ever
    replaced). Whatever fails, nothing is left behind.

    Raises:
        OutputError: a file of that name appeared meanwhile.
        ToolFailedError: ``write`` or ``check`` failed (a full disk, a check that did not pass).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(handle)
    temporary = Path(name)
    try:
        try:
            write(temporary)
            if check is not None:
                check(temporary)
            mask = os.umask(0)
            os.umask(mask)
            os.chmod(temporary, 0o666 & ~mask)  # mkstemp makes 0600; the permissions open() would give
        except (ToolFailedError, OutputError):
            raise
        except Exception as error:
            raise ToolFailedError(f"writing {path} failed: {type(error).__name__}: {error}") from error
        try:
            os.link(temporary, path)  # fails if path exists: never over another file
        except FileExistsError:
            raise OutputError(f"{path} appeared while it was being written; nothing was written over it.") from None
    finally:
        temporary.unlink(missing_ok=True)


def run_tool(main: Callable[[], int]) -> int:
    """Run a command's ``main``: a refusal is one line and exit 2, a failure while writing one line and exit 1."""
    try:
        return main()
    except Exception as error:
        return report(error)


@dataclass(frozen=True)
class Checkpointed:
    """A checkpoint's network (``ClassificationModule``, weights loaded, eval mode), its dataset's datamodule
    (constructed only: nothing is read) and the run's config (in today's terms)."""

    module: Any
    datamodule: Any
    cfg: DictConfig


def checkpoint_network(path: Path, data_dir: Path | None = None) -> Checkpointed:
    """The network of the checkpoint at ``path``, rebuilt from the config it stores (``data_dir``: where its
    dataset is, instead of the run's ``dataset.data_dir``).

    Raises:
        CheckpointError: the checkpoint is unreadable, stores no config, or holds another network's tensors.
    """
    from training.build import build_datamodule, build_module
    from training.run.checkpoints import CheckpointError, load_weights, read_checkpoint
    from training.run.compat import upgraded_config

    checkpoint = read_checkpoint(path)
    if "ccnn_config" not in checkpoint:
        raise CheckpointError(f"checkpoint {path} stores no config (ccnn_config); it was not written by main.py.")
    cfg = upgraded_config(checkpoint["ccnn_config"])
    if data_dir is not None:
        cfg.dataset.data_dir = str(data_dir)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule.meta)
    load_weights(module, path)
    return Checkpointed(module.eval(), datamodule, cfg)
