"""Checkpoints that cannot be used are refused naming the file, whatever is wrong with them."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import SHIPPED, compose, run_main, tree
from training.run.checkpoints import CheckpointError, read_checkpoint
from training.run.execute import train


@pytest.mark.parametrize("content", [b"", b"garbage" * 10, None])
def test_truncated_or_foreign_checkpoints_are_refused_naming_the_file(tiny, tmp_path, content):
    path = tmp_path / "model.ckpt"
    if content is None:
        torch.save({"weights": torch.zeros(3)}, path)  # a PyTorch file, not a checkpoint of ours
    else:
        path.write_bytes(content)
    for flag in ("pretrained.filename", "train.resume"):
        extra = ["train.do=False", "pretrained.load=True"] if flag == "pretrained.filename" else []
        with pytest.raises(CheckpointError) as refused:
            train(compose([*tiny, *extra, f"{flag}={path}"]))
        assert str(path) in str(refused.value)
    assert not (tmp_path / "run").exists()


def test_a_missing_checkpoint_is_refused_naming_the_path(tiny, tmp_path):
    missing = tmp_path / "nothing.ckpt"
    with pytest.raises(CheckpointError) as refused:
        train(compose([*tiny, "train.do=False", "pretrained.load=True", f"pretrained.filename={missing}"]))
    assert str(missing) in str(refused.value)


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.53, 0.7, 0.9, 0.99])
def test_a_checkpoint_cut_anywhere_is_refused_as_truncated(tmp_path, fraction):
    # Cut inside a tensor record, torch's zip reader fails with OSError (Errno 22), which escaped as a traceback.
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(SHIPPED.read_bytes()[: int(fraction * SHIPPED.stat().st_size)])
    with pytest.raises(CheckpointError) as refused:
        read_checkpoint(cut)
    assert str(cut) in str(refused.value)


def test_a_checkpoint_whose_state_dict_is_not_a_mapping_is_refused(tmp_path):
    path = tmp_path / "odd.ckpt"
    torch.save({"state_dict": 5}, path)
    with pytest.raises(CheckpointError) as refused:
        read_checkpoint(path)
    assert str(path) in str(refused.value)


def _diverged(tmp_path):
    """The shipped checkpoint with one floating-point tensor of NaNs, as a run that diverged saves it."""
    checkpoint = torch.load(SHIPPED, map_location="cpu", weights_only=False)
    name = next(key for key, value in checkpoint["state_dict"].items() if value.is_floating_point())
    checkpoint["state_dict"][name] = torch.full_like(checkpoint["state_dict"][name], float("nan"))
    broken = tmp_path / "diverged.ckpt"
    torch.save(checkpoint, broken)
    return broken, name


def test_a_checkpoint_with_non_finite_weights_is_refused_for_evaluation_and_nothing_is_written(tmp_path):
    # A run that diverged saves NaN weights; evaluating them made a run folder and then ended in a traceback.
    broken, name = _diverged(tmp_path)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    result = run_main("train.do=False", "pretrained.load=True", f"pretrained.filename={broken}", cwd=cwd)
    assert result.returncode == 2
    [line] = result.error_lines()
    assert str(broken) in line and name in line
    assert tree(cwd) == {}


@pytest.mark.parametrize("tool", ["plot_kernels", "export"])  # predict takes image checkpoints only
def test_every_tool_refuses_non_finite_weights_naming_the_file_and_writes_nothing(tmp_path, tool, capsys, monkeypatch):
    # They crashed deep in the network (a kernel size of NaN), or blamed --resolution.
    import importlib

    broken, name = _diverged(tmp_path)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    argv = {
        "plot_kernels": [str(broken), "--out", "kernels.png"],
        "export": [str(broken), "--format", "safetensors", "--out", "model.safetensors"],
    }[tool]
    assert importlib.import_module(f"training.{tool}").main(argv) == 2
    [line] = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert str(broken) in line and name in line
    assert tree(cwd) == {}


def test_a_run_whose_last_checkpoint_is_not_finite_is_not_resumed(tiny, tmp_path):
    trained = train(compose([*tiny, "train.epochs=2"]))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert trained["test/acc"] >= 0 and last.is_file()
    checkpoint = torch.load(last, map_location="cpu", weights_only=False)
    name = next(key for key, value in checkpoint["state_dict"].items() if value.is_floating_point())
    checkpoint["state_dict"][name] = torch.full_like(checkpoint["state_dict"][name], float("nan"))
    torch.save(checkpoint, last)
    before = tree(tmp_path / "run")
    with pytest.raises(CheckpointError) as refused:
        train(compose([*tiny, "train.epochs=3", f"train.resume={last}"]))
    assert str(last) in str(refused.value) and name in str(refused.value)
    assert tree(tmp_path / "run") == before
