"""``python -m training.export``: files that run without the framework and give the checkpoint's logits, and requests
refused before anything is written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models.exporters import relative_difference, run_onnx, run_torchscript
from tests.conftest import REPO, main_env, tree
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


def export_command(argv: list[str], capsys) -> tuple[int, list[str]]:
    """``python -m training.export <argv>`` in this process: exit code (a bad command line exits as ``argparse``
    does) and its error lines."""
    try:
        code = main(argv)
    except SystemExit as exited:
        code = exited.code
    return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_a_bad_export_request_is_refused_in_one_line_before_anything_is_written(
    data_dir, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    Path("existing.onnx").write_bytes(b"keep me")
    Path("notes.ckpt").write_text("not a checkpoint")
    Path("adir").mkdir()
    ckpt, data = str(SHIPPED), ["--data-dir", str(data_dir)]
    onnx = [ckpt, "--format", "onnx", "--out", "m.onnx", *data]
    cases = [
        # Refused before torch is imported (they took 6-7 s; see test_refusals_that_need_no_torch_do_not_import_it).
        ([], "checkpoint"),
        ([ckpt, "--out", "m.onnx"], "--format"),
        ([ckpt, "--format", "onnx"], "--out"),
        ([ckpt, "--format", "keras", "--out", "m.keras"], "--format"),
        ([ckpt, "--format", "ONNX", "--out", "m.onnx"], "--format"),
        ([*onnx, "--resolution", "0"], "--resolution"),
        ([*onnx, "--resolution", "-40"], "--resolution"),
        ([*onnx, "--resolution", "forty"], "--resolution"),
        ([*onnx, "--resolution", "40x"], "--resolution"),
        ([*onnx, "--resolution", "2x2x2x2"], "--resolution"),
        ([*onnx, "--res", "40"], "--res"),  # no option is taken from an abbreviation
        ([ckpt, "--format", "onnx", "--out", "existing.onnx", *data], "existing.onnx"),
        ([ckpt, "--format", "onnx", "--out", "nowhere/m.onnx", *data], "nowhere"),
        ([ckpt, "--format", "onnx", "--out", "adir", *data], "adir"),
        ([ckpt, "--format", "onnx", "--out", "/proc/m.onnx", *data], "/proc/m.onnx"),
        ([ckpt, "--format", "onnx", "--out", "m.onnx", "--data-dir", "notes.ckpt"], "--data-dir notes.ckpt"),
        (["missing.ckpt", "--format", "onnx", "--out", "m.onnx", *data], "missing.ckpt"),
        (["adir", "--format", "onnx", "--out", "m.onnx", *data], "checkpoint adir"),
        # Refused once the checkpoint is read.
        (["notes.ckpt", "--format", "onnx", "--out", "m.onnx", *data], "notes.ckpt"),
        ([*onnx, "--resolution", "40x40"], "--resolution 40x40"),  # a 1D network
        ([*onnx, "--resolution", "1"], "--resolution 1"),  # kernels of one tap: no longer a convolution
        # It grew to 22 GB and was killed by the kernel after 98 s; now refused before anything is allocated.
        ([*onnx, "--resolution", "100000000"], "--resolution 100000000"),
    ]
    before = tree(tmp_path)
    for argv, culprit in cases:
        code, errors = export_command(argv, capsys)
        assert code == EXIT_REFUSED, (argv, errors)
        [line] = errors
        assert line.startswith("error: ") and culprit in line, (argv, line)
    assert tree(tmp_path) == before and Path("existing.onnx").read_bytes() == b"keep me"


def test_a_resolution_whose_export_exceeds_the_available_memory_is_refused_with_the_largest_that_fits(
    shipped, data_dir, tmp_path, monkeypatch, capsys
):
    from training.evaluation import memory

    available = 10**9
    monkeypatch.setattr(memory, "host_available", lambda: available)
    for fmt in ("onnx", "safetensors"):  # materialised kernels count for every format but safetensors
        code, errors = export_command(
            [
                str(SHIPPED),
                "--format",
                fmt,
                "--out",
                str(tmp_path / "m"),
                "--resolution",
                "100000",
                "--data-dir",
                str(data_dir),
            ],
            capsys,
        )
        assert code == EXIT_REFUSED
        [line] = errors
        fits = int(line.split("use --resolution ")[1].split()[0])
        need = [export_module.export_memory(shipped, fmt, (n,)).total for n in (fits, fits + 1, 100000)]
        assert need[0] <= available < need[1] and f"{need[2] / 1e9:.1f} GB" in line, line
        assert "1.0 GB available" in line
    assert list(tmp_path.iterdir()) == []
    onnx, safetensors = (export_module.export_memory(shipped, fmt, (4000,)) for fmt in ("onnx", "safetensors"))
    assert onnx.kernels > 0 == safetensors.kernels and onnx.network == safetensors.network


def test_refusals_that_need_no_torch_do_not_import_it(tmp_path):
    # Every refusal of the three tools took 6-7 s: torch and Lightning were imported before the command line was
    # read. One process for all of them: a refusal of each kind, then --help.
    Path(tmp_path / "taken.csv").write_text("x")
    script = f"""
import contextlib, io, sys
from training import export, plot_kernels, predict
ckpt, folder = {str(SHIPPED)!r}, {str(tmp_path)!r}
requests = [
    (predict.main, [ckpt, folder, "--batch-size", "0"]),
    (predict.main, [ckpt, folder, "--out", {str(tmp_path / "taken.csv")!r}]),
    (predict.main, [ckpt, folder + "/missing"]),
    (plot_kernels.main, [ckpt, "--out", "k.txt"]),
    (plot_kernels.main, [folder + "/missing.ckpt", "--out", folder + "/k.png"]),
    (export.main, [ckpt, "--format", "tflite", "--out", "m"]),
    (export.main, [ckpt, "--format", "onnx", "--out", folder + "/m.onnx", "--resolution", "0"]),
    (export.main, [ckpt, "--format", "onnx", "--out", folder + "/nowhere/m.onnx"]),
    (predict.main, ["--help"]),
    (plot_kernels.main, ["--help"]),
    (export.main, ["--help"]),
]
codes = []
for main, argv in requests:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            codes.append(main(argv))
        except SystemExit as exited:
            codes.append(exited.code)
heavy = ("torch", "lightning", "pytorch_lightning", "torchvision", "numpy", "PIL")
print(codes, sorted(name for name in heavy if name in sys.modules))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=main_env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == str([2] * 8 + [0] * 3) + " []", done.stdout


def test_an_export_that_fails_its_check_leaves_no_file(shipped, data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(export_module, "RELATIVE_TOLERANCE", -1.0)  # no file can pass
    assert export_shipped("safetensors", tmp_path / "m.safetensors", data_dir) == EXIT_FAILED
    assert capsys.readouterr().err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_onnx_runtime_telemetry_is_off_before_the_runtime_starts():
    # Its native library sent a usage event to Microsoft some seconds after a session (a run's recorded proxy saw
    # CONNECT mobile.events.data.microsoft.com:443; measured with a 12 s child process: one request before, none
    # after). The variable must be set before the runtime initialises, which the exporters' import does.
    import models.exporters  # noqa: F401  (its import sets it)

    assert os.environ["ORT_DISABLE_TELEMETRY"] == "1"
