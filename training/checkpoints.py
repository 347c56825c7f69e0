"""Checkpoints that are never half-written, and loads that say what is wrong with a file."""

from __future__ import annotations

import os
import pickle
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from torch import nn


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated, foreign, or for another architecture. The message names the file."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``.

    A kill at any moment leaves either the old file or the new one, never a truncated one; a SIGKILL mid-write leaves
    the temporary behind, which :func:`remove_stale_temporaries` clears before the next run writes there.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the permissions open() would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# atomic_torch_save's temporaries: mkstemp(prefix=".<name>.", suffix=".tmp") puts 8 characters of [a-z0-9_] between.
_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete what :func:`atomic_torch_save` leaves in ``folder`` when its process is killed mid-write.

    A SIGKILL (or power loss) between ``mkstemp`` and ``os.replace`` leaves a ``.<name>.<random>.tmp`` file: the
    checkpoint itself is intact (old or new), the temporary is garbage. A run calls this on its checkpoint folder
    before it writes there. Only names of that pattern are touched. Returns the files removed.
    """
    removed = []
    for candidate in Path(folder).glob(".*.tmp"):
        if _TEMPORARY.match(candidate.name) and candidate.is_file():
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O that writes through :func:`atomic_torch_save`."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict:
        return read_checkpoint(path, map_location=map_location)


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a Lightning checkpoint written by this project, or raise :class:`CheckpointError` saying why not."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (pass the path of a .ckpt file).")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as error:
        raise CheckpointError(
            f"checkpoint {path} is truncated or not a PyTorch checkpoint ({type(error).__name__}: {error})."
        ) from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"checkpoint {path} has no 'state_dict': it was not written by this project's trainer.")
    return checkpoint


def load_weights(module: nn.Module, path: str | os.PathLike) -> dict[str, Any]:
    """Load the weights of checkpoint ``path`` into ``module`` strictly; returns the checkpoint."""
    checkpoint = read_checkpoint(path)
    state = checkpoint["state_dict"]
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        details = []
        if missing:
            details.append(f"missing {len(missing)} tensors (e.g. {missing[:3]})")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[:3]})")
        if wrong:
            k = wrong[0]
            details.append(
                f"{len(wrong)} shape mismatches (e.g. {k}: file {tuple(state[k].shape)}, model {tuple(own[k].shape)})"
            )
        raise CheckpointError(
            f"checkpoint {path} is for a different architecture: {'; '.join(details)}. Use the same net.*, "
            "kernel.*, conv.*, mask.* and dataset.* flags as the run that wrote it (see its config.yaml)."
        )
    module.load_state_dict(state)
    return checkpoint


def export_weights(source: str | os.PathLike, destination: str | os.PathLike, metrics: dict[str, float]) -> Path:
    """Write a small checkpoint with only the weights, the run config and ``metrics`` (no optimizer state).

    It loads with ``pretrained.filename`` like a full checkpoint; it cannot be resumed from.
    """
    checkpoint = read_checkpoint(source)
    slim = {
        "state_dict": checkpoint["state_dict"],
        "ccnn_config": checkpoint.get("ccnn_config"),
        "metrics": dict(metrics),
        "source": Path(source).name,
    }
    atomic_torch_save(slim, destination)
    return Path(destination)
