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

The test data are read from ``--data-dir`` or, without it, from the run's own ``dataset.data_dir`` (relative to the
current folder, as ``main.py`` reads it), where, as for a run, MNIST-1D is generated and cached and other datasets
downloaded when missing: the README's first export works from a fresh clone.

An export at ``--resolution`` holds a test batch at that size, its way through the network and (all formats but
``safetensors``) the materialised kernels of every layer, twice (the module's and the serialised file's); a size whose
estimate (``training.evaluation.memory``, as ``main.py``'s ``test.resolutions`` are checked) exceeds the memory this
machine has available is refused before anything is allocated.

Exit codes: 0 written; 2 refused before anything is written (one line naming the checkpoint, ``--format``,
``--resolution``, ``--out``, ``--data-dir`` or the data; the command line, ``--out``, the packages of ``--format``
and the checkpoint's path are checked before torch is imported, within a second); 1 the export or its check failed
(one line; no file is left behind).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from argcheck.command_line import OneLineParser
from training.tools import (
    RequestError,
    ToolFailedError,
    check_checkpoint_path,
    check_new_output,
    run_tool,
    write_new,
)

if TYPE_CHECKING:  # torch and the models are imported where the work starts, after the request's checks
    from torch import Tensor

    from datamodules import CCNNDataModule
    from models.ccnn import CCNN

FORMATS = ("onnx", "torchscript", "pt2", "safetensors")
# The largest difference allowed between the exported file's logits and the checkpoint network's, relative to the
# largest logit. Measured on the shipped MNIST-1D checkpoint: 4e-7 (ONNX Runtime), 5e-7 (TorchScript, torch.export).
RELATIVE_TOLERANCE = 1e-4
# Copies of the materialised kernels an export holds at its peak: the materialised module's and the file's, which
# the exporters serialise in memory before writing it (ONNX's initialisers, TorchScript's and torch.export's archives).
MATERIALISED_COPIES = 2
MAX_AXES = 3  # the networks are 1D, 2D or 3D


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
    from training.tools import checkpoint_network

    loaded = checkpoint_network(path, data_dir)
    arguments = _plain(network_arguments(loaded.cfg, loaded.datamodule.meta))
    return LoadedCheckpoint(loaded.module.net, loaded.datamodule, arguments, _plain(OmegaConf.to_container(loaded.cfg)))


# ---------------------------------------------------------------------------------------------------------------
# Checks of the request (before anything is written)
# ---------------------------------------------------------------------------------------------------------------
def resolution(text: str) -> tuple[int, ...]:
    """An ``argparse`` type: ``--resolution`` as positive sizes, one for every axis or one per axis joined by ``x``
    (``40``, ``32x32``, ``28x28x28``), checked by its spelling alone; against the network by :func:`input_size`."""
    try:
        parts = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        parts = ()
    if not 1 <= len(parts) <= MAX_AXES or min(parts) < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a size: a positive integer, or one per axis joined by 'x' (e.g. 40, 32x32)"
        )
    return parts


def _spelt(size: tuple[int, ...]) -> str:
    return "x".join(map(str, size))


def input_size(requested: tuple[int, ...] | None, net: CCNN, trained: tuple[int, ...]) -> tuple[int, ...]:
    """The input size to export at: ``requested`` (one number is every axis), or the training size; its axes
    checked against ``net``'s (nothing is computed: the memory is checked before the network sees the size).

    Raises:
        RequestError: naming ``--resolution``: not one size per axis of the network.
    """
    if requested is None:
        return trained
    size = requested * net.data_dim if len(requested) == 1 else requested
    if len(size) != net.data_dim:
        sizes = "one size" if net.data_dim == 1 else f"one size, or {net.data_dim} joined by 'x'"
        raise RequestError(
            f"--resolution {_spelt(requested)}: the network takes {net.data_dim}D inputs; pass {sizes} (e.g. "
            f"{_spelt(trained)}, the size it was trained at)."
        )
    return size


def check_network_takes(net: CCNN, size: tuple[int, ...]) -> None:
    """Refuse a size the network cannot take (too small for its pools, a kernel left with one tap): one forward
    pass of one example at that size (``models.materialize.check_input_size``), so check its memory first.

    Raises:
        RequestError: naming ``--resolution``.
    """
    from argcheck import InvalidArgument
    from models.materialize import check_input_size

    try:
        check_input_size(net, size)
    except InvalidArgument as error:
        raise RequestError(f"--resolution {_spelt(size)}: {error}") from error


@dataclass(frozen=True)
class ExportMemory:
    """What an export at one size holds at its peak, in bytes (estimated from sizes: nothing is allocated)."""

    batch: int  # examples in the check batch (at most the test batch size)
    network: int  # one check batch through the network (``training.evaluation.memory.network_bytes``)
    inputs: int  # the check batch itself, at the size
    kernels: int  # the materialised kernels of every layer, each copy (0 for safetensors: not materialised)
    data: int  # the test data as the datamodule holds it, at the training size

    @property
    def total(self) -> int:
        return self.network + self.inputs + self.kernels + self.data

    def parts(self) -> str:
        from training.evaluation.memory import format_bytes

        parts = [
            f"one check batch of {self.batch} through the network: {format_bytes(self.network)}",
            f"the batch: {format_bytes(self.inputs)}",
        ]
        if self.kernels:
            parts.append(f"the materialised kernels, {MATERIALISED_COPIES} copies: {format_bytes(self.kernels)}")
        if self.data:
            parts.append(f"the test data: {format_bytes(self.data)}")
        return "; ".join(parts)


def export_memory(loaded: LoadedCheckpoint, fmt: str, size: tuple[int, ...]) -> ExportMemory:
    """The memory the export of ``loaded`` in ``fmt`` at ``size`` needs (:class:`ExportMemory`). A continuous kernel
    counts with every tap of its grid (the mask's crop keeps fewer), so the estimate is an upper bound there, as it is
    for ``main.py``'s ``test.resolutions``."""
    from training.evaluation.memory import FLOAT_BYTES, conv_layers, layer_taps, network_bytes

    net, datamodule = loaded.net, loaded.datamodule
    batch = datamodule.test_batch_size
    kernels = 0
    if fmt != "safetensors":
        for layer, at in conv_layers(net, size):
            channels = layer.in_channels if layer.separable else layer.in_channels * layer.out_channels
            kernels += MATERIALISED_COPIES * FLOAT_BYTES * channels * math.prod(layer_taps(layer, at))
    return ExportMemory(
        batch=batch,
        network=network_bytes(net, size, batch),
        inputs=FLOAT_BYTES * batch * net.conv1.in_channels * math.prod(size),
        kernels=kernels,
        data=datamodule.held_bytes() or 0,
    )


def check_memory(loaded: LoadedCheckpoint, fmt: str, size: tuple[int, ...]) -> None:
    """Refuse a size whose export needs more memory than this machine has available now (``MemAvailable``, within
    the cgroup's limit); exports run on the CPU. Where that cannot be read (not Linux), nothing is refused.

    Raises:
        RequestError: naming ``--resolution``, the estimate, the limit and the largest size that fits.
    """
    from training.evaluation.memory import format_bytes, host_available, largest_fitting

    available = host_available()
    need = export_memory(loaded, fmt, size)
    if available is None or need.total <= available:
        return
    fits = None
    if len(set(size)) == 1:  # the same size on every axis: the largest such size that fits
        fits = largest_fitting(lambda n: export_memory(loaded, fmt, (n,) * len(size)).total <= available, 2, size[0])
    fix = "a smaller --resolution" if fits is None else f"--resolution {fits} or less"
    raise RequestError(
        f"--resolution {_spelt(size)} needs about {format_bytes(need.total)} to export ({need.parts()}), more than the "
        f"{format_bytes(available)} available on this machine (MemAvailable); use {fix}."
    )


def check_inputs(loaded: LoadedCheckpoint, size: tuple[int, ...]) -> Tensor:
    """The inputs of the first test batch of the checkpoint's dataset, at ``size`` (signals resampled by linear
    interpolation when their size differs; token sequences cannot be, and are refused).

    Raises:
        RequestError: the data cannot be read, or cannot be brought to ``size``.
    """
    import torch
    import torch.nn.functional as F

    from datamodules import DataError

    datamodule = loaded.datamodule
    trained = tuple(datamodule.meta.size)
    if size != trained and (loaded.net.embedding is not None or loaded.net.float_tokens or loaded.net.paired):
        raise RequestError(
            f"--resolution {_spelt(size)}: the test data are token sequences of length {_spelt(trained)}, which "
            "cannot be resampled to check the export; use that length."
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
    import torch

    from models.exporters import RUNNERS, WRITERS, relative_difference
    from models.portable import load_portable, save_portable

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
    """Refuse a format whose packages are not installed (found by name: nothing is imported)."""
    import importlib.util

    needs = {"onnx": ("onnx", "onnxruntime", "onnxscript"), "safetensors": ("safetensors",)}.get(fmt, ())
    missing = [name for name in needs if importlib.util.find_spec(name) is None]
    if missing:
        raise RequestError(f"--format {fmt} needs {', '.join(missing)}: pip install 'ccnn[export]'.")


def check_request(args: argparse.Namespace) -> None:
    """The checks that need no torch, so that a mistake is refused within a second: the format's packages, ``--out``
    (a new file), the checkpoint's path, and ``--data-dir`` (a folder, or a name for one: the data go there).

    Raises:
        RequestError: naming the option or the file.
    """
    _require_format_packages(args.format)
    check_new_output(args.out)
    check_checkpoint_path(args.checkpoint)
    if args.data_dir is not None and args.data_dir.exists() and not args.data_dir.is_dir():
        raise RequestError(f"--data-dir {args.data_dir} is not a folder; pass the folder of the checkpoint's data.")


def parser() -> OneLineParser:
    """The command line; its types and choices refuse a bad ``--format`` or ``--resolution`` before anything else
    is looked at."""
    parser = OneLineParser(
        prog="python -m training.export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", type=Path, help="a .ckpt file written by main.py")
    parser.add_argument("--format", required=True, choices=FORMATS, help=f"one of {', '.join(FORMATS)}")
    parser.add_argument("--out", type=Path, required=True, help="a new file (an existing one is refused)")
    parser.add_argument(
        "--resolution", type=resolution, default=None, help="input size, e.g. 40 or 32x32 (default: the training size)"
    )
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="the dataset's folder (default: the run's, if it exists)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Export the checkpoint named in ``argv`` into a new file; the exit code (a bad command line exits with 2, as
    ``argparse`` does)."""
    args = parser().parse_args(argv)

    def run() -> int:
        check_request(args)
        loaded = load_checkpoint(args.checkpoint, args.data_dir)
        size = input_size(args.resolution, loaded.net, tuple(loaded.datamodule.meta.size))
        check_memory(loaded, args.format, size)  # before the network sees the size
        check_network_takes(loaded.net, size)
        x = check_inputs(loaded, size)
        difference = export(loaded, args.format, size, args.out, x)
        print(
            f"wrote {args.out} ({args.format}, resolution {_spelt(size)}; its logits on {len(x)} test examples differ "
            f"from the checkpoint's by {difference:.1e} of the largest)"
        )
        return 0

    return run_tool(run)


if __name__ == "__main__":
    sys.exit(main())
