"""Which accelerator and numeric precision a run uses, decided (and refused) before anything is written."""

from __future__ import annotations

import torch

from training.config.checks import ConfigError


def select_accelerator(device: str) -> str:
    """Lightning's accelerator name for ``device``: ``auto`` takes a GPU when one is visible.

    Raises:
        ConfigError: ``device=cuda`` (or ``gpu``) on a machine where CUDA sees no device.
    """
    if device == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    if device in ("cuda", "gpu"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device={device} but no CUDA device is visible; use device=cpu or device=auto.", "device"
            )
        return "gpu"
    return "cpu"


def select_precision(mixed_precision: bool, accelerator: str) -> str:
    """``32-true``, or with ``train.mixed_precision``: bf16 autocast where supported (every CPU, recent GPUs), fp16
    with loss scaling on older GPUs. The FFT convolutions run in float32 either way (ckconv.functional)."""
    if not mixed_precision:
        return "32-true"
    if accelerator == "gpu" and not torch.cuda.is_bf16_supported():
        return "16-mixed"
    return "bf16-mixed"
