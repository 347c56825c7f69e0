"""Optimizer hints carried by layers, and the one function that turns them into parameter groups.

A module declares hints for its own parameters in ``optim_hints`` (parameter name -> :class:`OptimHint`). Hints live
on modules rather than on ``Parameter`` objects so that they survive ``deepcopy``, DDP wrapping and reloading.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from torch import nn

# Modules whose parameters never get weight decay: decaying a norm's scale or shift only fights the normalisation.
_NO_DECAY_MODULES = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.RMSNorm,
    nn.Embedding,
)


@dataclass(frozen=True)
class OptimHint:
    """How the optimizer should treat one parameter.

    Attributes:
        group: name of its learning-rate group; the trainer maps group names to learning-rate multipliers
            (e.g. ``"mask"`` -> ``optimizer.mask_lr_ratio``).
        weight_decay: whether decoupled weight decay applies to it.
    """

    group: str = "default"
    weight_decay: bool = True


def parameter_hints(model: nn.Module) -> dict[str, OptimHint]:
    """The hint of every trainable parameter of ``model``, by qualified name.

    Explicit ``optim_hints`` win; otherwise biases, norm parameters and embeddings get no weight decay.
    """
    hints: dict[str, OptimHint] = {}
    for module_name, module in model.named_modules():
        declared: Mapping[str, OptimHint] = getattr(module, "optim_hints", {})
        for param_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            name = f"{module_name}.{param_name}" if module_name else param_name
            if param_name in declared:
                hints[name] = declared[param_name]
            elif isinstance(module, _NO_DECAY_MODULES) or param_name == "bias" or param.dim() <= 1:
                hints[name] = OptimHint(weight_decay=False)
            else:
                hints[name] = OptimHint()
    return hints


def param_groups(
    model: nn.Module, lr: float, weight_decay: float = 0.0, lr_scales: Mapping[str, float] | None = None
) -> list[dict]:
    """Parameter groups for ``torch.optim`` built from :func:`parameter_hints`.

    Args:
        model: the model whose trainable parameters are grouped.
        lr: base learning rate.
        weight_decay: decoupled weight decay for parameters whose hint allows it (0 elsewhere).
        lr_scales: learning-rate multiplier per hint group (missing groups use 1).

    Returns:
        One dict per (group, decay) pair that has parameters, each with ``params``, ``lr``, ``weight_decay``, ``name``
        and ``lr_scale`` keys (the extra keys are ignored by torch optimizers and help schedulers and tests).
    """
    lr_scales = dict(lr_scales or {})
    params = dict(model.named_parameters())
    buckets: dict[tuple[str, bool], list] = {}
    for name, hint in parameter_hints(model).items():
        buckets.setdefault((hint.group, hint.weight_decay), []).append(params[name])
    groups = []
    for (group, decay), members in sorted(buckets.items()):
        scale = lr_scales.get(group, 1.0)
        groups.append(
            {
                "params": members,
                "lr": lr * scale,
                "lr_scale": scale,
                "weight_decay": weight_decay if decay else 0.0,
                "name": f"{group}{'' if decay else '/no_decay'}",
            }
        )
    return groups


def count_parameters(parameters: Iterable[nn.Parameter]) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in parameters if p.requires_grad)
