"""Optimizers from parameter hints, and the original's LnLoss penalty."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from argcheck import (
    InvalidArgument,
    NonNegativeFloat,
    PositiveFloat,
    Probability,
    check_arguments,
    did_you_mean,
)
from ckconv import CKConv, param_groups


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
        weight_decay_type: ``"decoupled"``: the optimizer's own weight decay; ``"ln_loss"``: the original's penalty
            (:func:`ln_penalty`) times ``weight_decay`` in the loss, and no decay in the optimizer.
    """

    name: str = "AdamW"
    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 0.0
    mask_lr_ratio: NonNegativeFloat = 1.0
    momentum: Probability | None = None
    nesterov: bool = False
    weight_decay_type: Literal["decoupled", "ln_loss"] = "decoupled"

    def __post_init__(self) -> None:
        cls = optimizer_class(self.name)
        check_arguments(type(self).__init__, vars(self))
        takes = inspect.signature(cls).parameters
        if self.optimizer_decay > 0 and "weight_decay" not in takes:
            raise InvalidArgument(
                "weight_decay", f"weight_decay must be 0 for torch.optim.{self.name}, which has no weight decay."
            )
        if self.momentum is not None and "momentum" not in takes:
            raise InvalidArgument(
                "momentum",
                f"momentum is not used by torch.optim.{self.name}; leave it unset (None) or choose an "
                "optimizer that takes one (SGD, RMSprop).",
            )
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

    @property
    def optimizer_decay(self) -> float:
        """The optimizer's own weight decay: none with ``ln_loss``, whose decay is a penalty in the loss."""
        return self.weight_decay if self.weight_decay_type == "decoupled" else 0.0

    @property
    def penalty_weight(self) -> float:
        """The weight of :func:`ln_penalty` in the loss (0 unless ``weight_decay_type="ln_loss"``)."""
        return self.weight_decay if self.weight_decay_type == "ln_loss" else 0.0

    def _options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"lr": self.lr}
        if self.momentum is not None:
            options["momentum"] = self.momentum
        if self.nesterov:
            options["nesterov"] = True
        return options

    def build(self, model: nn.Module) -> torch.optim.Optimizer:
        """The optimizer over ``model``'s hint-built parameter groups (see :func:`ckconv.param_groups`).

        Where torch has a fused kernel for the class and for the parameters' device and dtype (Adam, AdamW, SGD and
        Adagrad on CPU; all but Adagrad on CUDA), the optimizer is built with ``fused=True``: one kernel updates
        every tensor, where the default implementation loops over the network's 160-odd small tensors (the default
        network's AdamW step: 2 ms instead of 10 on one CPU thread). It is the same update, rounded differently in
        the last bits. Elsewhere the class's own implementation is used."""
        cls = optimizer_class(self.name)

        def groups() -> list[dict[str, Any]]:  # fresh each time: a constructor fills its groups in
            return param_groups(model, self.lr, self.optimizer_decay, {"mask": self.mask_lr_ratio})

        if "fused" in inspect.signature(cls).parameters:
            try:
                return cls(groups(), **self._options(), fused=True)
            except RuntimeError:  # torch has no fused kernel for these parameters' device or dtype
                pass
        return cls(groups(), **self._options())


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
