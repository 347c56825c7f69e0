"""The LightningModule: classification loss, accuracy, optimizer and schedule around any network."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor, nn
from torchmetrics.classification import Accuracy

from ckconv.mask import refresh_mask_widths
from models.optim import build_optimizer, ln_penalty, lr_multiplier

WEIGHT_DECAY_TYPES = ("decoupled", "ln_loss")


class NonFiniteLossError(RuntimeError):
    """Raised when the training loss is NaN or infinite (and skipping such batches is off)."""


class ClassificationModule(pl.LightningModule):
    """Cross-entropy (or, for two classes, binary cross-entropy on one logit) classification.

    Args:
        net: maps a batch ``x`` to logits ``(B, K)`` (or ``(B,)`` for two classes).
        num_classes: number of classes.
        optimizer: keyword arguments of :func:`models.optim.build_optimizer` plus ``weight_decay_type``
            (``"decoupled"``: the optimizer's own weight decay; ``"ln_loss"``: the original's penalty, see
            :func:`models.optim.ln_penalty`).
        scheduler: ``name``, ``warmup_epochs``, ``decay_steps`` (epochs), ``factor``, ``patience``, ``mode``.
        skip_nonfinite: skip batches whose loss is not finite instead of stopping the run.
    """

    def __init__(
        self,
        net: nn.Module,
        num_classes: int,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        skip_nonfinite: bool = False,
    ) -> None:
        super().__init__()
        self.net = net
        self.num_classes = num_classes
        self.optimizer_args = dict(optimizer or {})
        self.weight_decay_type = self.optimizer_args.pop("weight_decay_type", "decoupled")
        if self.weight_decay_type not in WEIGHT_DECAY_TYPES:
            raise ValueError(
                f"optimizer.weight_decay_type must be one of {WEIGHT_DECAY_TYPES}, got {self.weight_decay_type!r}."
            )
        self.scheduler_args = dict(scheduler or {})
        self.skip_nonfinite = skip_nonfinite
        task = "binary" if num_classes == 2 else "multiclass"
        self.train_acc = Accuracy(task=task, num_classes=num_classes)
        self.val_acc = Accuracy(task=task, num_classes=num_classes)
        self.test_acc = Accuracy(task=task, num_classes=num_classes)
        self.register_buffer("best_val_acc", torch.tensor(0.0))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def _loss_and_predictions(self, logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        if self.num_classes == 2:
            return F.binary_cross_entropy_with_logits(logits.float(), y.float()), (logits > 0).long()
        return F.cross_entropy(logits.float(), y), logits.argmax(dim=-1)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # All mask widths changed in the last optimizer step: read them to the host in one transfer, so that the
        # layers' cropping reads no device value inside the step.
        refresh_mask_widths(self.net)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor | None:
        x, y = batch
        loss, predictions = self._loss_and_predictions(self(x), y)
        total = loss
        if self.weight_decay_type == "ln_loss" and self.optimizer_args.get("weight_decay", 0.0) > 0:
            reg = self.optimizer_args["weight_decay"] * ln_penalty(self.net)
            self.log("train/reg_loss", reg, on_step=False, on_epoch=True, sync_dist=True)
            total = loss + reg
        if not torch.isfinite(total):
            message = (
                f"non-finite training loss ({total.item()}) at global step {self.global_step} "
                f"(epoch {self.current_epoch}, batch {batch_idx})"
            )
            if self.skip_nonfinite:
                rank_zero_warn(f"Skipping batch: {message}.")
                return None
            raise NonFiniteLossError(
                f"Stopping: {message}. Lower optimizer.lr, set train.grad_clip, or pass train.skip_nonfinite=True "
                "to skip such batches."
            )
        self.train_acc(predictions, y)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return total

    def _evaluate(self, batch: tuple[Tensor, Tensor], stage: str, metric: Accuracy) -> None:
        x, y = batch
        loss, predictions = self._loss_and_predictions(self(x), y)
        metric(predictions, y)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=stage == "val", sync_dist=True)
        self.log(f"{stage}/acc", metric, on_step=False, on_epoch=True, prog_bar=stage == "val")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_acc)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        acc = self.trainer.callback_metrics.get("val/acc")
        if acc is not None:
            self.best_val_acc = torch.maximum(self.best_val_acc, acc.detach().to(self.best_val_acc))
            self.log("val/acc_best", self.best_val_acc, sync_dist=True)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_acc)

    def configure_optimizers(self) -> Any:
        optimizer_args = dict(self.optimizer_args)
        if self.weight_decay_type == "ln_loss":
            optimizer_args["weight_decay"] = 0.0  # the penalty replaces decay, as in the original
        optimizer = build_optimizer(self.net, **optimizer_args)
        name = self.scheduler_args.get("name", "") or ""
        steps_per_epoch = max(1, math.ceil(self.trainer.estimated_stepping_batches / max(1, self.trainer.max_epochs)))
        warmup_steps = max(0, int(self.scheduler_args.get("warmup_epochs", 0))) * steps_per_epoch
        if name == "plateau":
            if warmup_steps:
                raise ValueError("scheduler.name=plateau does not combine with scheduler.warmup_epochs > 0.")
            mode = self.scheduler_args.get("mode", "max")
            plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer,
                mode=mode,
                factor=self.scheduler_args.get("factor", 0.1),
                patience=self.scheduler_args.get("patience", 10),
            )
            monitor = "val/acc" if mode == "max" else "val/loss"
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": plateau, "monitor": monitor}}
        if name in ("", "none", "constant") and not warmup_steps:
            return optimizer
        multiplier = lr_multiplier(
            name,
            total_steps=int(self.trainer.estimated_stepping_batches),
            warmup_steps=warmup_steps,
            steps_per_epoch=steps_per_epoch,
            decay_epochs=max(1, int(self.scheduler_args.get("decay_steps", 1))),
            factor=self.scheduler_args.get("factor", 0.1),
        )
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
