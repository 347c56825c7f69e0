"""Exponential moving average (EMA) of the weights: ``train.ema=<decay>`` (``null``: off).

Lightning's ``WeightAveraging`` callback keeps the average in a ``torch.optim.swa_utils.AveragedModel`` and updates
it after every optimizer step (an in-place ``lerp_`` of each tensor):
``average <- d * average + (1 - d) * weights``, starting from the weights after the first step. With the warm-up
(``train.ema_warmup``, on by default) the decay grows with the number ``n`` of updates made so far,
``d = min(decay, (1 + n) / (10 + n))`` (0.18 at the second step, 0.5 at the ninth, 0.9 after 80 updates; the rule of
TensorFlow's ``ExponentialMovingAverage(num_updates=...)`` that timm and YOLO-style trainers use), so the average
forgets the random initial weights within tens of steps instead of ``1 / (1 - decay)``; without it ``d = decay``
from the second step (``get_ema_multi_avg_fn``). ``n`` is the average's own count (``n_averaged``), saved in every
checkpoint, so a resumed run continues the same sequence of decays.
Validation inside ``fit`` runs on the average, so ``val/acc``, early stopping and the choice of ``best.ckpt`` follow
the averaged network. Every checkpoint holds the average as its ``state_dict`` (what the final evaluation,
``pretrained.*`` and ``training.predict`` load) and the raw weights as ``current_model_state`` with the average's
update count in ``averaging_state`` (what a resumed run continues from, bit for bit).

BatchNorm: the running mean and variance are averaged with the same decay as the weights (``use_buffers=True``, as
Lightning and timm's ModelEma do), so the averaged network normalises with statistics that moved as slowly as its
weights. Recomputing them for the averaged weights (``swa_utils.update_bn``) would cost a pass over the training data
at every validation; copying the raw network's would pair fast-moving statistics with slow-moving weights.
``num_batches_tracked`` (an integer) is averaged and rounded by torch; BatchNorm reads it only with ``momentum=None``,
which this project never sets.

Three corrections to Lightning 2.6's callback, each shown by a test in tests/test_ema.py that fails once Lightning
behaves:

1. It swaps weights through ``param.data``, which leaves the version counters unchanged, so each mask's host copy of
   its width (``ckconv.mask.GaussianMask.host_copy``, read by the crop rule) still describes the raw width: the
   averaged network would be cropped by the raw masks. The host copies are refreshed after every swap.
2. It swaps the average in at every validation, also in ``trainer.validate`` after ``fit``, where the run evaluates
   its best checkpoint: that evaluation would see the last average instead. Here only validation inside ``fit`` swaps.
3. Its checkpoint ``state_dict`` is the ``AveragedModel``'s, whose copy of the module's state that is neither a
   parameter nor a buffer (the best validation accuracy) stays as it was when training started. Those entries are
   taken from the trained module.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import WeightAveraging
from pytorch_lightning.trainer.states import TrainerFn
from torch import Tensor
from torch.optim.swa_utils import get_ema_multi_avg_fn

from argcheck import OpenFraction, check_arguments
from ckconv.mask import refresh_mask_widths

# Where WeightAveraging puts the raw weights in a checkpoint whose state_dict holds the average.
RAW_WEIGHTS_KEY = "current_model_state"


def warmup_decay(decay: float, updates: Tensor) -> Tensor:
    """The decay of the next update after ``updates`` updates: ``min(decay, (1 + n) / (10 + n))`` (float32, on the
    device of ``updates``, so that no step waits for the device to read it)."""
    n = updates.to(torch.float32)
    return torch.clamp((1 + n) / (10 + n), max=decay)


def warmup_ema_multi_avg_fn(decay: float) -> Callable[[list[Tensor], list[Tensor], Tensor], None]:
    """``get_ema_multi_avg_fn`` with the decay of :func:`warmup_decay`, for ``AveragedModel(multi_avg_fn=...)``."""

    @torch.no_grad()
    def update(averaged: list[Tensor], current: list[Tensor], updates: Tensor) -> None:
        d = warmup_decay(decay, updates)
        if torch.is_floating_point(averaged[0]) or torch.is_complex(averaged[0]):
            weight = (1 - d).to(averaged[0].dtype)
            for average, weights in zip(averaged, current, strict=True):
                average.lerp_(weights, weight)
        else:  # integer buffers (BatchNorm's num_batches_tracked), as torch's own EMA function treats them
            for average, weights in zip(averaged, current, strict=True):
                average.copy_(average * d + weights * (1 - d))

    return update


class EMAWeights(WeightAveraging):
    """Keeps ``average <- d * average + (1 - d) * weights`` after every optimizer step, ``d = decay`` or its
    warm-up (see the module docstring for the warm-up, what uses the average and what a checkpoint holds).

    Args:
        decay: weight of the old average, in (0, 1); the average spans about ``1 / (1 - decay)`` steps.
        warmup: let the decay grow as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates.

    Raises:
        InvalidArgument: ``decay`` outside (0, 1).
    """

    def __init__(self, decay: OpenFraction, warmup: bool = True) -> None:
        check_arguments(EMAWeights.__init__, locals())
        average = warmup_ema_multi_avg_fn if warmup else get_ema_multi_avg_fn
        super().__init__(multi_avg_fn=average(float(decay)))
        self.decay = float(decay)
        self.warmup = bool(warmup)

    @staticmethod
    def _fitting(trainer: pl.Trainer) -> bool:
        return trainer.state.fn == TrainerFn.FITTING

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._fitting(trainer):  # correction 2
            super().on_validation_epoch_start(trainer, pl_module)
            refresh_mask_widths(pl_module)  # correction 1

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._fitting(trainer):
            super().on_validation_epoch_end(trainer, pl_module)
            refresh_mask_widths(pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)  # leaves the average in the module
        refresh_mask_widths(pl_module)

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        raw = checkpoint.get(RAW_WEIGHTS_KEY)
        if raw is None:
            return
        averaged = {name for name, _ in itertools.chain(pl_module.named_parameters(), pl_module.named_buffers())}
        for key in checkpoint["state_dict"]:
            if key not in averaged:  # correction 3
                checkpoint["state_dict"][key] = raw[key]
