"""``python -m training.export``: files that run without the framework and give the checkpoint's logits, and requests
refused before anything is written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models.exporters import relative_difference, run_onnx, run_torchscript
from tests.conftest import REPO, main_env
from training import export as export_module
from training.cli import EXIT_FAILED, EXIT_REFUSED
from training.export import check_inputs, load_checkpoint, main

SHIPPED = REPO / "pretrained" / "mnist1d_ccnn" / "model.ckpt"

# Imports that a deployment without the training stack must not need.
BLOCK_TRAINING_STACK = """
import importlib.abc, sys
BLOCKED = ("lightning", "pytorch_lightning", "lightning_fabric", "hydra", "omegaconf", "torchvision", "torchmetrics")
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"blocked: {name}")
        return None
sys.meta_path.insert(0, Block())
"""


@pytest.fixture(scope="module")
def shipped(data_dir):
    """The shipped checkpoint's network and its MNIST-1D test data (generated once per session)."""
    loaded = load_checkpoint(SHIPPED, data_dir)
    check_inputs(loaded, tuple(loaded.datamodule.meta.size))  # reads the data
    return loaded


def shipped_test_set(loaded) -> tuple[torch.Tensor, torch.Tensor]:
    data = loaded.datamodule.test_set
    pairs = [data[i] for i in range(len(data))]
    return torch.stack([x for x, _ in pairs]), torch.stack([y for _, y in pairs])


def export_shipped(fmt: str, out: Path, data_dir: Path, *extra: str) -> int:
    return main([str(SHIPPED), "--format", fmt, "--out", str(out), "--data-dir", str(data_dir), *extra])


def test_the_shipped_checkpoint_in_onnx_gives_its_test_accuracy_exactly_under_onnx_runtime(shipped, data_dir, tmp_path):
    out = tmp_path / "mnist1d.onnx"
    assert export_shipped("onnx", out, data_dir) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["mnist1d.onnx"]  # no temporary left
    x, y = shipped_test_set(shipped)
    predicted = run_onnx(out, x).argmax(dim=-1)  # all 1,000 in one batch
    with torch.no_grad():
        expected = shipped.net(x).argmax(dim=-1)
    assert torch.equal(predicted, expected)
    recorded = torch.load(SHIPPED, map_location="cpu", weights_only=False)["metrics"]["test/acc"]
    assert (predicted == y).float().mean().item() == pytest.approx(recorded, abs=1e-9)
    assert (predicted == y).sum().item() == 991


@pytest.mark.parametrize(("fmt", "resolution"), [("torchscript", 40), ("pt2", 80), ("safetensors", 40)])
def test_every_format_loads_without_this_code_and_gives_the_networks_logits(shipped, tmp_path, fmt, resolution):
    x = torch.randn(5, 1, resolution)
    out = tmp_path / f"model.{fmt}"
    export_module.export(shipped, fmt, (resolution,), out, check_inputs(shipped, (resolution,)))
    with torch.no_grad():
        expected = shipped.net(x)
        if fmt == "torchscript":
            actual = run_torchscript(out, x)
        elif fmt == "pt2":
            actual = torch.export.load(str(out)).module()(x)
        else:
            from models.portable import load_portable

            actual = load_portable(out)(x)
    assert relative_difference(actual, expected) <= 1e-5


def test_the_safetensors_file_loads_with_torch_models_and_ckconv_alone(shipped, tmp_path):
    out = tmp_path / "model.safetensors"
    export_module.export(shipped, "safetensors", (40,), out, check_inputs(shipped, (40,)))
    x = torch.randn(3, 1, 40)
    torch.save(x, tmp_path / "x.pt")
    script = BLOCK_TRAINING_STACK + (
        "import torch\nfrom models.portable import load_portable\n"
        f"net = load_portable({str(out)!r})\n"
        f"torch.save(net(torch.load({str(tmp_path / 'x.pt')!r})).detach(), {str(tmp_path / 'y.pt')!r})\n"
        "assert not any(name.split('.')[0] in BLOCKED for name in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=main_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with torch.no_grad():
        assert torch.equal(torch.load(tmp_path / "y.pt"), shipped.net(x))


def not_a_checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "notes.ckpt"
    path.write_text("not a checkpoint")
    return path


@pytest.mark.parametrize(
    "request_",
    [
        {"format": "keras"},
        {"resolution": "0"},
        {"resolution": "40x40"},
        {"resolution": "forty"},
        {"resolution": "1"},  # one position: the kernels of 40 taps would keep one, no longer a convolution
        {"checkpoint": "missing"},
        {"checkpoint": "not_a_checkpoint"},
        {"out": "missing_folder"},
        {"out": "existing_file"},
    ],
)
def test_a_bad_export_request_is_refused_in_one_line_before_anything_is_written(request_, data_dir, tmp_path, capsys):
    existing = tmp_path / "existing.onnx"
    existing.write_bytes(b"keep me")
    out = {
        "missing_folder": tmp_path / "nowhere" / "m.onnx",
        "existing_file": existing,
    }.get(request_.get("out"), tmp_path / "m.onnx")
    checkpoint = {
        "missing": tmp_path / "missing.ckpt",
        "not_a_checkpoint": not_a_checkpoint(tmp_path),
    }.get(request_.get("checkpoint"), SHIPPED)
    before = sorted(tmp_path.rglob("*"))
    argv = [str(checkpoint), "--format", request_.get("format", "onnx"), "--out", str(out), "--data-dir", str(data_dir)]
    if "resolution" in request_:
        argv += ["--resolution", request_["resolution"]]
    assert main(argv) == EXIT_REFUSED
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1
    assert sorted(tmp_path.rglob("*")) == before and existing.read_bytes() == b"keep me"


def test_an_export_that_fails_its_check_leaves_no_file(shipped, data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(export_module, "RELATIVE_TOLERANCE", -1.0)  # no file can pass
    assert export_shipped("safetensors", tmp_path / "m.safetensors", data_dir) == EXIT_FAILED
    assert capsys.readouterr().err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
