"""Learning-rate schedules stepped at every optimizer step: a linear warm-up, then the named decay.

Built from ``torch.optim.lr_scheduler``. With ``w`` warm-up steps, ``E`` steps per epoch and ``T`` steps in all, the
learning rate at optimizer step ``s`` (0-based) is ``lr * m(s)`` with ``m(s) = (s + 1) / w`` for ``s < w`` and then,
with ``t = s - w``:

- ``cosine``: ``(1 + cos(pi * t / (T - w))) / 2``, from 1 to 0 (``CosineAnnealingLR``);
- ``multistep``: ``factor ** (t // (decay_steps * E))``, a step every ``decay_steps`` epochs (``StepLR``);
- ``exponential``: ``factor ** (t / E)``, the per-epoch factor spread over the epoch's steps (``ExponentialLR``);
- ``constant`` (also ``None``, and ``""``: the original's flag value): 1;
- ``plateau``: ``ReduceLROnPlateau`` on the validation accuracy (``mode="max"``) or loss (``"min"``), once per
  epoch; it does not combine with a warm-up.

The schedulers are chainable (each step multiplies the current rate), so a resumed run needs both the optimizer's
and the scheduler's state, which Lightning checkpoints hold. That state includes the cosine's length ``T - w``: a run
resumed with more epochs gets the length of its new ``T`` back from :meth:`ScheduleSettings.fit_length` (restored as
it was, the cosine would reach 0 at the old end and then rise again, as ``CosineAnnealingLR`` is periodic).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    ExponentialLR,
    LinearLR,
    LRScheduler,
    ReduceLROnPlateau,
    SequentialLR,
    StepLR,
)

from ckconv.errors import InvalidArgument, check_choice

CONSTANT = (None, "", "constant")
SCHEDULES = (*CONSTANT, "cosine", "multistep", "exponential", "plateau")
MODES = ("max", "min")


def _check_count(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidArgument(name, f"{name} must be an integer >= {minimum}, got {value!r}.")


@dataclass(frozen=True)
class ScheduleSettings:
    """Checked schedule settings; :meth:`build` makes the scheduler once the run's step counts are known.

    Every rule is checked on construction, so a run can refuse bad settings before it starts.

    Args:
        name: ``"cosine"``, ``"multistep"``, ``"exponential"``, ``"plateau"``, or a constant rate (``"constant"``,
            ``None``, or the original's ``""``).
        warmup_epochs: epochs of linear warm-up (not with ``plateau``).
        decay_steps: ``multistep``: epochs between two decays.
        factor: ``multistep``: multiplier per decay, in (0, 1]; ``exponential``: multiplier per epoch, in (0, 1];
            ``plateau``: multiplier on a plateau, in (0, 1).
        patience: ``plateau``: epochs without improvement before the rate drops.
        mode: ``plateau``: ``"max"`` follows ``val/acc``, ``"min"`` follows ``val/loss``.
    """

    name: str | None = None
    warmup_epochs: int = 0
    decay_steps: int = 1
    factor: float = 0.1
    patience: int = 10
    mode: str = "max"

    def __post_init__(self) -> None:
        check_choice("name", self.name, SCHEDULES)
        _check_count("warmup_epochs", self.warmup_epochs, 0)
        _check_count("decay_steps", self.decay_steps, 1)
        _check_count("patience", self.patience, 0)
        check_choice("mode", self.mode, MODES)
        if self.name == "plateau" and self.warmup_epochs > 0:
            raise InvalidArgument(
                "warmup_epochs",
                f"warmup_epochs must be 0 with name='plateau' (a plateau schedule has no warm-up), "
                f"got {self.warmup_epochs}.",
            )
        if self.name in ("multistep", "exponential", "plateau"):
            factor = self.factor
            below_one = self.name == "plateau"  # ReduceLROnPlateau refuses 1: it could never lower the rate
            ok = isinstance(factor, int | float) and not isinstance(factor, bool) and math.isfinite(factor)
            ok = ok and factor > 0 and (factor < 1 if below_one else factor <= 1)
            if not ok:
                interval = "(0, 1)" if below_one else "(0, 1]"
                raise InvalidArgument(
                    "factor", f"factor must be in {interval} with name={self.name!r}, got {factor!r}."
                )

    def build(self, optimizer: torch.optim.Optimizer, steps_per_epoch: int, total_steps: int) -> dict[str, Any] | None:
        """Lightning's scheduler entry for ``optimizer``, or ``None`` for a constant rate without warm-up.

        Args:
            optimizer: the optimizer whose parameter groups' rates are scheduled (each group keeps its ratio).
            steps_per_epoch: optimizer steps per epoch.
            total_steps: optimizer steps of the whole run.
        """
        if self.name == "plateau":
            plateau = ReduceLROnPlateau(optimizer, mode=self.mode, factor=self.factor, patience=self.patience)
            return {"scheduler": plateau, "monitor": "val/acc" if self.mode == "max" else "val/loss"}
        warmup_steps = self.warmup_epochs * steps_per_epoch
        phases: list[LRScheduler] = []
        if warmup_steps:
            # Factor 1/w at step 0, rising by 1/w per step to 1 at step w - 1.
            phases.append(LinearLR(optimizer, start_factor=1 / warmup_steps, total_iters=warmup_steps - 1))
        decay = self._decay(optimizer, steps_per_epoch, self._decay_length(steps_per_epoch, total_steps))
        if decay is not None:
            phases.append(decay)
        if not phases:
            return None
        schedule = phases[0] if len(phases) == 1 else SequentialLR(optimizer, phases, milestones=[warmup_steps])
        return {"scheduler": schedule, "interval": "step"}

    def fit_length(
        self, scheduler: Any, steps_per_epoch: int, total_steps: int
    ) -> tuple[int, int, float, float] | None:
        """Give a cosine schedule restored from a checkpoint the decay length of a run of ``total_steps`` steps.

        From the step reached on, the rates are those of the schedule that :meth:`build` makes for ``total_steps``:
        the run continues as if it had been started with its new length (the rate jumps to that curve, up from the
        old one's). Nothing changes when the lengths agree, so an interrupted run resumes bit for bit.

        Args:
            scheduler: the scheduler of :meth:`build`'s entry, with the checkpoint's state loaded.
            steps_per_epoch, total_steps: those of the resumed run.

        Returns:
            ``(the checkpoint's length, the new one, the first group's rate before, after)``, or ``None`` when
            nothing changed (not a cosine, or the same length).
        """
        length = self._decay_length(steps_per_epoch, total_steps)
        phases = getattr(scheduler, "_schedulers", [scheduler])  # SequentialLR's: [warm-up, cosine]
        cosine = next((phase for phase in phases if isinstance(phase, CosineAnnealingLR)), None)
        if self.name != "cosine" or cosine is None or cosine.T_max == length:
            return None
        restored, before = cosine.T_max, cosine.optimizer.param_groups[0]["lr"]
        cosine.T_max = length
        in_warmup = len(phases) > 1 and bisect.bisect_right(scheduler._milestones, scheduler.last_epoch) == 0
        if not in_warmup:  # the warm-up hands over to the cosine by its closed form, which reads T_max then
            progress = (1 + math.cos(math.pi * cosine.last_epoch / length)) / 2
            rates = [cosine.eta_min + (base - cosine.eta_min) * progress for base in cosine.base_lrs]
            for group, rate in zip(cosine.optimizer.param_groups, rates):
                group["lr"] = rate
            cosine._last_lr = scheduler._last_lr = rates
        return restored, length, before, cosine.optimizer.param_groups[0]["lr"]

    def _decay_length(self, steps_per_epoch: int, total_steps: int) -> int:
        """Steps of the schedule after the warm-up."""
        return max(1, total_steps - self.warmup_epochs * steps_per_epoch)

    def _decay(self, optimizer: torch.optim.Optimizer, steps_per_epoch: int, length: int) -> LRScheduler | None:
        """The schedule after the warm-up, which lasts ``length`` steps; ``None`` for a constant rate."""
        if self.name == "cosine":
            return CosineAnnealingLR(optimizer, T_max=length)
        if self.name == "multistep":
            return StepLR(optimizer, step_size=self.decay_steps * steps_per_epoch, gamma=self.factor)
        if self.name == "exponential":
            return ExponentialLR(optimizer, gamma=self.factor ** (1 / steps_per_epoch))
        return None
