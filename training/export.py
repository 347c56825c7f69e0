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
import contextlib
import inspect
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import torch
import torch.nn.functional as F
from torch import Tensor

from ckconv.errors import InvalidArgument
from datamodules import CCNNDataModule, DataError
from models.ccnn import CCNN
from models.exporters import RUNNERS, WRITERS, relative_difference
from models.materialize import check_input_size
from models.portable import load_portable, save_portable
from training.cli import EXIT_FAILED, EXIT_REFUSED, one_line
from training.config import ConfigError

FORMATS = ("onnx", "torchscript", "pt2", "safetensors")
# The largest difference allowed between the exported file's logits and the checkpoint network's, relative to the
# largest logit. Measured on the shipped MNIST-1D checkpoint: 4e-7 (ONNX Runtime), 5e-7 (TorchScript, torch.export).
RELATIVE_TOLERANCE = 1e-4
SHIPPED_CHECKPOINTS = Path(__file__).resolve().parent.parent / "pretrained"


class RefusedError(ValueError):
    """A request that cannot be carried out; nothing was written. The message names the argument at fault."""


class ExportError(RuntimeError):
    """The export or its check failed; the file was not kept."""


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


@contextlib.contextmanager
def _recorded_arguments(cls: type) -> Iterator[list[dict[str, Any]]]:
    """Record the arguments of every ``cls(...)`` made inside, by name (the builder passes them as keywords)."""
    original = cls.__init__
    signature = inspect.signature(original)
    calls: list[dict[str, Any]] = []

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(self, *args, **kwargs).arguments
        calls.append({name: value for name, value in bound.items() if name != "self"})
        original(self, *args, **kwargs)

    cls.__init__ = init  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        cls.__init__ = original  # type: ignore[method-assign]


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
        RefusedError: naming the checkpoint (unreadable, not this project's, no config, for another network).
    """
    from omegaconf import OmegaConf

    from training.build import build_datamodule, build_module
    from training.checkpoints import CheckpointError, load_weights, read_checkpoint
    from training.compat import upgraded_config

    try:
        checkpoint = read_checkpoint(path)
        if "ccnn_config" not in checkpoint:
            raise CheckpointError(f"checkpoint {path} carries no config (ccnn_config); it was not written by main.py.")
        cfg = upgraded_config(checkpoint["ccnn_config"])
        if data_dir is not None:
            cfg.dataset.data_dir = str(data_dir)
        datamodule = build_datamodule(cfg)
        with _recorded_arguments(CCNN) as calls:
            module = build_module(cfg, datamodule.meta)
        load_weights(module, path)
    except (CheckpointError, ConfigError) as error:
        raise RefusedError(str(error)) from error
    arguments = _plain(calls[-1])
    return LoadedCheckpoint(module.net.eval(), datamodule, arguments, _plain(OmegaConf.to_container(cfg)))


# ---------------------------------------------------------------------------------------------------------------
# Checks of the request (before anything is written)
# ---------------------------------------------------------------------------------------------------------------
def check_out(out: Path) -> None:
    """Refuse an ``--out`` that exists, lies in a folder that does not, or inside ``pretrained/``.

    Raises:
        RefusedError: naming ``--out``.
    """
    if out.exists() or out.is_symlink():
        raise RefusedError(f"--out {out} exists; pass a new file name (an export never overwrites a file).")
    if not out.parent.is_dir():
        raise RefusedError(
            f"--out {out}: the folder {out.parent} does not exist; create it or pass a path in another one."
        )
    if out.resolve().is_relative_to(SHIPPED_CHECKPOINTS):
        raise RefusedError(
            f"--out {out} is inside {SHIPPED_CHECKPOINTS}, which holds the shipped checkpoints; pass another."
        )
    if not os.access(out.parent, os.W_OK):
        raise RefusedError(f"--out {out}: the folder {out.parent} cannot be written to; pass a path in another one.")


def parse_resolution(text: str | None, net: CCNN, trained: tuple[int, ...]) -> tuple[int, ...]:
    """``--resolution`` as a size per axis (``40``, ``32x32``; one number is every axis), checked against ``net``.

    Raises:
        RefusedError: naming ``--resolution``: not positive integers, or a size the network cannot take.
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
            raise RefusedError(
                f"--resolution {text} is not {net.data_dim} positive integer(s) joined by 'x' (e.g. {example}, the "
                "size this network was trained at)."
            )
        size = parts
    try:
        check_input_size(net, size)
    except InvalidArgument as error:
        raise RefusedError(f"--resolution {'x'.join(map(str, size))}: {error}") from error
    return size


def check_inputs(loaded: LoadedCheckpoint, size: tuple[int, ...]) -> Tensor:
    """The inputs of the first test batch of the checkpoint's dataset, at ``size`` (signals resampled by linear
    interpolation when their size differs; token sequences cannot be, and are refused).

    Raises:
        RefusedError: the data cannot be read, or cannot be brought to ``size``.
    """
    datamodule = loaded.datamodule
    trained = tuple(datamodule.meta.size)
    if size != trained and (loaded.net.embedding is not None or loaded.net.float_tokens or loaded.net.paired):
        raise RefusedError(
            f"--resolution {'x'.join(map(str, size))}: the test data are token sequences of length "
            f"{'x'.join(map(str, trained))}, which cannot be resampled to check the export; use that length."
        )
    try:
        datamodule.prepare_data()
        datamodule.setup("test")
    except DataError as error:
        raise RefusedError(
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
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_checked(out: Path, write: Callable[[Path], None], check: Callable[[Path], None]) -> None:
    """``write`` to a temporary file beside ``out``, ``check`` it, and rename it to ``out`` only then.

    Raises:
        ExportError: ``write`` or ``check`` failed; the temporary file is removed.
    """
    # The temporary keeps --out's suffix: torch.export's loader judges a file by its name (.pt2).
    fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=f".tmp{out.suffix}")
    os.close(fd)
    temporary = Path(name)
    try:
        write(temporary)
        check(temporary)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the permissions open() would
        if out.exists():  # appeared while exporting: still never overwritten
            raise ExportError(f"--out {out} appeared while exporting; it was left as it is.")
        os.replace(temporary, out)
    except ExportError:
        temporary.unlink(missing_ok=True)
        raise
    except Exception as error:
        temporary.unlink(missing_ok=True)
        raise ExportError(f"exporting to {out} failed: {type(error).__name__}: {error}") from error
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def export(loaded: LoadedCheckpoint, fmt: str, size: tuple[int, ...], out: Path, x: Tensor) -> float:
    """Write ``loaded``'s network to ``out`` in format ``fmt`` at ``size``, checked on the inputs ``x``.

    Returns:
        the largest difference of the file's logits from the network's, relative to its largest logit.

    Raises:
        ExportError: the export failed or its logits differ by more than :data:`RELATIVE_TOLERANCE`.
    """
    net = loaded.net
    with torch.no_grad():
        expected = net(x)
    difference: list[float] = []

    def check_logits(actual: Tensor, what: str) -> None:
        difference.append(relative_difference(actual, expected))
        if not difference[-1] <= RELATIVE_TOLERANCE:
            raise ExportError(
                f"{what} gives logits that differ from the checkpoint network's by {difference[-1]:.2e} of the "
                f"largest logit (allowed: {RELATIVE_TOLERANCE:.0e}) on the test batch; {out} was not written."
            )

    if fmt == "safetensors":
        metadata = {"config": json.dumps(loaded.config, sort_keys=True), "resolution": json.dumps(list(size))}

        def check(path: Path) -> None:
            with torch.no_grad():
                check_logits(load_portable(path)(x), "the safetensors file")

        write_checked(out, lambda path: save_portable(net, loaded.arguments, path, metadata), check)
        return difference[-1]
    writer, runner = WRITERS[fmt], RUNNERS[fmt]

    def check_runtime(path: Path) -> None:
        with torch.no_grad():
            check_logits(runner(path, x), f"the {fmt} file" + (" under ONNX Runtime" if fmt == "onnx" else ""))

    write_checked(out, lambda path: writer(net, size, path), check_runtime)
    return difference[-1]


# ---------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse's usage block is not one line
        print(f"error: {message} (see python -m training.export --help)", file=sys.stderr)
        sys.exit(EXIT_REFUSED)


def _require_format_packages(fmt: str) -> None:
    needs = {"onnx": ("onnx", "onnxruntime", "onnxscript"), "safetensors": ("safetensors",)}.get(fmt, ())
    import importlib.util

    missing = [name for name in needs if importlib.util.find_spec(name) is None]
    if missing:
        raise RefusedError(f"--format {fmt} needs {', '.join(missing)}: pip install 'ccnn[export]'.")


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="a .ckpt file written by main.py")
    parser.add_argument("--format", required=True, help=f"one of {', '.join(FORMATS)}")
    parser.add_argument("--out", type=Path, required=True, help="the file to write (must not exist)")
    parser.add_argument("--resolution", default=None, help="input size, e.g. 40 or 32x32 (default: the training size)")
    parser.add_argument("--data-dir", type=Path, default=None, help="the dataset's folder (default: the run's)")
    args = parser.parse_args(argv)
    try:
        if args.format not in FORMATS:
            raise RefusedError(f"--format {args.format} is not one of {', '.join(FORMATS)}.")
        _require_format_packages(args.format)
        check_out(args.out)
        loaded = load_checkpoint(args.checkpoint, args.data_dir)
        size = parse_resolution(args.resolution, loaded.net, tuple(loaded.datamodule.meta.size))
        x = check_inputs(loaded, size)
    except RefusedError as error:
        print(one_line(error), file=sys.stderr)
        return EXIT_REFUSED
    try:
        difference = export(loaded, args.format, size, args.out, x)
    except ExportError as error:
        print(one_line(error), file=sys.stderr)
        return EXIT_FAILED
    resolution = "x".join(map(str, size))
    print(
        f"wrote {args.out} ({args.format}, resolution {resolution}; its logits on {len(x)} test examples differ from "
        f"the checkpoint's by {difference:.1e} of the largest)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
