"""The LightningModule: settings refused on construction (before a run writes anything), the original's LnLoss
penalty in place of decay, the schedule stepped once per optimizer step of a run, and the best validation accuracy
(a MaxMetric) kept in checkpoints under its old key."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, TensorDataset

from argcheck import InvalidArgument
from models.ccnn import CCNN
from models.module import ClassificationModule
from models.optim import OptimizerSettings
from models.schedule import Constant, Cosine, Plateau
from tests.test_schedule import reference_multiplier


def small_net(num_classes: int = 3) -> CCNN:
    torch.manual_seed(0)
    options = {"kernel_options": {"hidden_channels": 4}}
    return CCNN(1, num_classes, 1, (8,), hidden_channels=4, num_blocks=1, conv_options=options)


def quiet_trainer(tmp_path, epochs: int, callback: pl.Callback) -> pl.Trainer:
    """A CPU trainer that writes nothing (no logger, no checkpoints) and prints nothing."""
    return pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[callback],
        default_root_dir=tmp_path,
    )


def random_data(samples: int) -> TensorDataset:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(samples, 1, 8, generator=generator)
    return TensorDataset(x, torch.randint(0, 3, (samples,), generator=generator))


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"num_classes": 1}, "num_classes"),
        ({"optimizer": {"name": "Adamm"}}, "optimizer.name"),
        ({"optimizer": {"lr": float("nan")}}, "optimizer.lr"),
        ({"optimizer": {"lr": float("inf")}}, "optimizer.lr"),
        ({"optimizer": {"lr": 0}}, "optimizer.lr"),
        ({"optimizer": {"lr": -1.0}}, "optimizer.lr"),
        ({"optimizer": {"weight_decay_type": "l2"}}, "optimizer.weight_decay_type"),
        ({"optimizer": {"betas": (0.9, 0.99)}}, "optimizer.betas"),
        ({"scheduler": {"name": "cosin"}}, "scheduler.name"),
        ({"scheduler": {"name": "plateau", "warmup_epochs": 3}}, "scheduler.warmup_epochs"),
        ({"scheduler": {"name": "cosine", "warmup_epochs": -1}}, "scheduler.warmup_epochs"),
        ({"scheduler": {"name": "multistep", "decay_steps": 0}}, "scheduler.decay_steps"),
        ({"scheduler": {"name": "plateau", "patience": -1}}, "scheduler.patience"),
        ({"scheduler": {"name": "exponential", "factor": 2.0}}, "scheduler.factor"),
        ({"scheduler": {"name": "plateau", "mode": "up"}}, "scheduler.mode"),
        ({"scheduler": {"name": "cosine", "gamma": 0.5}}, "scheduler.gamma"),
        ({"scheduler": {"name": "cosine", "patience": 3}}, "scheduler.patience"),  # a setting a cosine does not read
        ({"scheduler": {"warmup_epochs": -1}}, "scheduler.warmup_epochs"),  # without a name: a constant rate
    ],
)
def test_bad_settings_are_refused_on_construction_naming_their_key(kwargs, argument):
    num_classes = kwargs.pop("num_classes", 3)
    with pytest.raises(InvalidArgument) as info:
        ClassificationModule(small_net(), num_classes, **kwargs)
    assert info.value.argument == argument


def test_settings_objects_are_taken_as_they_are_and_mappings_build_them():
    optimizer = OptimizerSettings("SGD", lr=0.5, weight_decay=0.01)
    schedule = Plateau(patience=2)
    module = ClassificationModule(small_net(), 3, optimizer=optimizer, scheduler=schedule)
    assert module.optimizer_settings is optimizer and module.schedule is schedule
    optimizer_mapping = {"name": "SGD", "lr": 0.5, "weight_decay": 0.01}
    from_mappings = ClassificationModule(
        small_net(), 3, optimizer=optimizer_mapping, scheduler={"name": "plateau", "patience": 2}
    )
    assert (from_mappings.optimizer_settings, from_mappings.schedule) == (optimizer, schedule)
    defaults = ClassificationModule(small_net(), 3)
    assert (defaults.optimizer_settings, defaults.schedule) == (OptimizerSettings(), Constant())


def test_ln_loss_moves_the_decay_from_the_optimizer_into_the_penalty():
    optimizer = {"name": "AdamW", "lr": 0.01, "weight_decay": 0.05}
    decoupled = ClassificationModule(small_net(), 3, optimizer=optimizer)
    ln_loss = ClassificationModule(small_net(), 3, optimizer={**optimizer, "weight_decay_type": "ln_loss"})
    assert (decoupled.penalty_weight, decoupled.optimizer_settings.optimizer_decay) == (0.0, 0.05)
    assert (ln_loss.penalty_weight, ln_loss.optimizer_settings.optimizer_decay) == (0.05, 0.0)
    assert {g["weight_decay"] for g in decoupled.optimizer_settings.build(decoupled.net).param_groups} == {0.0, 0.05}
    assert all(g["weight_decay"] == 0.0 for g in ln_loss.optimizer_settings.build(ln_loss.net).param_groups)


def test_best_val_acc_is_the_running_maximum_saved_under_the_key_best_val_acc():
    module = ClassificationModule(small_net(), 3)
    for acc in (0.5, 0.8, 0.6):
        module.best_val_acc.update(torch.tensor(acc))
    assert module.best_val_acc.compute().item() == pytest.approx(0.8)
    state = module.state_dict()
    assert "best_val_acc" in state and not any(key.startswith("best_val_acc.") for key in state)
    assert state["best_val_acc"].item() == pytest.approx(0.8)

    # A state_dict of the earlier buffer (the shipped checkpoint's format: one 0-dim tensor) loads strictly.
    fresh = ClassificationModule(small_net(), 3)
    fresh.load_state_dict({**state, "best_val_acc": torch.tensor(0.75)})
    assert fresh.best_val_acc.max_value.item() == pytest.approx(0.75)
    fresh.best_val_acc.update(torch.tensor(0.7))
    assert fresh.best_val_acc.compute().item() == pytest.approx(0.75)


class RecordValAcc(pl.Callback):
    def __init__(self) -> None:
        self.val_acc: list[float] = []
        self.best: list[float] = []

    def on_validation_epoch_end(self, trainer, module) -> None:
        if not trainer.sanity_checking:
            self.val_acc.append(trainer.callback_metrics["val/acc"].item())

    def on_train_epoch_end(self, trainer, module) -> None:
        self.best.append(trainer.callback_metrics["val/acc_best"].item())


def test_best_val_acc_of_a_run_survives_its_checkpoint(tmp_path):
    data = random_data(24)
    module = ClassificationModule(small_net(), 3, optimizer={"name": "SGD", "lr": 0.5})
    record = RecordValAcc()
    trainer = quiet_trainer(tmp_path, 4, record)
    trainer.fit(module, DataLoader(data, batch_size=4), DataLoader(data, batch_size=8))
    running_max = [max(record.val_acc[: i + 1]) for i in range(len(record.val_acc))]
    assert record.best == pytest.approx(running_max)
    assert len(set(record.val_acc)) > 1  # the accuracy moved, so the maximum is not just the last value

    trainer.save_checkpoint(tmp_path / "run.ckpt")
    checkpoint = torch.load(tmp_path / "run.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["state_dict"]["best_val_acc"].item() == pytest.approx(max(record.val_acc))
    reloaded = ClassificationModule(small_net(), 3)
    reloaded.load_state_dict(checkpoint["state_dict"])
    assert reloaded.best_val_acc.max_value.item() == pytest.approx(max(record.val_acc))


class RecordRates(pl.Callback):
    def __init__(self) -> None:
        self.rates: list[float] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.rates.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_the_module_steps_the_schedule_once_per_optimizer_step_of_the_run(tmp_path):
    optimizer = {"name": "SGD", "lr": 0.1}
    module = ClassificationModule(small_net(), 3, optimizer=optimizer, scheduler=Cosine(warmup_epochs=1))
    data = random_data(12)
    record = RecordRates()
    trainer = quiet_trainer(tmp_path, 3, record)
    trainer.fit(module, DataLoader(data, batch_size=3), DataLoader(data, batch_size=6))
    per_epoch, total = 4, 12
    expected = [0.1 * reference_multiplier("cosine", s, per_epoch, per_epoch, total) for s in range(total)]
    assert record.rates == pytest.approx(expected, rel=1e-12)
    assert isinstance(trainer.lr_scheduler_configs[0].scheduler, LambdaLR)
