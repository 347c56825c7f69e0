"""Where a run writes, as the ``run_folder`` resolver that cfg/config.yaml gives Hydra for its run folder.

Hydra makes the folder and its log; these functions only name it (nothing is created here): a resumed run continues in
its own folder, ``train.output_dir`` is the folder asked for, and otherwise a new ``outputs/<date>/<time>`` that no run
of the same second took (Hydra's own default would give two such runs one folder).
"""

from __future__ import annotations

import time
from pathlib import Path

from omegaconf import OmegaConf

DEFAULT_BASE = "outputs"


def run_folder_of_checkpoint(checkpoint: Path) -> Path | None:
    """``<run>`` for ``<run>/checkpoints/<name>.ckpt``; ``None`` for a file elsewhere."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else None


def default_run_folder(base: Path) -> Path:
    """``<base>/<date>/<time>``, with ``_1``, ``_2``, ... when a run started in the same second took it."""
    stamp = base / time.strftime("%Y-%m-%d") / time.strftime("%H-%M-%S")
    candidate, n = stamp, 0
    while candidate.exists():
        n += 1
        candidate = stamp.with_name(f"{stamp.name}_{n}")
    return candidate


def run_folder(output_dir: str | None, resume: str | None, fallback: str | None = None) -> str:
    """The folder of a run: the run folder of the checkpoint it resumes (``<run>/checkpoints/<name>.ckpt``),
    ``train.output_dir``, else ``fallback`` (a multirun job's number, relative to its sweep folder), else a new
    :func:`default_run_folder` under ``outputs/``. Relative paths are the current folder's (Hydra does not change it).
    """
    if resume:
        own = run_folder_of_checkpoint(Path(resume).expanduser().absolute())
        if own is not None:
            return str(own)
    if output_dir:
        return str(Path(output_dir).expanduser().absolute())
    if fallback is not None:
        return str(fallback)
    return str(default_run_folder(Path(DEFAULT_BASE)))


def register() -> None:
    """Register ``run_folder`` for cfg/config.yaml (once; cached per config, so a run's folder is named once)."""
    if not OmegaConf.has_resolver("run_folder"):
        OmegaConf.register_new_resolver("run_folder", run_folder, use_cache=True)
