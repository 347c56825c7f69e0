"""Learning-rate schedules stepped at every optimizer step: a linear warm-up, then the named decay.

``scheduler.name`` picks a class of :data:`SCHEDULES`; its fields are the settings it reads. With ``w`` warm-up steps,
``E`` steps per epoch and ``T`` steps in all, the learning rate at optimizer step ``s`` (0-based) is ``lr * m(s)`` with
``m(s) = (s + 1) / w`` for ``s < w`` and then, with ``t = s - w``:

- ``cosine``: ``(1 + cos(pi * t / (T - w))) / 2``, from 1 to 0;
- ``multistep``: ``factor ** (t // (decay_steps * E))``, a step every ``decay_steps`` epochs;
- ``exponential``: ``factor ** (t / E)``, the per-epoch factor spread over the epoch's steps;
- ``constant`` (also ``None``, and ``""``: the original's flag value): 1;
- ``plateau``: ``ReduceLROnPlateau`` on the validation accuracy (``mode="max"``) or loss (``"min"``), once per
  epoch; it does not combine with a warm-up.

Every schedule but ``plateau`` is one ``torch.optim.lr_scheduler.LambdaLR`` of its closed form ``m(s)``: the rate at a
step depends on that step and the run's length alone, so a resumed run continues bit for bit, and a run resumed with
more ``train.epochs`` follows the curve of its new length from the step reached (:func:`follow_new_length`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar, Literal

import torch
from torch.optim.lr_scheduler import LambdaLR, ReduceLROnPlateau

from argcheck import Fraction, NonNegativeInt, OpenFraction, PositiveInt, check_arguments


@dataclass(frozen=True)
class Schedule:
    """A warm-up of ``warmup_epochs`` epochs, then :meth:`decay`; :meth:`build` makes the scheduler once the run's
    step counts are known. Settings are checked on construction, so a run refuses bad ones before it starts.

    Args:
        warmup_epochs: epochs of linear warm-up.
    """

    warmup_epochs: NonNegativeInt = 0

    def __post_init__(self) -> None:
        check_arguments(type(self).__init__, vars(self))

    def decay(self, step: int, steps_per_epoch: int, length: int) -> float:
        """The multiplier ``step`` steps after the warm-up, of a decay that lasts ``length`` steps."""
        return 1.0

    def multiplier(self, step: int, steps_per_epoch: int, total_steps: int) -> float:
        """``m(step)`` of the module docstring."""
        warmup = self.warmup_epochs * steps_per_epoch
        if step < warmup:
            return (step + 1) / warmup
        return self.decay(step - warmup, steps_per_epoch, max(1, total_steps - warmup))

    def build(self, optimizer: torch.optim.Optimizer, steps_per_epoch: int, total_steps: int) -> dict[str, Any] | None:
        """Lightning's scheduler entry for ``optimizer`` (each parameter group keeps its ratio), or ``None`` for a
        constant rate without warm-up."""
        if type(self) is Constant and not self.warmup_epochs:
            return None
        curve = partial(self.multiplier, steps_per_epoch=steps_per_epoch, total_steps=total_steps)
        return {"scheduler": LambdaLR(optimizer, curve), "interval": "step"}


@dataclass(frozen=True)
class Constant(Schedule):
    """The learning rate as given (after the warm-up)."""


@dataclass(frozen=True)
class Cosine(Schedule):
    """Half a cosine from 1 to 0 over the steps after the warm-up."""

    def decay(self, step: int, steps_per_epoch: int, length: int) -> float:
        return (1 + math.cos(math.pi * step / length)) / 2


@dataclass(frozen=True)
class MultiStep(Schedule):
    """A factor every ``decay_steps`` epochs.

    Args:
        decay_steps: epochs between two decays.
        factor: multiplier per decay, in (0, 1].
    """

    decay_steps: PositiveInt = 1
    factor: Fraction = 0.1

    def decay(self, step: int, steps_per_epoch: int, length: int) -> float:
        return self.factor ** (step // (self.decay_steps * steps_per_epoch))


@dataclass(frozen=True)
class Exponential(Schedule):
    """A factor per epoch, spread over its steps.

    Args:
        factor: multiplier per epoch, in (0, 1].
    """

    factor: Fraction = 0.1

    def decay(self, step: int, steps_per_epoch: int, length: int) -> float:
        return self.factor ** (step / steps_per_epoch)


@dataclass(frozen=True)
class Plateau(Schedule):
    """``ReduceLROnPlateau``, checked once per epoch.

    Args:
        warmup_epochs: must be 0 (a plateau schedule has no warm-up).
        factor: multiplier on a plateau, in (0, 1).
        patience: epochs without improvement before the rate drops.
        mode: ``"max"`` follows ``val/acc``, ``"min"`` follows ``val/loss``.
    """

    warmup_epochs: Literal[0] = 0  # a plateau schedule has no warm-up
    factor: OpenFraction = 0.1
    patience: NonNegativeInt = 10
    mode: Literal["max", "min"] = "max"
    monitors: ClassVar[dict[str, str]] = {"max": "val/acc", "min": "val/loss"}

    def build(self, optimizer: torch.optim.Optimizer, steps_per_epoch: int, total_steps: int) -> dict[str, Any]:
        plateau = ReduceLROnPlateau(optimizer, mode=self.mode, factor=self.factor, patience=self.patience)
        return {"scheduler": plateau, "monitor": self.monitors[self.mode]}


# Names selectable as scheduler.name.
SCHEDULES: dict[str | None, type[Schedule]] = {
    "cosine": Cosine,
    "multistep": MultiStep,
    "exponential": Exponential,
    "plateau": Plateau,
    "constant": Constant,
    None: Constant,
    "": Constant,
}


def follow_new_length(scheduler: Any) -> tuple[float, float] | None:
    """Set the rates of a :class:`LambdaLR` restored from a checkpoint to those of its own curve at the step
    reached: a run resumed with more epochs built its curve with its new length, while the optimizer's rates are
    those of the old curve. Returns (the first group's rate before, after), or ``None`` when nothing changed (not a
    ``LambdaLR``, or the same curve, as in a resume to the same length)."""
    if not isinstance(scheduler, LambdaLR):
        return None
    groups = scheduler.optimizer.param_groups
    rates = [base * curve(scheduler.last_epoch) for base, curve in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
    before = groups[0]["lr"]
    if all(group["lr"] == rate for group, rate in zip(groups, rates)):
        return None
    for group, rate in zip(groups, rates):
        group["lr"] = rate
    return before, rates[0]
