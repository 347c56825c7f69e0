"""What the commands beside ``main.py`` share (``training.predict``, ``training.plot_kernels``): the network of a
checkpoint, rebuilt from the config it stores; outputs that are new files, never another's; one line and an exit
code for whatever stops them, as ``main.py`` does (2: refused, nothing written; 1: failed while writing)."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from training.cli import EXIT_FAILED, EXIT_REFUSED, exit_code, one_line, wants_traceback


class OutputError(ValueError):
    """An output path that cannot be used: it exists, is a folder, or lies where nothing can be written."""


def check_new_output(path: Path, option: str = "--out") -> None:
    """Refuse ``path`` unless a new file can be made there: no file or folder of that name yet (a tool never
    replaces a file it did not make), and a folder (made if missing) where this process can write.

    Raises:
        OutputError: naming ``option`` and the path.
    """
    if path.exists():
        raise OutputError(f"{option} {path} exists already; pass a new path (nothing is ever written over a file).")
    existing = path.parent
    while not existing.exists() and existing != existing.parent:  # the folders the tool would create
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(f"{existing} is not a folder")
        with tempfile.TemporaryFile(dir=existing):  # what the permission bits do not say (read-only mounts, /proc)
            pass
    except OSError as error:
        raise OutputError(f"{option} {path} cannot be written ({error.strerror or error}).") from error


def write_new(path: Path, write: Callable[[Path], Any]) -> None:
    """Make the new file ``path``: ``write`` writes a temporary file beside it, which is then linked to ``path``
    only if no file of that name appeared meanwhile (so nothing is ever replaced), and removed. A failed write
    leaves nothing behind.

    Raises:
        OutputError: a file of that name appeared while writing.
        OSError: the write failed (a full disk, say).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(handle)
    try:
        write(Path(temporary))
        try:
            os.link(temporary, path)  # fails if path exists: never over another file
        except FileExistsError:
            raise OutputError(f"{path} appeared while it was being written; nothing was written over it.") from None
    finally:
        Path(temporary).unlink(missing_ok=True)


def run_tool(main: Callable[[], int]) -> int:
    """Run a command's ``main``; a refusal (the errors of ``training.cli.exit_code`` and :class:`OutputError`) is one
    line and exit 2, a failed write one line and exit 1."""
    try:
        return main()
    except OutputError as error:
        print(one_line(error), file=sys.stderr)
        return EXIT_REFUSED
    except OSError as error:
        if wants_traceback():
            raise
        where = f" {error.filename}" if error.filename else ""
        print(f"error: could not write{where}: {error.strerror or error}.", file=sys.stderr)
        return EXIT_FAILED
    except Exception as error:
        code = exit_code(error)
        if code is None or wants_traceback():
            raise
        print(one_line(error), file=sys.stderr)
        return code


def checkpoint_network(path: Path) -> tuple[Any, Any]:
    """The ``ClassificationModule`` of the checkpoint at ``path`` (its weights loaded, in eval mode) and the
    datamodule of its dataset (constructed only: nothing is read), from the config the checkpoint stores.

    Raises:
        CheckpointError: the checkpoint is unreadable or stores no config.
    """
    from training.build import build_datamodule, build_module
    from training.run.checkpoints import CheckpointError, load_weights, read_checkpoint
    from training.run.compat import upgraded_config

    checkpoint = read_checkpoint(path)
    if "ccnn_config" not in checkpoint:
        raise CheckpointError(f"checkpoint {path} stores no config (ccnn_config); it was not written by main.py.")
    cfg = upgraded_config(checkpoint["ccnn_config"])
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule.meta)
    load_weights(module, path)
    return module.eval(), datamodule
