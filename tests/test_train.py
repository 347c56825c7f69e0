"""End-to-end runs through ``train(cfg)`` and ``main.py``: fit, test-only reload, resume, DDP, multirun, dry run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY, compose, main_py, run_main
from training.run.execute import train


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def accuracy_by_hand(cfg, checkpoint: Path, split: str, autocast: bool = False) -> float:
    """The accuracy of ``checkpoint`` on a split, computed without Lightning: rebuild, load, predict, count."""
    from training.build import build_datamodule, build_module
    from training.run.checkpoints import load_weights

    datamodule = build_datamodule(cfg)
    datamodule.setup()
    module = build_module(cfg, datamodule.meta)
    load_weights(module, checkpoint)
    module.eval()
    correct = total = 0
    loader = getattr(datamodule, f"{split}_dataloader")()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        for x, y in loader:
            correct += int((module(x).argmax(dim=-1) == y).sum())
            total += len(y)
    return correct / total


def final_metrics(stdout: str) -> dict[str, float]:
    """The ``Final: k=v, ...`` line that main.py prints last, as numbers."""
    [line] = [line for line in stdout.splitlines() if line.startswith("Final: ")]
    pairs = line.removeprefix("Final: ").split("  (outputs:")[0].split(", ")
    return {key: float(value) for key, value in (pair.split("=") for pair in pairs)}


def test_fit_then_test_only_reload_gives_the_same_test_accuracy(tiny, tmp_path):
    fitted = train(compose([*tiny, "train.epochs=2", "test.checkpoint=best"]))
    best = Path(fitted["checkpoint"])
    assert best.name == "best.ckpt" and (best.parent / "last.ckpt").is_file()
    assert (tmp_path / "run" / "config.yaml").is_file()
    assert fitted["test/acc"] == pytest.approx(accuracy_by_hand(compose(tiny), best, "test"), abs=1e-6)
    assert fitted["val/acc"] == pytest.approx(fitted["val/acc_best"])
    reloaded = train(
        compose(
            [
                *tiny,
                "train.do=False",
                "pretrained.load=True",
                f"pretrained.filename={best}",
                f"train.output_dir={tmp_path / 'eval'}",
            ]
        )
    )
    assert reloaded["test/acc"] == fitted["test/acc"]
    assert reloaded["val/acc"] == fitted["val/acc"]


def test_best_checkpoint_not_last_is_tested(tiny):
    metrics = train(compose([*tiny, "train.epochs=3", "test.checkpoint=best"]))
    best = torch.load(metrics["checkpoint"], weights_only=False)
    assert best["callbacks"]  # Lightning's state, incl. the checkpoint callback's best score
    score = next(
        v["best_model_score"]
        for k, v in best["callbacks"].items()
        if k.startswith("RunCheckpoint{'monitor': 'val/acc'")
    )
    assert metrics["val/acc"] == pytest.approx(float(score))
    assert metrics["val/acc"] >= metrics["val/acc_last"]


@pytest.mark.parametrize("choice", ["best", "last"])
def test_the_checkpoint_test_checkpoint_names_is_the_one_validated_and_tested(tiny, choice):
    metrics = train(compose([*tiny, "train.epochs=3", f"test.checkpoint={choice}"]))
    evaluated = Path(metrics["checkpoint"])
    assert evaluated.name == f"{choice}.ckpt"
    assert metrics["test/acc"] == pytest.approx(accuracy_by_hand(compose(tiny), evaluated, "test"), abs=1e-6)
    assert metrics["val/acc"] == pytest.approx(accuracy_by_hand(compose(tiny), evaluated, "val"), abs=1e-6)
    if choice == "last":  # the final weights: the last validation of the fit
        assert metrics["val/acc"] == pytest.approx(metrics["val/acc_last"])


def test_resume_continues_from_the_saved_epoch_with_optimizer_state(tiny, tmp_path):
    first = train(compose([*tiny, "train.epochs=1"]))
    last = Path(first["checkpoint"]).parent / "last.ckpt"
    state = torch.load(last, weights_only=False)
    assert state["epoch"] == 0 and state["optimizer_states"] and "rng_states" in state
    resumed = train(compose([*tiny, "train.epochs=2", f"train.resume={last}"]))
    final = torch.load(Path(resumed["checkpoint"]).parent / "last.ckpt", weights_only=False)
    assert final["global_step"] == 2 * state["global_step"]
    epochs = {row["epoch"] for row in read_csv(tmp_path / "run" / "logs" / "metrics.csv") if row["epoch"]}
    assert {"0", "1"} <= epochs  # both epochs logged into the same run directory


def test_dry_run_prints_the_exact_parameter_count_without_data(tmp_path):
    missing = tmp_path / "no_data_here"
    result = run_main(
        "dataset.name=MNIST",
        "dataset.data_type=sequence",
        "net.type=ResNet",
        "net.no_hidden=140",
        "net.no_blocks=4",
        "kernel.type=MAGNet",
        "kernel.omega_0=2976.49",
        "mask.init_value=0.075",
        "conv.type=SeparableFlexConv",
        "conv.causal=True",
        "conv.use_fft=True",
        "optimizer.name=AdamW",
        "optimizer.lr=0.01",
        "scheduler.name=cosine",
        "train.epochs=210",
        "train.batch_size=100",
        "hooks_enabled=False",
        "train.dry_run=True",
        f"dataset.data_dir={missing}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "parameters: 198769" in result.stdout
    assert list(tmp_path.iterdir()) == []  # a dry run writes nothing: no data, no run folder


def test_main_py_trains_and_prints_final_test_accuracy(data_dir, tmp_path):
    flags = [*TINY, f"dataset.data_dir={data_dir}"]
    result = run_main(*flags, f"train.output_dir={tmp_path}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    best = tmp_path / "checkpoints" / "best.ckpt"
    printed = final_metrics(result.stdout)
    assert printed["test/acc"] == pytest.approx(accuracy_by_hand(compose(flags), best, "test"), abs=1e-4)
    assert printed["val/acc"] == pytest.approx(accuracy_by_hand(compose(flags), best, "val"), abs=1e-4)
    assert list((tmp_path / "kernels").glob("epoch_*.png"))
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["test/acc"] == pytest.approx(printed["test/acc"], abs=1e-4) and results["processes"] == 1


@pytest.mark.slow
def test_ddp_with_two_cpu_processes_trains(data_dir, tmp_path):
    result = main_py(
        *TINY,
        "device=cpu",
        "train.distributed=True",
        "train.avail_gpus=2",
        f"dataset.data_dir={data_dir}",
        f"train.output_dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "results.json").read_text())["processes"] == 2
    assert "sync_dist=True" not in result.stderr  # every epoch-level metric is reduced across the processes
    # The two processes each test half of the split (padded to equal halves): the whole split's accuracy, within
    # the one padded example's weight.
    best = tmp_path / "checkpoints" / "best.ckpt"
    by_hand = accuracy_by_hand(compose([*TINY, f"dataset.data_dir={data_dir}"]), best, "test")
    assert final_metrics(result.stdout)["test/acc"] == pytest.approx(by_hand, abs=2 / 1000)


def test_hydra_multirun_writes_separate_outputs(data_dir, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_main("-m", *TINY, "seed=0,1", f"dataset.data_dir={data_dir}", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    for job in ("0", "1"):
        assert (sweep / job / "config.yaml").is_file() and (sweep / job / "main.log").is_file()
        assert (sweep / job / "checkpoints" / "best.ckpt").is_file()
    assert "seed: 1" in (sweep / "1" / "config.yaml").read_text()


def test_mixed_precision_trains_under_bf16_autocast_on_cpu(tiny, tmp_path):
    mixed = train(compose([*tiny, "train.mixed_precision=True"]))
    plain = train(compose([*tiny, f"train.output_dir={tmp_path / 'plain'}"]))
    a = torch.load(mixed["checkpoint"], weights_only=False)["state_dict"]
    b = torch.load(plain["checkpoint"], weights_only=False)["state_dict"]
    assert any(not torch.equal(a[k], b[k]) for k in a)  # bf16 rounding changed the trajectory
    by_hand = accuracy_by_hand(compose(tiny), Path(mixed["checkpoint"]), "test", autocast=True)
    assert mixed["test/acc"] == pytest.approx(by_hand, abs=1e-6)


def test_ln_loss_penalty_is_logged_when_selected(tiny, tmp_path):
    train(compose([*tiny, "optimizer.weight_decay=1e-4", "optimizer.weight_decay_type=ln_loss"]))
    rows = read_csv(tmp_path / "run" / "logs" / "metrics.csv")
    values = [float(r["train/reg_loss"]) for r in rows if r.get("train/reg_loss")]
    assert values and all(v > 0 for v in values)
