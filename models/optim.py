"""Optimizers from parameter hints, per-iteration learning-rate schedules, and the original's LnLoss penalty."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ckconv import CKConv, param_groups

SCHEDULERS = ("", "none", "constant", "cosine", "multistep", "exponential", "plateau")


def build_optimizer(
    model: nn.Module,
    name: str = "AdamW",
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    mask_lr_ratio: float = 1.0,
    momentum: float | None = None,
    nesterov: bool = False,
) -> torch.optim.Optimizer:
    """Any ``torch.optim`` optimizer over hint-built groups: mask parameters learn at ``lr * mask_lr_ratio``.

    Decoupled weight decay applies to weights only (not to norms, biases, embeddings or mask parameters).
    """
    cls = getattr(torch.optim, name, None)
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise ValueError(f"optimizer.name must name a torch.optim optimizer such as 'AdamW' or 'SGD', got {name!r}.")
    if lr <= 0:
        raise ValueError(f"optimizer.lr must be positive, got {lr}.")
    groups = param_groups(model, lr, weight_decay, {"mask": mask_lr_ratio})
    kwargs: dict[str, Any] = {"lr": lr}
    if name == "SGD":
        kwargs.update(momentum=momentum if momentum is not None and momentum >= 0 else 0.0, nesterov=nesterov)
    return cls(groups, **kwargs)


def lr_multiplier(
    name: str,
    total_steps: int,
    warmup_steps: int = 0,
    steps_per_epoch: int = 1,
    decay_epochs: int = 1,
    factor: float = 0.1,
) -> Callable[[int], float]:
    """The learning-rate multiplier at optimizer step ``s`` (0-based): linear warm-up, then the named decay.

    - ``cosine``: from 1 to 0 over the steps after warm-up.
    - ``multistep``: times ``factor`` every ``decay_epochs`` epochs.
    - ``exponential``: times ``factor`` per epoch, applied smoothly per step.
    - ``""``/``none``/``constant``: 1 after warm-up.
    """
    if name not in SCHEDULERS or name == "plateau":
        raise ValueError(f"no per-step multiplier for scheduler.name={name!r}.")
    decay_steps = max(1, total_steps - warmup_steps)

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = step - warmup_steps
        if name == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(t, decay_steps) / decay_steps))
        if name == "multistep":
            return factor ** (t // (decay_epochs * steps_per_epoch))
        if name == "exponential":
            return factor ** (t / steps_per_epoch)
        return 1.0

    return multiplier


def ln_penalty(model: nn.Module) -> Tensor:
    """The original's regulariser ("LnLoss"): un-squared L2 norms of all parameters outside the kernel networks,
    plus the L2 norm of every continuous conv's sampled (masked) kernel at its training size.

    The paper's numbers were obtained with this term times ``optimizer.weight_decay`` and an optimizer without decay;
    select it with ``optimizer.weight_decay_type=ln_loss`` to reproduce them.
    """
    terms = [p.norm() for name, p in model.named_parameters() if p.requires_grad and "kernel_net" not in name]
    for layer in model.modules():
        if isinstance(layer, CKConv):
            size = layer.input_size or layer.kernel_size
            terms.append(layer.sample_kernel(size).norm())
    return torch.stack(terms).sum() if terms else torch.zeros(())
