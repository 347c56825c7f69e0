"""``python -m training.export <checkpoint.ckpt> --format onnx|torchscript|pt2|safetensors --out PATH
[--resolution R] [--data-dir DIR]``: a trained CCNN as a file that runs without this framework.

The network is rebuilt from the config stored in the checkpoint (as ``training.predict`` does), then written by
``models.exporters`` (``models.portable`` for safetensors):

- ``onnx``: materialised at ``--resolution`` (``models.materialize``: fixed kernels, batch norms folded, direct
  convolutions, which ONNX has and the FFT's complex numbers are not) and exported by PyTorch's exporter
  (``torch.onnx.export``, the ``torch.export``-based one); input ``input``, output ``logits``, any batch size.
- ``torchscript``: materialised (FFT kept where the layer uses it) and traced (``torch.jit.trace``; TorchScript is
  deprecated in recent torch, ``pt2`` is its successor); loads with ``torch.jit.load`` alone.
- ``pt2``: materialised and exported with ``torch.export``; loads with ``torch.export.load(path).module()`` alone.
- ``safetensors``: the network's weights (kernel nets included, so any resolution) and its ``CCNN`` constructor
  arguments as JSON in the header; ``models.portable.load_portable(path)`` rebuilds it with torch, ``models`` and
  ``ckconv`` only (no Lightning, no Hydra).

``--resolution`` is the input size (``40``, or ``32x32`` for 2D, ``28x28x28`` for 3D; default: the size the network
was trained at). Before the file is kept, it is loaded as a user would (ONNX Runtime for ``onnx``) and its logits
on one batch of the checkpoint's test data (resampled to ``--resolution`` when that differs) are compared with the
checkpoint network's own: the file is written to a temporary name beside ``--out`` and renamed only when they agree.

Exit codes: 0 written; 2 refused before anything is written (one line naming the checkpoint, ``--format``,
``--resolution``, ``--out`` or the data); 1 the export or its check failed (one line; no file is left behind).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from argcheck import InvalidArgument
from argcheck.command_line import OneLineParser
from datamodules import CCNNDataModule, DataError
from models.ccnn import CCNN
from models.exporters import RUNNERS, WRITERS, relative_difference
from models.materialize import check_input_size
from models.portable import load_portable, save_portable
from training.tools import (
    RequestError,
    ToolFailedError,
    check_new_output,
    checkpoint_network,
    run_tool,
    write_new,
)

FORMATS = ("onnx", "torchscript", "pt2", "safetensors")
# The largest difference allowed between the exported file's logits and the checkpoint network's, relative to the
# largest logit. Measured on the shipped MNIST-1D checkpoint: 4e-7 (ONNX Runtime), 5e-7 (TorchScript, torch.export).
RELATIVE_TOLERANCE = 1e-4


# ---------------------------------------------------------------------------------------------------------------
# Checkpoint -> network + datamodule: the one place that knows how training/ builds them
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadedCheckpoint:
    """A checkpoint's network (eval mode, weights loaded), its test data's datamodule (nothing read yet), the
    keyword arguments that built the network, and the run's config as plain data."""

    net: CCNN
    datamodule: CCNNDataModule
    arguments: dict[str, Any]
    config: dict[str, Any]


def _plain(value: Any) -> Any:
    """``value`` as JSON data: OmegaConf containers and tuples become dicts and lists."""
    from omegaconf import OmegaConf

    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def load_checkpoint(path: Path, data_dir: Path | None = None) -> LoadedCheckpoint:
    """The network and datamodule of ``path``, rebuilt from the config stored in it.

    Args:
        path: a ``.ckpt`` written by ``main.py`` (training or weights-only).
        data_dir: where its dataset is, instead of the config's ``dataset.data_dir``.

    Raises:
        CheckpointError: naming the checkpoint (unreadable, not this project's, no config, for another network).
    """
    from omegaconf import OmegaConf

    from training.build import network_arguments

    loaded = checkpoint_network(path, data_dir)
    arguments = _plain(network_arguments(loaded.cfg, loaded.datamodule.meta))
    return LoadedCheckpoint(loaded.module.net, loaded.datamodule, arguments, _plain(OmegaConf.to_container(loaded.cfg)))


# ---------------------------------------------------------------------------------------------------------------
# Checks of the request (before anything is written)
# ---------------------------------------------------------------------------------------------------------------
def parse_resolution(text: str | None, net: CCNN, trained: tuple[int, ...]) -> tuple[int, ...]:
    """``--resolution`` as a size per axis (``40``, ``32x32``; one number is every axis), checked against ``net``.

    Raises:
        RequestError: naming ``--resolution``: not positive integers, or a size the network cannot take.
    """
    if text is None:
        size: tuple[int, ...] = trained
    else:
        try:
            parts = tuple(int(part) for part in text.lower().split("x"))
        except ValueError:
            parts = ()
        if len(parts) == 1:
            parts = parts * net.data_dim
        if len(parts) != net.data_dim or min(parts, default=0) < 1:
            example = "x".join(map(str, trained))
            raise RequestError(
                f"--resolution {text} is not {net.data_dim} positive integer(s) joined by 'x' (e.g. {example}, the "
                "size this network was trained at)."
            )
        size = parts
    try:
        check_input_size(net, size)
    except InvalidArgument as error:
        raise RequestError(f"--resolution {'x'.join(map(str, size))}: {error}") from error
    return size


def check_inputs(loaded: LoadedCheckpoint, size: tuple[int, ...]) -> Tensor:
    """The inputs of the first test batch of the checkpoint's dataset, at ``size`` (signals resampled by linear
    interpolation when their size differs; token sequences cannot be, and are refused).

    Raises:
        RequestError: the data cannot be read, or cannot be brought to ``size``.
    """
    datamodule = loaded.datamodule
    trained = tuple(datamodule.meta.size)
    if size != trained and (loaded.net.embedding is not None or loaded.net.float_tokens or loaded.net.paired):
        raise RequestError(
            f"--resolution {'x'.join(map(str, size))}: the test data are token sequences of length "
            f"{'x'.join(map(str, trained))}, which cannot be resampled to check the export; use that length."
        )
    try:
        datamodule.prepare_data()
        datamodule.setup("test")
    except DataError as error:
        raise RequestError(
            f"{error} (the export is checked on the checkpoint's test data; --data-dir names its folder)"
        ) from error
    assert datamodule.test_set is not None
    count = min(len(datamodule.test_set), datamodule.test_batch_size)  # type: ignore[arg-type]
    x = torch.stack([datamodule.test_set[i][0] for i in range(count)])
    if tuple(x.shape[x.dim() - len(size) :]) != size:
        mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(size)]
        x = F.interpolate(x.float(), size=size, mode=mode, align_corners=False)
    return x


# ---------------------------------------------------------------------------------------------------------------
# Writers and their checks
# ---------------------------------------------------------------------------------------------------------------
def export(loaded: LoadedCheckpoint, fmt: str, size: tuple[int, ...], out: Path, x: Tensor) -> float:
    """Write ``loaded``'s network to ``out`` in format ``fmt`` at ``size``, checked on the inputs ``x``.

    Returns:
        the largest difference of the file's logits from the network's, relative to its largest logit.

    Raises:
        ToolFailedError: the export failed or its logits differ by more than :data:`RELATIVE_TOLERANCE`.
    """
    net = loaded.net
    with torch.no_grad():
        expected = net(x)
    difference: list[float] = []

    def check_logits(actual: Tensor, what: str) -> None:
        difference.append(relative_difference(actual, expected))
        if not difference[-1] <= RELATIVE_TOLERANCE:
            raise ToolFailedError(
                f"{what} gives logits that differ from the checkpoint network's by {difference[-1]:.2e} of the "
                f"largest logit (allowed: {RELATIVE_TOLERANCE:.0e}) on the test batch; {out} was not written."
            )

    if fmt == "safetensors":
        metadata = {"config": json.dumps(loaded.config, sort_keys=True), "resolution": json.dumps(list(size))}

        def check(path: Path) -> None:
            with torch.no_grad():
                check_logits(load_portable(path)(x), "the safetensors file")

        write_new(out, lambda path: save_portable(net, loaded.arguments, path, metadata), check)
        return difference[-1]
    writer, runner = WRITERS[fmt], RUNNERS[fmt]

    def check_runtime(path: Path) -> None:
        with torch.no_grad():
            check_logits(runner(path, x), f"the {fmt} file" + (" under ONNX Runtime" if fmt == "onnx" else ""))

    write_new(out, lambda path: writer(net, size, path), check_runtime)
    return difference[-1]


# ---------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------
def _require_format_packages(fmt: str) -> None:
    needs = {"onnx": ("onnx", "onnxruntime", "onnxscript"), "safetensors": ("safetensors",)}.get(fmt, ())
    import importlib.util

    missing = [name for name in needs if importlib.util.find_spec(name) is None]
    if missing:
        raise RequestError(f"--format {fmt} needs {', '.join(missing)}: pip install 'ccnn[export]'.")


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(
        prog="python -m training.export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", type=Path, help="a .ckpt file written by main.py")
    parser.add_argument("--format", required=True, help=f"one of {', '.join(FORMATS)}")
    parser.add_argument("--out", type=Path, required=True, help="a new file (an existing one is refused)")
    parser.add_argument("--resolution", default=None, help="input size, e.g. 40 or 32x32 (default: the training size)")
    parser.add_argument("--data-dir", type=Path, default=None, help="the dataset's folder (default: the run's)")
    args = parser.parse_args(argv)

    def run() -> int:
        if args.format not in FORMATS:
            raise RequestError(f"--format {args.format} is not one of {', '.join(FORMATS)}.")
        _require_format_packages(args.format)
        check_new_output(args.out)
        loaded = load_checkpoint(args.checkpoint, args.data_dir)
        size = parse_resolution(args.resolution, loaded.net, tuple(loaded.datamodule.meta.size))
        x = check_inputs(loaded, size)
        difference = export(loaded, args.format, size, args.out, x)
        print(
            f"wrote {args.out} ({args.format}, resolution {'x'.join(map(str, size))}; its logits on {len(x)} test "
            f"examples differ from the checkpoint's by {difference:.1e} of the largest)"
        )
        return 0

    return run_tool(run)


if __name__ == "__main__":
    sys.exit(main())
