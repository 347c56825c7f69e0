"""Writers and readers of a materialised CCNN in the formats that run without this framework (torch only).

Each format has a writer ``(net, input_size, path) -> None``, which materialises the network at that input size
(``models.materialize``) and writes it, and a runner ``(path, x) -> logits``, which loads the file as a user would
(ONNX Runtime for ONNX, ``torch.jit.load``, ``torch.export.load``) and runs it. ``python -m training.export``
writes with the one and checks with the other before it keeps a file; ``bench.latency`` times the runners.

- ``onnx``: ``torch.onnx.export`` (the ``torch.export``-based exporter, which needs ``onnxscript``) of the network
  with direct convolutions (ONNX has no complex FFT); input ``input``, output ``logits``, any batch size.
- ``torchscript``: ``torch.jit.trace`` of the network with FFT or direct convolutions as its layers choose
  (TorchScript is deprecated in recent torch; ``pt2`` is its successor).
- ``pt2``: ``torch.export.export`` of the same, any batch size; ``torch.export.load(path).module()`` runs it.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from models.ccnn import CCNN
from models.materialize import example_input, materialize

# ONNX Runtime's native library (1.29 and later, here 1.32) sends usage events to Microsoft from a background thread,
# on Linux too, unless this is set before the runtime initialises (its public API call that disables events does not
# stop the first upload). A research tool must not phone home; a user who wants the events sets the variable to 0.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__all__ = [
    "RUNNERS",
    "WRITERS",
    "relative_difference",
    "run_onnx",
    "run_pt2",
    "run_torchscript",
    "write_onnx",
    "write_pt2",
    "write_torchscript",
]


def relative_difference(actual: Tensor, expected: Tensor) -> float:
    """The largest difference, relative to the largest expected value."""
    return ((actual.float() - expected.float()).abs().max() / expected.float().abs().max().clamp_min(1e-30)).item()


def _batch_dim() -> dict[int, Any]:
    """The batch axis left free in exported programs: one file serves batch 1 and batch 64 alike."""
    return {0: torch.export.Dim("batch", min=1, max=1 << 20)}


def write_onnx(net: CCNN, size: tuple[int, ...], path: Path) -> None:
    """Export ``net`` materialised at ``size`` with direct convolutions to ONNX (any batch size)."""
    fixed = materialize(net, size, use_fft=False)
    with _quiet():
        program = torch.onnx.export(
            fixed,
            (example_input(net, size, batch_size=2),),
            dynamo=True,
            input_names=["input"],
            output_names=["logits"],
            dynamic_shapes=(_batch_dim(),),
            verbose=False,
        )
        assert program is not None
        program.save(str(path))


def onnx_session(path: Path) -> Any:
    """An ONNX Runtime session (CPU) on the model in ``path`` (the runtime's telemetry off: see the module's top)."""
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run_onnx(path: Path, x: Tensor) -> Tensor:
    """The logits ONNX Runtime computes for ``x`` with the model in ``path``."""
    return torch.from_numpy(onnx_session(path).run(["logits"], {"input": x.numpy()})[0])


def write_torchscript(net: CCNN, size: tuple[int, ...], path: Path) -> None:
    """Trace ``net`` materialised at ``size`` to TorchScript."""
    with _quiet():
        traced = torch.jit.trace(materialize(net, size), example_input(net, size, batch_size=2))
        torch.jit.save(traced, str(path))


def run_torchscript(path: Path, x: Tensor) -> Tensor:
    """The logits of the TorchScript module in ``path`` for ``x``."""
    with _quiet():
        return torch.jit.load(str(path))(x)


def write_pt2(net: CCNN, size: tuple[int, ...], path: Path) -> None:
    """Export ``net`` materialised at ``size`` with ``torch.export`` (any batch size)."""
    with _quiet():
        program = torch.export.export(
            materialize(net, size), (example_input(net, size, batch_size=2),), dynamic_shapes=(_batch_dim(),)
        )
        torch.export.save(program, str(path))


def run_pt2(path: Path, x: Tensor) -> Tensor:
    """The logits of the ``torch.export`` program in ``path`` for ``x``."""
    return torch.export.load(str(path)).module()(x)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' progress lines (onnxscript prints them) and deprecation warnings (torch.jit)."""
    with open(os.devnull, "w") as devnull, warnings.catch_warnings(), contextlib.redirect_stdout(devnull):
        warnings.simplefilter("ignore")
        yield


Writer = Callable[[CCNN, tuple[int, ...], Path], None]
Runner = Callable[[Path, Tensor], Tensor]

WRITERS: dict[str, Writer] = {"onnx": write_onnx, "torchscript": write_torchscript, "pt2": write_pt2}
RUNNERS: dict[str, Runner] = {"onnx": run_onnx, "torchscript": run_torchscript, "pt2": run_pt2}
