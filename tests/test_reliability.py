"""Interrupted runs, non-finite losses, determinism and bad paths: no lost work, no silent corruption."""

from __future__ import annotations

import csv
import os
import signal
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from datamodules import DataError
from models.module import ClassificationModule, NonFiniteLossError
from tests.conftest import TINY, compose, run_main, start_main_py
from training.config.checks import ConfigError
from training.run.checkpoints import atomic_torch_save, read_checkpoint
from training.run.execute import RunFailedError, _wandb_run_id, train

# TINY trains on 500 * 0.8 - 100 = 300 MNIST-1D examples in batches of 50.
STEPS_PER_EPOCH = 6
MNIST1D_FREE = [f for f in TINY if not f.startswith("dataset.params.num_samples")]


def epochs_done(checkpoint: Path) -> int:
    """Epochs trained by the time ``checkpoint`` was written (the step count is exact for any save point)."""
    return read_checkpoint(checkpoint)["global_step"] // STEPS_PER_EPOCH


@pytest.mark.slow
def test_sigkill_mid_training_then_resume_reaches_the_same_epoch_count(data_dir, tmp_path):
    run = tmp_path / "run"
    flags = [*TINY, "train.epochs=12", f"dataset.data_dir={data_dir}", f"train.output_dir={run}"]
    last = run / "checkpoints" / "last.ckpt"
    process = start_main_py(*flags)
    deadline = time.monotonic() + 240
    while not last.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # let it run into a later epoch, possibly while a checkpoint is being written
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed; make it longer"

    done_before = epochs_done(last)  # readable: the kill never leaves a truncated checkpoint
    assert done_before < 12
    # A kill during a save may leave the save's temporary file (nothing can delete it then); the resumed run removes
    # it before it writes. Plant one so that this is checked whatever the kill's timing was.
    (run / "checkpoints" / ".last.ckpt.k1ll3d_x.tmp").write_bytes(b"half-written")
    result = run_main(*flags, f"train.resume={last}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert epochs_done(last) == 12
    assert not list((run / "checkpoints").glob("*.tmp"))
    with open(run / "logs" / "metrics.csv", newline="") as file:
        epochs = {int(row["epoch"]) for row in csv.DictReader(file) if row.get("epoch") and row.get("val/acc")}
    assert epochs >= set(range(12)) - {done_before}  # history before the kill kept, later epochs appended


def test_stale_temporaries_of_atomic_saves_are_removed_and_nothing_else(tmp_path):
    from training.run.checkpoints import remove_stale_temporaries

    stale = [tmp_path / ".last.ckpt.ab_cd123.tmp", tmp_path / ".best.ckpt.0123abcd.tmp"]
    kept = [tmp_path / "last.ckpt", tmp_path / "notes.tmp", tmp_path / ".hidden.tmp", tmp_path / ".x.ckpt.short.tmp"]
    for path in stale + kept:
        path.write_bytes(b"x")
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted(stale)
    assert sorted(tmp_path.iterdir()) == sorted(kept)
    assert remove_stale_temporaries(tmp_path / "missing") == []


def test_atomic_save_leaves_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "model.ckpt"
    atomic_torch_save({"state_dict": {"w": torch.ones(2)}}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_torch_save({"state_dict": {}, "bad": Unpicklable()}, path)
    assert torch.equal(read_checkpoint(path)["state_dict"]["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["model.ckpt"]


class NaNNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return self.weight * torch.full((x.shape[0], 3), float("nan"))


def test_non_finite_loss_stops_the_run_naming_the_step_and_the_modules_own_arguments():
    module = ClassificationModule(NaNNet(), num_classes=3)
    batch = (torch.zeros(4, 1, 5), torch.zeros(4, dtype=torch.long))
    with pytest.raises(NonFiniteLossError) as raised:
        module.training_step(batch, 7)
    assert "global step 0" in str(raised.value) and "batch 7" in str(raised.value)  # where
    assert "skip_nonfinite=True" in str(raised.value)  # the way out, in the module's own arguments' names


def test_a_run_whose_loss_diverges_stops_naming_the_flags_that_fix_it(tiny):
    with pytest.raises(NonFiniteLossError) as raised:
        train(compose([*tiny, "optimizer.lr=1e12"]))
    assert all(flag in str(raised.value) for flag in ("optimizer.lr", "train.grad_clip", "train.skip_nonfinite"))


def test_non_finite_loss_can_skip_the_batch_instead(caplog):
    module = ClassificationModule(NaNNet(), num_classes=3, skip_nonfinite=True)
    assert module.training_step((torch.zeros(4, 1, 5), torch.zeros(4, dtype=torch.long)), 0) is None
    assert module.skipped_batches == 1
    assert [r.levelname for r in caplog.records if "Skipping batch: non-finite training loss" in r.getMessage()] == [
        "WARNING"
    ]


def test_deterministic_runs_with_the_same_seed_give_identical_metrics(tiny, tmp_path):
    first = train(compose([*tiny, "deterministic=True", "train.epochs=2", f"train.output_dir={tmp_path / 'a'}"]))
    second = train(compose([*tiny, "deterministic=True", "train.epochs=2", f"train.output_dir={tmp_path / 'b'}"]))
    keys = [k for k in first if k.startswith(("val/", "test/"))]
    assert keys and all(first[k] == second[k] for k in keys)
    a = read_checkpoint(tmp_path / "a" / "checkpoints" / "last.ckpt")["state_dict"]
    b = read_checkpoint(tmp_path / "b" / "checkpoints" / "last.ckpt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_data_dir_that_cannot_be_created_is_refused_naming_it(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError, match=rf"{blocker}/data/MNIST"):
        train(
            compose(
                [
                    *MNIST1D_FREE,
                    "dataset.name=MNIST",
                    f"dataset.data_dir={blocker / 'data'}",  # its parent is a file
                    f"train.output_dir={tmp_path / 'run'}",
                ]
            )
        )
    assert blocker.read_text() == "not a folder"
    assert not (tmp_path / "run").exists()


def test_a_data_dir_that_is_a_file_is_refused_naming_it(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match=rf"dataset.data_dir {blocker}"):
        train(
            compose(
                [
                    *MNIST1D_FREE,
                    "dataset.name=MNIST",
                    f"dataset.data_dir={blocker}",
                    f"train.output_dir={tmp_path / 'run'}",
                ]
            )
        )
    assert blocker.read_text() == "not a folder"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_a_run_that_would_use_no_batch_of_a_split_is_refused_before_anything_is_written(tiny, tmp_path, split):
    # Lightning reads 0 as "skip the split": the run trained nothing, crashed after an epoch, or tested nothing.
    with pytest.raises(ConfigError) as refused:
        train(compose([*tiny, f"train.limit_{split}_batches=0"]))
    assert refused.value.flag == f"train.limit_{split}_batches"
    assert not (tmp_path / "run").exists()


def test_a_run_that_skipped_most_of_its_batches_as_non_finite_fails(tiny, tmp_path):
    with pytest.raises(RunFailedError) as failed:
        train(compose([*tiny, "optimizer.lr=1e30", "train.skip_nonfinite=True"]))
    assert "optimizer.lr" in str(failed.value)
    assert not (tmp_path / "run" / "results.json").exists()


def test_a_run_that_stops_early_says_after_which_epoch_and_why(tiny, tmp_path, caplog):
    # A learning rate that changes nothing: the validation accuracy of epoch 2 does not beat epoch 1's.
    caplog.set_level("INFO")
    results = train(compose([*tiny, "train.epochs=5", "train.max_epochs_no_improvement=1", "optimizer.lr=1e-12"]))
    [line] = [r.getMessage() for r in caplog.records if "train.max_epochs_no_improvement" in r.getMessage()]
    ran = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["epoch"] + 1  # Lightning counts from 0
    assert ran < 5 and f"after epoch {ran}/5" in line
    assert results["test/acc"] >= 0.0


def test_skipped_non_finite_batches_warn_once_and_the_run_counts_them(tiny, tmp_path, caplog):
    from models.module import ClassificationModule

    calls = {"n": 0}
    original = ClassificationModule.loss_and_predictions

    def two_losses_are_nan(self, logits, y):  # a run with a few bad batches (2 of 24), not a diverged one
        loss, predictions = original(self, logits, y)
        calls["n"] += self.training
        return (loss * float("nan") if self.training and calls["n"] in (5, 13) else loss), predictions

    caplog.set_level("INFO")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ClassificationModule, "loss_and_predictions", two_losses_are_nan)
        train(compose([*tiny, "train.skip_nonfinite=True", "train.epochs=2", "train.batch_size=25"]))
    assert len([r for r in caplog.records if "Skipping batch" in r.getMessage()]) == 1
    [count] = [r.getMessage() for r in caplog.records if "training batches as non-finite" in r.getMessage()]
    assert "skipped 2 of its 24 training batches" in count  # the number and the whole


def test_a_kernel_picture_that_cannot_be_written_is_one_warning_and_the_run_finishes(tiny, tmp_path, caplog, recwarn):
    # Where the pictures go is taken by a file, as a full disk would refuse them: the run must not end in a traceback.
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "kernels").write_text("not a folder")
    results = train(compose(tiny))
    # A run logs its warnings (logging.captureWarnings); pytest records them itself once logging's hook is set.
    said = [record.getMessage() for record in caplog.records] + [str(warning.message) for warning in recwarn]
    assert [message for message in said if "kernel picture of epoch 1" in message]
    assert results["test/acc"] >= 0.0
    assert (tmp_path / "run" / "results.json").exists()
    assert (tmp_path / "run" / "kernels").read_text() == "not a folder"


def test_a_resumed_run_keeps_its_wandb_run_id(tmp_path, monkeypatch):
    import re

    import wandb.util

    first = _wandb_run_id(tmp_path)
    assert _wandb_run_id(tmp_path) == first
    assert (tmp_path / "wandb_run_id.txt").read_text() == first
    assert re.fullmatch(r"[a-z0-9]{8}", first)
    (tmp_path / "other").mkdir()
    assert _wandb_run_id(tmp_path / "other") != first
    # Why the id is drawn here: the pinned wandb has no public generator (training.run.execute._wandb_run_id).
    assert not hasattr(wandb.util, "generate_id")
