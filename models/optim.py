"""Optimizers from parameter hints, and the original's LnLoss penalty."""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ckconv import CKConv, param_groups
from ckconv.errors import InvalidArgument, did_you_mean


def _check_number(name: str, value: Any, low: float, low_inclusive: bool, high: float = math.inf) -> None:
    """Raise :class:`InvalidArgument` unless ``value`` is a finite number in ``[low, high)`` or ``(low, high)``."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= low if low_inclusive else value > low) and value < high
    if not ok:
        lower = f"{'>=' if low_inclusive else '>'} {low:g}"
        bounds = lower if high == math.inf else f"{lower} and < {high:g}"
        raise InvalidArgument(name, f"{name} must be a finite number {bounds}, got {value!r}.")


def optimizer_class(name: str) -> type[torch.optim.Optimizer]:
    """The ``torch.optim`` optimizer class called ``name``, or :class:`InvalidArgument` naming ``name``."""
    cls = getattr(torch.optim, name, None) if isinstance(name, str) else None
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)) or cls is torch.optim.Optimizer:
        classes = {key: value for key, value in vars(torch.optim).items() if isinstance(value, type)}
        optimizers = [key for key, value in classes.items() if issubclass(value, torch.optim.Optimizer)]
        hint = did_you_mean(name, [key for key in optimizers if key != "Optimizer"])
        raise InvalidArgument(
            "name", f"name must name a torch.optim optimizer such as 'AdamW' or 'SGD', got {name!r}{hint}."
        )
    return cls


@dataclass(frozen=True)
class OptimizerSettings:
    """Checked optimizer settings; :meth:`build` makes the optimizer for a model.

    Every rule is checked on construction, so a run can refuse bad settings before it starts.

    Args:
        name: a ``torch.optim`` optimizer class name.
        lr: learning rate (finite, > 0).
        weight_decay: decoupled weight decay of the weights (not of norms, biases, embeddings or mask parameters).
        mask_lr_ratio: the mask parameters learn at ``lr * mask_lr_ratio``.
        momentum: for optimizers that take one (SGD, RMSprop); ``None`` keeps the optimizer's default.
        nesterov: Nesterov momentum, for optimizers that take it (SGD); needs ``momentum > 0``.
    """

    name: str = "AdamW"
    lr: float = 1e-3
    weight_decay: float = 0.0
    mask_lr_ratio: float = 1.0
    momentum: float | None = None
    nesterov: bool = False

    def __post_init__(self) -> None:
        cls = optimizer_class(self.name)
        _check_number("lr", self.lr, 0.0, low_inclusive=False)
        _check_number("weight_decay", self.weight_decay, 0.0, low_inclusive=True)
        _check_number("mask_lr_ratio", self.mask_lr_ratio, 0.0, low_inclusive=True)
        takes = inspect.signature(cls).parameters
        if self.weight_decay > 0 and "weight_decay" not in takes:
            raise InvalidArgument(
                "weight_decay", f"weight_decay must be 0 for torch.optim.{self.name}, which has no weight decay."
            )
        if self.momentum is not None:
            if "momentum" not in takes:
                raise InvalidArgument(
                    "momentum",
                    f"momentum is not used by torch.optim.{self.name}; leave it unset (None) or choose an "
                    "optimizer that takes one (SGD, RMSprop).",
                )
            _check_number("momentum", self.momentum, 0.0, low_inclusive=True, high=1.0)
        if self.nesterov:
            if "nesterov" not in takes:
                raise InvalidArgument(
                    "nesterov", f"nesterov=True is not used by torch.optim.{self.name} (SGD takes it)."
                )
            if not self.momentum:
                raise InvalidArgument("nesterov", f"nesterov=True needs momentum > 0, got momentum={self.momentum}.")
        # The optimizer's own checks, which only constructing it and stepping it make (torch.optim.LBFGS takes no
        # parameter groups, SparseAdam no dense gradients): on two one-number groups, before any run starts.
        params = [nn.Parameter(torch.zeros(1)) for _ in range(2)]
        for param in params:
            param.grad = torch.ones(1)
        try:
            cls([{"params": [param]} for param in params], **self._options()).step(lambda: torch.zeros(()))
        except (ValueError, TypeError, RuntimeError) as error:
            raise InvalidArgument(
                "name", f"name={self.name!r} cannot train this model's parameter groups: {error}."
            ) from error

    def _options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"lr": self.lr}
        if self.momentum is not None:
            options["momentum"] = self.momentum
        if self.nesterov:
            options["nesterov"] = True
        return options

    def build(self, model: nn.Module) -> torch.optim.Optimizer:
        """The optimizer over ``model``'s hint-built parameter groups (see :func:`ckconv.param_groups`)."""
        groups = param_groups(model, self.lr, self.weight_decay, {"mask": self.mask_lr_ratio})
        return optimizer_class(self.name)(groups, **self._options())


def build_optimizer(model: nn.Module, name: str = "AdamW", lr: float = 1e-3, **settings: Any) -> torch.optim.Optimizer:
    """Any ``torch.optim`` optimizer over hint-built groups: mask parameters learn at ``lr * mask_lr_ratio``.

    Args:
        model: the model to optimise.
        name: a ``torch.optim`` optimizer class name.
        lr: learning rate.
        **settings: the other fields of :class:`OptimizerSettings` (``weight_decay``, ``mask_lr_ratio``,
            ``momentum``, ``nesterov``).
    """
    return OptimizerSettings(name, lr, **settings).build(model)


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
