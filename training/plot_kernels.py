"""``python -m training.plot_kernels <checkpoint.ckpt> [--out kernels.png]``: draw a checkpoint's kernels and masks.

The network is rebuilt from the config stored in the checkpoint and the dataset's metadata (no data is read). The
picture goes to ``outputs/kernels/<run>_<checkpoint>.png`` under the current folder (``outputs/`` is where runs write
too, and git ignores it, so the command run from the repository leaves its tree clean) or to ``--out``, never into
``pretrained/``, whose files are the shipped checkpoints. Each layer's learned mask width and the taps its crop keeps
are printed too. A picture is always a new file (an existing ``--out`` is refused). ``--channels`` kernels are drawn
per layer, at most as many as the widest layer has (a larger value is refused: it would not draw more). Errors print
one line and exit with 2 (refused, nothing written) or 1 (a write that failed), as ``main.py`` does; the command line,
``--out`` and the checkpoint's path are checked before torch is imported, within a second.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from argcheck.command_line import OneLineParser, positive_int
from training.config.resolvers import run_folder_of_checkpoint
from training.tools import RequestError, check_checkpoint_path, check_new_output, run_tool, write_new

if TYPE_CHECKING:  # torch and the models are imported where the drawing starts, after the request's checks
    from torch import nn

DEFAULT_FOLDER = Path("outputs") / "kernels"  # under the current folder


def default_output(checkpoint: Path) -> Path:
    """``./outputs/kernels/<parent>_<run>_<name>.png``, named after the last two parts of the run folder (or the
    checkpoint's folder: ``<date>_<time>``, ``<time>_<job>`` of a multirun) and the checkpoint, with ``_1``, ``_2``,
    ... when that picture exists already: a picture never overwrites another."""
    folder = (run_folder_of_checkpoint(checkpoint) or checkpoint.parent).resolve()
    stem = f"{folder.parent.name}_{folder.name}_{checkpoint.stem}".lstrip("_")
    candidate, n = Path.cwd() / DEFAULT_FOLDER / f"{stem}.png", 0
    while candidate.exists():
        n += 1
        candidate = candidate.with_name(f"{stem}_{n}.png")
    return candidate


def check_channels(net: nn.Module, channels: int, checkpoint: Path) -> None:
    """Refuse a ``--channels`` above the kernel channels of the network's widest continuous layer: the picture
    cannot show more, and a value that large is a mistake (the user would wait for the widest layer's every
    channel, half a minute for the shipped network's 64, without being told).

    Raises:
        RequestError: naming ``--channels`` and the largest value that draws something different.
    """
    from models.plot_kernels import continuous_layers

    # What kernel_view draws per layer: the input channels of a separable kernel, the output channels of a dense one.
    widest = max(
        (layer.in_channels if layer.separable else layer.out_channels for _, layer in continuous_layers(net)),
        default=0,
    )
    if channels > widest > 0:
        raise RequestError(
            f"--channels {channels}: the widest continuous layer of checkpoint {checkpoint} has {widest} kernel "
            f"channel(s); pass 1 to {widest}."
        )


def parser() -> OneLineParser:
    """The command line; its types refuse a bad ``--channels`` before anything else is looked at."""
    parser = OneLineParser(
        prog="python -m training.plot_kernels",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", type=Path, help="a .ckpt file written by main.py")
    parser.add_argument(
        "--out", type=Path, default=None, help=f"a new PNG file (default: ./{DEFAULT_FOLDER}/<run>_<checkpoint>.png)"
    )
    parser.add_argument(
        "--channels", type=positive_int, default=4, help="kernel channels drawn per layer (default: %(default)s)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Draw the kernels of the checkpoint named in ``argv`` into a new PNG file; the exit code (a bad command line
    exits with 2, as ``argparse`` does)."""
    command_line = parser()
    args = command_line.parse_args(argv)
    if args.out is not None and args.out.suffix.lower() != ".png":
        command_line.error(f"--out {args.out} must name a .png file")  # matplotlib would add .png, or refuse the format

    def draw() -> int:
        # Everything that needs no torch first, so that a mistake is refused within a second.
        out = args.out or default_output(args.checkpoint)
        check_new_output(out, make_folder=args.out is None)  # the default is new too, in a folder of its own
        check_checkpoint_path(args.checkpoint)
        from models.plot_kernels import continuous_layers, kernel_view, save_kernel_plot
        from training.tools import checkpoint_network

        module = checkpoint_network(args.checkpoint).module
        check_channels(module.net, args.channels, args.checkpoint)
        for name, layer in continuous_layers(module.net):
            print(f"{name}: mask {kernel_view(name, layer, max_channels=0).mask_summary()}")
        write_new(out, lambda path: save_kernel_plot(module.net, path, args.channels))
        print(f"wrote {out}")
        return 0

    return run_tool(draw)


if __name__ == "__main__":
    sys.exit(main())
