"""EMA of the weights (training/callbacks/ema.py): the average itself, the three places where Lightning's callback
is corrected (each shown wrong without the correction), and runs that validate, save, evaluate and resume it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import WeightAveraging
from pytorch_lightning.trainer.states import TrainerFn
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ckconv.mask import GaussianMask, refresh_mask_widths
from tests.conftest import TINY, compose, run_main, tree
from tests.test_trust import epoch_rows
from training.build import build_datamodule, build_module
from training.callbacks.ema import RAW_WEIGHTS_KEY, EMAWeights
from training.run.checkpoints import CheckpointError, read_checkpoint
from training.run.execute import train


class _Tiny(pl.LightningModule):
    """Linear -> BatchNorm -> Linear, plain SGD: small enough to average by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.5)


class _Snapshots(pl.Callback):
    """The module's floating-point state after every optimizer step, in float64."""

    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        state = pl_module.state_dict()
        self.states.append({k: v.double().clone() for k, v in state.items() if v.is_floating_point()})


def _quiet_trainer(callbacks: list[pl.Callback], epochs: int = 2) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=epochs,
        limit_val_batches=0,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


# The decay of the update after n updates: constant, or growing as min(decay, (1 + n) / (10 + n)). With decay 0.5 the
# warm-up's rule gives 0.18, 0.25, ..., 0.47 over the first 7 updates and is capped at 0.5 from n = 8 on: both parts.
DECAYS = {False: lambda n: 0.5, True: lambda n: min(0.5, (1 + n) / (10 + n))}


@pytest.mark.parametrize("warmup", [False, True], ids=["constant", "warm-up"])
def test_the_average_is_the_hand_computed_ema_of_weights_and_batchnorm_statistics(warmup):
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(64, 3), torch.randint(0, 2, (64,)))
    module, snapshots, decay = _Tiny(), _Snapshots(), DECAYS[warmup]
    _quiet_trainer([snapshots, EMAWeights(0.5, warmup=warmup)]).fit(module, DataLoader(data, batch_size=8))

    assert len(snapshots.states) == 16  # 2 epochs of 8 steps
    expected = dict(snapshots.states[0])  # the average starts from the weights after the first step
    for n, state in enumerate(snapshots.states[1:], start=1):  # n updates were made before this one
        expected = {k: decay(n) * expected[k] + (1 - decay(n)) * state[k] for k in expected}
    averaged = module.state_dict()  # fit ends with the average in the module
    averaged_keys = (
        "0.weight",
        "0.bias",
        "1.weight",
        "1.bias",
        "1.running_mean",
        "1.running_var",
        "2.weight",
        "2.bias",
    )
    assert set(expected) == {f"net.{k}" for k in averaged_keys}
    for key, value in expected.items():
        torch.testing.assert_close(averaged[key].double(), value, rtol=0, atol=1e-6, msg=key)
    raw = snapshots.states[-1]
    assert min((averaged[k].double() - raw[k]).abs().max().item() for k in ("net.0.weight", "net.2.weight")) > 1e-3
    # The other rule's average misses by more than 10 times the tolerance above: the test tells the two apart.
    other = dict(snapshots.states[0])
    for n, state in enumerate(snapshots.states[1:], start=1):
        other = {k: DECAYS[not warmup](n) * other[k] + (1 - DECAYS[not warmup](n)) * state[k] for k in other}
    assert max((averaged[k].double() - other[k]).abs().max().item() for k in other) > 1e-5


def test_the_decay_must_lie_strictly_between_0_and_1():
    for bad in (0.0, 1.0, 1.5, -0.1, True):
        with pytest.raises(ValueError, match=r"^decay"):
            EMAWeights(bad)


# ---------------------------------------------------------------------------------------------------------------
# The corrections to Lightning's WeightAveraging (the module docstring of training/callbacks/ema.py). Each pair of
# tests shows the library's behaviour and the corrected one; when Lightning changes, the first of the pair fails.
# ---------------------------------------------------------------------------------------------------------------
def _ccnn_module() -> pl.LightningModule:
    cfg = compose(TINY)
    return build_module(cfg, build_datamodule(cfg).meta)


def _stage(fn: TrainerFn) -> SimpleNamespace:
    return SimpleNamespace(state=SimpleNamespace(fn=fn))


def _set_up_with_other_raw_mask_widths() -> tuple[EMAWeights, pl.LightningModule, list[GaussianMask]]:
    module, ema = _ccnn_module(), EMAWeights(0.9)
    ema.setup(_stage(TrainerFn.FITTING), module, "fit")  # the average starts as a copy of the module
    masks = [m for m in module.modules() if isinstance(m, GaussianMask)]
    with torch.no_grad():
        for mask in masks:
            mask.width.mul_(3.0)  # the raw widths move away from the average's
    refresh_mask_widths(module)
    return ema, module, masks


def test_lightning_swaps_in_the_average_but_leaves_the_masks_host_copy_of_the_raw_widths():
    ema, module, masks = _set_up_with_other_raw_mask_widths()
    WeightAveraging.on_validation_epoch_start(ema, _stage(TrainerFn.FITTING), module)
    assert all(mask.host_values()[0] != tuple(mask.width.tolist()) for mask in masks)


def test_validation_in_fit_crops_the_averaged_network_with_its_own_mask_widths():
    ema, module, masks = _set_up_with_other_raw_mask_widths()
    raw = [tuple(mask.width.tolist()) for mask in masks]
    ema.on_validation_epoch_start(_stage(TrainerFn.FITTING), module)
    assert all(mask.host_values()[0] == tuple(mask.width.tolist()) != w for mask, w in zip(masks, raw))
    ema.on_validation_epoch_end(_stage(TrainerFn.FITTING), module)
    assert [mask.host_values()[0] for mask in masks] == raw == [tuple(mask.width.tolist()) for mask in masks]


def test_lightning_swaps_in_the_average_in_a_validation_after_fit_too():
    ema, module, _ = _set_up_with_other_raw_mask_widths()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    WeightAveraging.on_validation_epoch_start(ema, _stage(TrainerFn.VALIDATING), module)
    assert any(not torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_a_validation_after_fit_evaluates_the_weights_in_the_module():
    ema, module, _ = _set_up_with_other_raw_mask_widths()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    for stage in (TrainerFn.VALIDATING, TrainerFn.TESTING):
        ema.on_validation_epoch_start(_stage(stage), module)
        assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())


def _checkpoint_after_a_new_best(save) -> tuple[dict, pl.LightningModule]:
    module, ema = _ccnn_module(), EMAWeights(0.9)
    ema.setup(_stage(TrainerFn.FITTING), module, "fit")
    module.best_val_acc.update(torch.tensor(0.75))  # after the average was made: training found a new best
    checkpoint = {"state_dict": module.state_dict()}
    save(ema, _stage(TrainerFn.FITTING), module, checkpoint)
    return checkpoint, module


def test_lightning_saves_the_best_validation_accuracy_of_the_start_of_training():
    checkpoint, _ = _checkpoint_after_a_new_best(WeightAveraging.on_save_checkpoint)
    assert checkpoint["state_dict"]["best_val_acc"].item() == float("-inf")


def test_a_checkpoint_holds_the_average_the_raw_weights_and_the_trained_best_validation_accuracy():
    checkpoint, module = _checkpoint_after_a_new_best(EMAWeights.on_save_checkpoint)
    assert checkpoint["state_dict"]["best_val_acc"].item() == 0.75
    assert checkpoint[RAW_WEIGHTS_KEY]["best_val_acc"].item() == 0.75
    assert checkpoint["state_dict"].keys() == checkpoint[RAW_WEIGHTS_KEY].keys() == module.state_dict().keys()
    assert checkpoint["averaging_state"]["n_averaged"].item() == 0


# ---------------------------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ema_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, float], list[str]]:
    """A 3-epoch run with train.ema=0.9: (run folder, its final metrics, its flags)."""
    root = tmp_path_factory.mktemp("ema")
    flags = [*TINY, "train.epochs=3", "train.ema=0.9", f"dataset.data_dir={root / 'data'}"]
    metrics = train(compose([*flags, f"train.output_dir={root / 'run'}"]))
    return root / "run", metrics, flags


@pytest.mark.slow
def test_validation_in_fit_the_best_checkpoint_and_its_evaluation_all_use_the_average(ema_run, tmp_path):
    run, metrics, flags = ema_run
    best = read_checkpoint(run / "checkpoints" / "best.ckpt")
    weights = [k for k in best["state_dict"] if k.endswith("weight")]
    assert any(not torch.equal(best["state_dict"][k], best[RAW_WEIGHTS_KEY][k]) for k in weights)

    path = run / "checkpoints" / "best.ckpt"
    evaluated = train(
        compose(
            [
                *flags,
                "train.do=False",
                "pretrained.load=True",
                f"pretrained.filename={path}",
                f"train.output_dir={tmp_path / 'eval'}",
            ]
        )
    )
    # The validation loss logged during training for the best epoch is that of the checkpoint's state_dict (the
    # average) evaluated on its own; the run's final test accuracy is the evaluation's.
    rows = epoch_rows(run)
    best_epoch = max(rows, key=lambda epoch: (float(rows[epoch]["val/acc"]), -epoch))
    assert float(rows[best_epoch]["val/loss"]) == pytest.approx(evaluated["val/loss"], rel=1e-6)
    assert metrics["test/acc"] == evaluated["test/acc"] and metrics["val/acc"] == evaluated["val/acc"]


@pytest.mark.slow
def test_resuming_with_another_train_ema_or_warmup_is_refused_naming_both_values_and_changes_nothing(ema_run):
    run, _, flags = ema_run
    last = run / "checkpoints" / "last.ckpt"
    before = tree(run)
    resume = [*flags, "train.epochs=4", f"train.resume={last}"]
    for flag, other in (("train.ema", "null"), ("train.ema", "0.99"), ("train.ema_warmup", "False")):
        with pytest.raises(CheckpointError) as refused:
            train(compose([*resume, f"{flag}={other}"]))  # ema_warmup: the same decay, another sequence of decays
        assert f"{flag}=" in str(refused.value) and "train.ema_warmup=True" not in str(refused.value)
    assert tree(run) == before


def test_a_decay_outside_0_1_is_refused_in_one_line_before_anything_is_written(data_dir, tmp_path):
    flags = [*TINY, f"dataset.data_dir={data_dir}", f"train.output_dir={tmp_path / 'run'}", "train.ema=1.5"]
    result = run_main(*flags, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = result.error_lines()
    assert line.startswith("error: train.ema") and "1.5" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_run_without_ema_cannot_be_resumed_with_it(tiny, tmp_path):
    train(compose(tiny))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    with pytest.raises(CheckpointError, match=r"train\.ema=0\.9"):
        train(compose([*tiny, "train.epochs=2", "train.ema=0.9", f"train.resume={last}"]))
