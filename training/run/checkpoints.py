"""Checkpoints that are never half-written, saves that fail in plain words, and loads that say what is wrong.

Two kinds of checkpoint file exist:
- a *training* checkpoint (``<run>/checkpoints/{best,last}.ckpt``): Lightning's full state (weights, optimizer,
  schedule, loops, callbacks incl. the RNG states) plus the run config (``ccnn_config``); it can be resumed;
- a *weights-only* file (the shipped ``pretrained/*/model.ckpt``): ``state_dict`` and ``ccnn_config`` only; it can be
  evaluated or fine-tuned from (``pretrained.*``), not resumed.
"""

from __future__ import annotations

import errno
import io
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

# torch.compile wraps a module as ``_orig_mod``; checkpoints written from a compiled network carry that in every key.
_COMPILED_PREFIX = "_orig_mod."


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated, foreign, for another network, or cannot be saved. The message names
    the file."""


class CheckpointSaveError(CheckpointError):
    """A checkpoint could not be written (disk full, no permission, ...); the previous file at the path is intact."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _save_failure(path: Path, error: OSError) -> CheckpointSaveError:
    causes = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exhausted",
        errno.EFBIG: "the file is larger than this process may write (ulimit -f)",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EROFS: "the file system is read-only",
    }
    cause = causes.get(error.errno or 0, error.strerror or type(error).__name__)
    return CheckpointSaveError(
        f"could not save checkpoint {path}: {cause} ({error.strerror or error}). "
        f"The previous {path.name}, if any, is unchanged; free space or choose another train.output_dir."
    )


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``.

    A kill at any moment leaves either the old file or the new one, never a truncated one; a SIGKILL mid-write leaves
    the temporary behind, which :func:`remove_stale_temporaries` clears before the next run writes there.
    The object is serialised in memory first and written with plain file writes: torch's own writer turns a full disk
    into ``[enforce fail at inline_container.cc] unexpected pos``, losing the operating system's reason, which this
    reports instead (:class:`CheckpointError` naming the path and the cause).
    """
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            handle.write(buffer.getbuffer())
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the permissions open() would
        os.replace(tmp, path)
    except OSError as error:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise _save_failure(path, error) from error
    except BaseException:
        if tmp is not None:
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
    """Lightning checkpoint I/O that writes through :func:`atomic_torch_save` and reads through
    :func:`read_checkpoint`."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict:
        return read_checkpoint(path, map_location=map_location)


def _plain_keys(state: dict[str, Any]) -> dict[str, Any]:
    """State-dict keys without torch.compile's ``_orig_mod.`` wrapper, so compiled and eager checkpoints agree."""
    return {key.replace(_COMPILED_PREFIX, ""): value for key, value in state.items()}


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by this project (training or weights-only), or raise :class:`CheckpointError`
    saying why not. Keys of networks that were compiled with torch.compile are returned in their plain form."""
    path = Path(path)
    if path.is_dir():
        inside = next((c for c in (path / "checkpoints" / "last.ckpt", path / "last.ckpt") if c.is_file()), None)
        example = f", e.g. {inside}" if inside else ""
        raise CheckpointError(f"checkpoint {path} is a folder; pass the path of a .ckpt file{example}.")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (pass the path of a .ckpt file).")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=False)
    except PermissionError as error:
        raise CheckpointError(f"checkpoint {path} cannot be read ({error.strerror}).") from error
    # A zip cut inside a record's data can also fail as OSError (Errno 22, Invalid argument) in torch's reader.
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as error:
        raise CheckpointError(
            f"checkpoint {path} is truncated or not a PyTorch checkpoint ({type(error).__name__}: {error})."
        ) from error
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise CheckpointError(f"checkpoint {path} has no 'state_dict': it was not written by this project's trainer.")
    checkpoint["state_dict"] = _plain_keys(checkpoint["state_dict"])
    return checkpoint


def is_resumable(checkpoint: dict[str, Any]) -> bool:
    """Whether ``checkpoint`` holds the trainer state that resuming needs (not only weights)."""
    return all(key in checkpoint for key in ("pytorch-lightning_version", "optimizer_states", "loops"))


def epochs_done(checkpoint: dict[str, Any]) -> int:
    """Training epochs completed when ``checkpoint`` was written (Lightning stores the 0-based epoch it ended)."""
    return int(checkpoint["epoch"]) + 1


def check_resumable(checkpoint: dict[str, Any], path: str | os.PathLike, epochs: int) -> None:
    """Raise :class:`CheckpointError` unless ``checkpoint`` (read from ``path``) can be resumed to ``epochs``.

    A weights-only file has no trainer state; a checkpoint older than its run's ``last.ckpt`` (``best.ckpt``, say)
    would rewind that run and overwrite its later checkpoints and logs; a run cannot continue to fewer epochs than
    it has trained.
    """
    path = Path(path)
    if not is_resumable(checkpoint):
        raise CheckpointError(
            f"checkpoint {path} holds weights only (no optimizer, schedule or epoch state), so train.resume cannot "
            f"continue it; start from its weights with pretrained.load=True pretrained.filename={path}."
        )
    done = epochs_done(checkpoint)
    last = path.parent / "last.ckpt"
    if path.parent.name == "checkpoints" and path.name != last.name and last.is_file():
        latest = epochs_done(read_checkpoint(last))
        if latest > done:
            raise CheckpointError(
                f"checkpoint {path} ends at epoch {done} but its run went on to epoch {latest} ({last}): resuming from "
                f"it would rewind the run and write over its later checkpoints and logs. Resume with train.resume="
                f"{last}, or start a new run from its weights with pretrained.load=True pretrained.filename={path}."
            )
    if epochs < done:
        raise CheckpointError(
            f"checkpoint {path} has trained {done} epochs, more than train.epochs={epochs}; pass train.epochs={done} "
            "or more (equal: evaluate again without training)."
        )


def load_weights(module: nn.Module, path: str | os.PathLike) -> dict[str, Any]:
    """Load the weights of checkpoint ``path`` into ``module`` strictly; returns the checkpoint.

    Raises:
        CheckpointError: the file's tensors are another network's, or some are not finite.
    """
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
    broken = [k for k, tensor in state.items() if tensor.is_floating_point() and not tensor.isfinite().all()]
    if broken:  # a network of NaNs fails far from its cause (a kernel size of NaN), or predicts one class silently
        raise CheckpointError(
            f"checkpoint {path} holds non-finite weights ({len(broken)} tensors, e.g. {broken[0]}): a run that "
            "diverged saved it; use an earlier checkpoint of that run."
        )
    module.load_state_dict(state)
    return checkpoint
