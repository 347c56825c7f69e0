"""The LightningModule: classification loss, accuracy, optimizer and schedule around any network."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities.rank_zero import rank_zero_only
from torch import Tensor, nn
from torchmetrics.aggregation import MaxMetric
from torchmetrics.classification import Accuracy

from argcheck import InvalidArgument, Share, check_arguments, check_choice, prefixed_arguments
from ckconv.functional import InputGrid, resample
from ckconv.mask import refresh_mask_widths
from models.materialize import MaterializedEvaluation
from models.optim import OptimizerSettings, ln_penalty
from models.schedule import SCHEDULES, Schedule, follow_new_length

log = logging.getLogger(__name__)

# The state_dict key of the best validation accuracy: the one checkpoints (the shipped one too) have always used.
BEST_VAL_ACC_KEY = "best_val_acc"


def _settings(cls: type, values: Mapping[str, Any], argument: str) -> Any:
    """``cls(**values)`` with every error named ``<argument>.<key>``; keys that are no field of ``cls`` refused."""
    known = tuple(field.name for field in dataclasses.fields(cls))
    for key in values:
        if key not in known:
            raise InvalidArgument(
                f"{argument}.{key}", f"{argument}.{key} is not a setting of {cls.__name__} (it has {known})."
            )
    with prefixed_arguments(f"{argument}."):
        return cls(**values)


def build_schedule(settings: Mapping[str, Any]) -> Schedule:
    """The schedule of ``settings["name"]`` (:data:`models.schedule.SCHEDULES`) with the other settings.

    Raises:
        InvalidArgument: named ``scheduler.<key>``.
    """
    settings = dict(settings)
    name = settings.pop("name", None)
    check_choice("scheduler.name", name, tuple(SCHEDULES))
    return _settings(SCHEDULES[name], settings, "scheduler")


class NonFiniteLossError(RuntimeError):
    """Raised when the training loss is NaN or infinite (and skipping such batches is off).

    Args:
        where: the loss and where it occurred, e.g. ``non-finite training loss (nan) at global step 3 (...)``.
        fixes: what to change, in the terms of the caller (a config builder names its flags instead).
    """

    DEFAULT_FIXES = (
        "Lower the learning rate (optimizer['lr']), clip the gradients, or pass skip_nonfinite=True to skip such "
        "batches."
    )

    def __init__(self, where: str, fixes: str = DEFAULT_FIXES) -> None:
        super().__init__(f"Stopping: {where}. {fixes}")
        self.where = where

    def __reduce__(self) -> tuple[type[NonFiniteLossError], tuple[str, str]]:
        return type(self), (self.where, str(self).removeprefix(f"Stopping: {self.where}. "))

    def with_fixes(self, fixes: str) -> NonFiniteLossError:
        """The same error with other advice."""
        return NonFiniteLossError(self.where, fixes)


class ClassificationModule(pl.LightningModule):
    """Cross-entropy (or, for two classes, binary cross-entropy on one logit) classification.

    Args:
        net: maps a batch ``x`` to logits ``(B, K)`` (or ``(B,)`` for two classes).
        num_classes: number of classes.
        optimizer: :class:`models.optim.OptimizerSettings`, or a mapping of its fields.
        scheduler: a :class:`models.schedule.Schedule`, or a mapping of ``name`` (a key of
            :data:`models.schedule.SCHEDULES`) and that schedule's fields (``warmup_epochs``, ``decay_steps``
            (epochs), ``factor``, ``patience``, ``mode``: each its own). ``None``: a constant rate.
        skip_nonfinite: skip batches whose loss is not finite instead of stopping the run.
        coarse_batches: the fraction of training batches resampled to half their side (``ckconv.functional.resample``:
            low-passed to that grid's Nyquist frequency), so that the network also learns what a grid of half the
            training side holds: one trained on the full band alone leans on detail that no coarser grid keeps, and
            falls apart there (experiments/README.md).
        input_grid: where the input's samples sit, ``"cells"`` or ``"ends"`` (``ckconv.functional.resample``), for
            ``coarse_batches``.

    Raises:
        InvalidArgument: for any setting the run could not use, before anything runs; the settings of ``optimizer``
            and ``scheduler`` are named ``optimizer.<key>`` and ``scheduler.<key>``.
    """

    def __init__(
        self,
        net: nn.Module,
        num_classes: int,
        optimizer: OptimizerSettings | Mapping[str, Any] | None = None,
        scheduler: Schedule | Mapping[str, Any] | None = None,
        skip_nonfinite: bool = False,
        coarse_batches: Share = 0.0,
        input_grid: InputGrid = "cells",
    ) -> None:
        super().__init__()
        check_arguments(ClassificationModule.__init__, {"coarse_batches": coarse_batches, "input_grid": input_grid})
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise InvalidArgument("num_classes", f"num_classes must be an integer >= 2, got {num_classes!r}.")
        if not isinstance(optimizer, OptimizerSettings):
            optimizer = _settings(OptimizerSettings, optimizer or {}, "optimizer")
        if not isinstance(scheduler, Schedule):
            scheduler = build_schedule(scheduler or {"name": "constant"})
        self.optimizer_settings: OptimizerSettings = optimizer
        # With ln_loss the decay enters the loss as the original's penalty, and the optimizer decays nothing.
        self.penalty_weight = optimizer.penalty_weight
        self.schedule: Schedule = scheduler
        self.net = net
        # Evaluation samples each kernel once per evaluation, not at every batch (the weights do not change during
        # one): through materialised copies of the network, built at the first batch (models.materialize).
        self.evaluation = MaterializedEvaluation(net)
        self.num_classes = num_classes
        self.skip_nonfinite = skip_nonfinite
        self.coarse_batches = coarse_batches
        self.input_grid = input_grid
        # Training batches this process ran, and of them those skipped as non-finite (not saved: a count of this run).
        self.seen_batches = 0
        self.skipped_batches = 0
        task = "binary" if num_classes == 2 else "multiclass"
        self.train_acc = Accuracy(task=task, num_classes=num_classes)
        self.val_acc = Accuracy(task=task, num_classes=num_classes)
        self.test_acc = Accuracy(task=task, num_classes=num_classes)
        # The best validation accuracy so far, saved in checkpoints (a metric state made persistent) under the key
        # that checkpoints have always used, so that older ones, the shipped one among them, load unchanged.
        self.best_val_acc = MaxMetric()
        self.best_val_acc.persistent(True)
        self.register_state_dict_post_hook(_best_val_acc_to_its_key)
        self.register_load_state_dict_pre_hook(_best_val_acc_from_its_key)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def _predicted_classes(self, logits: Tensor) -> Tensor:
        return (logits > 0).long() if self.num_classes == 2 else logits.argmax(dim=-1)

    def loss_and_predictions(self, logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """The loss of ``logits`` against the classes ``y``, and the predicted classes."""
        if self.num_classes == 2:
            return F.binary_cross_entropy_with_logits(logits.float(), y.float()), self._predicted_classes(logits)
        return F.cross_entropy(logits.float(), y), self._predicted_classes(logits)

    def classify(self, logits: Tensor) -> tuple[Tensor, Tensor]:
        """The predicted classes ``(B,)``, by the rule the accuracy uses, and the class probabilities ``(B, K)``:
        softmax, or for two classes ``(1 - p, p)`` with ``p = sigmoid(logit)``."""
        if self.num_classes == 2:
            p = torch.sigmoid(logits.float())
            return self._predicted_classes(logits), torch.stack([1 - p, p], dim=-1)
        return self._predicted_classes(logits), torch.softmax(logits.float(), dim=-1)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # All mask widths changed in the last optimizer step: read them to the host in one transfer, so that the
        # layers' cropping reads no device value inside the step.
        refresh_mask_widths(self.net)

    def coarsened(self, x: Tensor) -> Tensor:
        """``x`` itself, or for a ``coarse_batches`` fraction of the batches ``x`` at half its side."""
        if self.coarse_batches == 0 or torch.rand(()).item() >= self.coarse_batches:
            return x
        return resample(x, [max(2, round(n / 2)) for n in x.shape[2:]], self.input_grid)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor | None:
        self.seen_batches += 1
        x, y = batch
        loss, predictions = self.loss_and_predictions(self(self.coarsened(x)), y)
        total = loss
        if self.penalty_weight > 0:
            reg = self.penalty_weight * ln_penalty(self.net)
            self.log("train/reg_loss", reg, on_step=False, on_epoch=True, sync_dist=True)
            total = loss + reg
        if not torch.isfinite(total):
            message = (
                f"non-finite training loss ({total.item()}) at global step {self.global_step} "
                f"(epoch {self.current_epoch}, batch {batch_idx})"
            )
            if self.skip_nonfinite:
                if not self.skipped_batches:  # one line (a log record: no source line); the run's end counts them
                    rank_zero_only(log.warning)(
                        f"Skipping batch: {message}; later skipped batches are counted, not shown."
                    )
                self.skipped_batches += 1
                return None
            raise NonFiniteLossError(message)
        self.train_acc.update(predictions, y)  # the epoch's accuracy only: no per-batch value is computed
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return total

    def _evaluate(self, batch: tuple[Tensor, Tensor], stage: str, metric: Accuracy) -> dict[str, Tensor]:
        x, y = batch
        # Under mixed precision the network's own forward: its copies compute in float32, other logits than bf16's.
        logits = self(x) if torch.is_autocast_enabled(x.device.type) else self.evaluation(x)
        loss, predictions = self.loss_and_predictions(logits, y)
        metric.update(predictions, y)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=stage == "val", sync_dist=True)
        self.log(f"{stage}/acc", metric, on_step=False, on_epoch=True, prog_bar=stage == "val")
        # Passed to callbacks' on_*_batch_end (training.predictions writes them); Lightning keeps no copy.
        return {"logits": logits.detach(), "predictions": predictions}

    def on_validation_epoch_start(self) -> None:
        self.evaluation.clear()  # the weights changed since the last evaluation (or a weight average is in place)

    def on_test_epoch_start(self) -> None:
        self.evaluation.clear()

    def on_test_epoch_end(self) -> None:
        self.evaluation.clear()  # free the copies

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return self._evaluate(batch, "val", self.val_acc)

    def on_validation_epoch_end(self) -> None:
        self.evaluation.clear()
        if self.trainer.sanity_checking:
            return
        acc = self.trainer.callback_metrics.get("val/acc")
        if acc is not None:
            self.best_val_acc.update(acc.detach())
            self.log("val/acc_best", self.best_val_acc.compute(), sync_dist=True)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return self._evaluate(batch, "test", self.test_acc)

    def _schedule_steps(self) -> tuple[int, int]:
        """(optimizer steps per epoch, in the whole run) of the trainer's run."""
        total_steps = int(self.trainer.estimated_stepping_batches)
        return max(1, math.ceil(total_steps / max(1, self.trainer.max_epochs))), total_steps

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_settings.build(self.net)
        schedule = self.schedule.build(optimizer, *self._schedule_steps())
        return optimizer if schedule is None else {"optimizer": optimizer, "lr_scheduler": schedule}

    def on_train_start(self) -> None:
        # Lightning restores a resumed run's optimizer with the rates of the run that saved it: a run resumed with
        # more train.epochs takes those of its own, longer curve from the step reached (models.schedule).
        for config in self.trainer.lr_scheduler_configs:
            change = follow_new_length(config.scheduler)
            if change is not None and self.trainer.is_global_zero:
                before, after = change
                log.info(
                    f"note: the schedule follows the curve of train.epochs={self.trainer.max_epochs} from step "
                    f"{self.global_step} on, longer than that of the run that saved the checkpoint: the learning "
                    f"rate goes from {before:.4g} to {after:.4g}."
                )


def _best_val_acc_to_its_key(module: nn.Module, state_dict: dict[str, Any], prefix: str, metadata: Any) -> None:
    # MaxMetric saves its state as "<name>.max_value"; keep the one-tensor key "best_val_acc" of the checkpoints.
    state_dict[prefix + BEST_VAL_ACC_KEY] = state_dict.pop(f"{prefix}{BEST_VAL_ACC_KEY}.max_value")


def _best_val_acc_from_its_key(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    if prefix + BEST_VAL_ACC_KEY in state_dict:
        state_dict[f"{prefix}{BEST_VAL_ACC_KEY}.max_value"] = state_dict.pop(prefix + BEST_VAL_ACC_KEY)
