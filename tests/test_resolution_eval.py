"""``test.resolutions`` (training/evaluation/resolution.py), in process: at the training resolution the new path
computes the normal test's logits bit for bit, other resolutions change them; impossible lists are refused before
anything is written, each naming the flag (and the value at fault)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import models.module
from tests.conftest import TINY, compose, run_main, tree
from training.build import build_datamodule
from training.config.checks import ConfigError
from training.evaluation.resolution import (
    check_resolutions,
    requested_resolutions,
    resolutions_table,
    statistics_at,
)
from training.run.execute import train
from training.run.plan import plan_run


@pytest.fixture
def recorded_logits(monkeypatch):
    """Every test-loop batch's logits, with the trainer that ran the loop: ``[(trainer, logits), ...]``."""
    calls: list[tuple[object, torch.Tensor]] = []
    real = models.module.ClassificationModule.loss_and_predictions

    def recording(self, logits, y):
        if self.trainer.testing:
            calls.append((self.trainer, logits.detach().clone()))
        return real(self, logits, y)

    monkeypatch.setattr(models.module.ClassificationModule, "loss_and_predictions", recording)
    return calls


def test_at_the_training_resolution_the_new_path_gives_the_normal_tests_logits_bit_for_bit(
    data_dir, tmp_path, recorded_logits
):
    flags = [*TINY, f"dataset.data_dir={data_dir}", f"train.output_dir={tmp_path / 'run'}"]
    metrics = train(compose([*flags, "test.resolutions=[40,80]"]))
    trainers = list(dict.fromkeys(trainer for trainer, _ in recorded_logits))
    assert len(trainers) == 2  # the run's trainer (its test), then the evaluation trainer (both resolutions)
    normal = [logits for trainer, logits in recorded_logits if trainer is trainers[0]]
    resampled = [logits for trainer, logits in recorded_logits if trainer is trainers[1]]
    assert len(resampled) == 2 * len(normal)  # 40 then 80, the same batches
    at_40, at_80 = resampled[: len(normal)], resampled[len(normal) :]
    assert all(torch.equal(a, b) for a, b in zip(normal, at_40))
    assert not any(torch.equal(a, b) for a, b in zip(normal, at_80))
    assert metrics["test@40/acc"] == metrics["test/acc"] and metrics["test@40/loss"] == metrics["test/loss"]
    with open(tmp_path / "run" / "resolutions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["resolution"], r["trained_at"]) for r in rows] == [("40", "40"), ("80", "40")]
    assert float(rows[0]["test_acc"]) == metrics["test/acc"] and float(rows[1]["test_loss"]) == metrics["test@80/loss"]


def test_without_the_flag_nothing_else_is_evaluated(data_dir, tmp_path, recorded_logits):
    flags = [*TINY, f"dataset.data_dir={data_dir}", f"train.output_dir={tmp_path / 'run'}"]
    metrics = train(compose(flags))
    assert len({id(trainer) for trainer, _ in recorded_logits}) == 1
    assert not any(key.startswith("test@") for key in metrics)
    assert not (tmp_path / "run" / "resolutions.csv").exists()


def test_other_resolutions_are_tested_with_batchnorm_statistics_from_their_own_grid_and_the_weights_are_kept(
    data_dir, tmp_path
):
    flags = [*TINY, f"dataset.data_dir={data_dir}", "test.resolutions=[20,40,80]"]
    recomputed = train(compose([*flags, f"train.output_dir={tmp_path / 'recomputed'}"]))
    kept = train(compose([*flags, "test.update_bn=False", f"train.output_dir={tmp_path / 'kept'}"]))
    assert recomputed["test@40/acc"] == kept["test@40/acc"] and recomputed["test@40/loss"] == kept["test@40/loss"]
    assert recomputed["test@20/loss"] != kept["test@20/loss"] and recomputed["test@80/loss"] != kept["test@80/loss"]
    assert recomputed["test/loss"] == kept["test/loss"]  # the same training: only the other grids' statistics differ


class TrainingSplit:
    """The part of a datamodule :func:`statistics_at` uses: its training batches, ``(x, y)``."""

    def __init__(self, x: torch.Tensor, batch_size: int) -> None:
        self.dataset = torch.utils.data.TensorDataset(x, torch.zeros(len(x), dtype=torch.long))
        self.batch_size = batch_size

    def prepare_data(self) -> None:
        pass

    def setup(self, stage: str | None = None) -> None:
        pass

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(self.dataset, batch_size=self.batch_size)


def small_batchnorm_net() -> torch.nn.Sequential:
    torch.manual_seed(3)
    net = torch.nn.Sequential(
        torch.nn.Conv1d(2, 3, 3, padding=1),
        torch.nn.BatchNorm1d(3),
        torch.nn.GELU(),
        torch.nn.Dropout(0.5),
        torch.nn.Conv1d(3, 4, 1),
        torch.nn.BatchNorm1d(4),
    ).double()
    with torch.no_grad():  # training statistics far from the data's, so that a recomputation shows
        for layer in (net[1], net[5]):
            layer.running_mean.uniform_(-5, 5)
            layer.running_var.uniform_(5, 9)
    return net.eval()


@pytest.mark.parametrize(("limit", "used"), [(1.0, 5), (3, 3), (0.5, 2), (0.01, 1), (7, 5)])
def test_the_statistics_are_those_of_the_training_batches_the_limit_allows_and_everything_is_put_back(limit, used):
    net = small_batchnorm_net()
    x = torch.randn(40, 2, 11, dtype=torch.float64) * 3 + 1
    split = TrainingSplit(x, batch_size=8)  # 5 batches
    cfg = OmegaConf.create({"seed": 0, "train": {"limit_train_batches": limit}})
    before = {name: tensor.clone() for name, tensor in net.state_dict().items()}
    rng = torch.get_rng_state()
    with statistics_at(cfg, net, split, torch.device("cpu")):  # type: ignore[arg-type]
        # BatchNorm's cumulative average: the mean over batches of each batch's mean and unbiased variance
        features = [net[0](batch) for batch in x[: 8 * used].split(8)]
        means = torch.stack([f.mean(dim=(0, 2)) for f in features]).mean(0)
        variances = torch.stack([f.var(dim=(0, 2), unbiased=True) for f in features]).mean(0)
        torch.testing.assert_close(net[1].running_mean, means, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(net[1].running_var, variances, rtol=1e-12, atol=1e-12)
        assert int(net[1].num_batches_tracked) == used
        inside = {name: tensor.clone() for name, tensor in net.state_dict().items()}
        assert not net.training  # tested in evaluation mode
    assert torch.equal(torch.get_rng_state(), rng)  # the run's own random stream is where it was
    assert all(torch.equal(tensor, before[name]) for name, tensor in net.state_dict().items())
    with statistics_at(cfg, net, split, torch.device("cpu")):  # type: ignore[arg-type]
        # the dropout before the second BatchNorm draws from the run's seed: the same statistics again
        assert all(torch.equal(tensor, inside[name]) for name, tensor in net.state_dict().items())


def test_the_training_statistics_are_put_back_when_the_evaluation_fails():
    net = small_batchnorm_net()
    before = {name: tensor.clone() for name, tensor in net.state_dict().items()}
    cfg = OmegaConf.create({"seed": 0, "train": {"limit_train_batches": 1.0}})
    split = TrainingSplit(torch.randn(16, 2, 5, dtype=torch.float64), batch_size=4)
    with pytest.raises(KeyboardInterrupt), statistics_at(cfg, net, split, torch.device("cpu")):  # type: ignore[arg-type]
        assert not torch.equal(net[1].running_mean, before["1.running_mean"])
        raise KeyboardInterrupt
    assert all(torch.equal(tensor, before[name]) for name, tensor in net.state_dict().items())


# ---------------------------------------------------------------------------------------------- the list
@pytest.mark.parametrize("value", ["[]", "[20,0]", "[-40]", "[true]", "[20.5]", "[a]", "40", "[20,40,20]"])
def test_a_list_that_is_not_distinct_positive_integers_is_refused_naming_the_flag(value, tmp_path):
    result = run_main(f"test.resolutions={value}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    [line] = result.error_lines()
    assert line.startswith("error: ") and "test.resolutions" in line, line
    assert "test.resolutions[" not in line  # the flag, not an item of its list
    assert tree(tmp_path) == {}


def test_null_means_off_and_a_list_is_taken_in_order():
    assert requested_resolutions(compose([])) is None
    assert requested_resolutions(compose(["test.resolutions=[160,20,40]"])) == [160, 20, 40]


# ---------------------------------------------------------------------------------------------- refusals
def refusal(flags: list[str], tmp_path: Path) -> str:
    """The message of the ConfigError ``plan_run`` raises for ``flags``; the folders it was given stay empty."""
    cfg = compose([*flags, f"dataset.data_dir={tmp_path / 'data'}", f"train.output_dir={tmp_path / 'run'}"])
    with pytest.raises(ConfigError) as error:
        plan_run(cfg, tmp_path / "run")
    assert tree(tmp_path) == {}
    return str(error.value)


def test_flattened_images_are_refused_naming_the_flag(tmp_path):
    message = refusal(["dataset.name=MNIST", "dataset.data_type=sequence", "test.resolutions=[14,28]"], tmp_path)
    assert "test.resolutions" in message and "sequence" in message  # the data type that loses the geometry


def test_datasets_without_a_resolution_are_refused(tmp_path):
    message = refusal(["dataset.name=ListOps", "test.resolutions=[1024]"], tmp_path)
    assert "test.resolutions" in message and "dataset.name=ListOps" in message


def test_a_resolution_the_dataset_does_not_hold_is_refused_by_the_dataset(tmp_path):
    message = refusal(["dataset.name=PathFinder", "test.resolutions=[32,48]"], tmp_path)
    assert "test.resolutions: 48" in message  # 32 is one of the release's sides; 48 is not


def test_a_side_below_what_the_pools_need_is_refused(tmp_path):
    pools = ["net.no_blocks=3", "net.downsampling=[0,1,2]", "dataset.name=CIFAR10"]
    message = refusal([*pools, "test.resolutions=[32,7]"], tmp_path)
    assert "test.resolutions: 7" in message and "net.downsampling" in message
    assert "at least 8" in message  # three pools of 2 need 2**3 positions


def test_the_training_size_is_checked_against_the_pools_too(tmp_path):
    message = refusal(["dataset.params.seq_length=3", "net.downsampling=[0,1,2]", "net.no_blocks=3"], tmp_path)
    assert "dataset.params.seq_length=3" in message and "net.downsampling" in message


@pytest.mark.parametrize(
    ("flags", "value"),
    [
        (["dataset.name=CIFAR10"], 100000),  # once trained, then a 132-line traceback
        (["experiment=sc_raw/ccnn_4_140"], 100000000),  # once trained, then killed for memory while evaluating
    ],
)
def test_a_resolution_beyond_the_machines_memory_is_refused_before_the_data_is_looked_for(tmp_path, flags, value):
    message = refusal([*flags, "net.no_hidden=8", "net.no_blocks=1", f"test.resolutions=[{value}]"], tmp_path)
    assert f"test.resolutions: {value}" in message and "MemAvailable" in message


def test_a_side_the_pools_can_reduce_passes():
    cfg = compose(["net.no_blocks=3", "net.downsampling=[0,1,2]", "dataset.name=CIFAR10", "test.resolutions=[8,64]"])
    check_resolutions(cfg, build_datamodule(cfg))


def test_the_table_gives_each_resolution_in_percent_and_marks_the_training_one():
    table = resolutions_table("seq_length", 40, [(20, 0.5, 1.25), (40, 0.9875, 0.05)])
    header, _, *rows = table.splitlines()
    assert "dataset.params.seq_length" in header and "40" in header
    assert [row.split()[:3] for row in rows] == [["20", "50.00", "1.2500"], ["40", "98.75", "0.0500"]]
    assert [len(row.split()) > 3 for row in rows] == [False, True]  # the training resolution's row is marked
