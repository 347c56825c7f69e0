"""``python -m training.plot_kernels <checkpoint.ckpt> [--out kernels.png]``: draw a checkpoint's kernels and masks.

The network is rebuilt from the config stored in the checkpoint and the dataset's metadata (no data is read). The
picture goes to ``outputs/kernels/<run>_<checkpoint>.png`` under the current folder (``outputs/`` is where runs write
too, and git ignores it, so the command run from the repository leaves its tree clean) or to ``--out``, never into
``pretrained/``, whose files are the shipped checkpoints. Each layer's learned mask width and the taps its crop keeps
are printed too. A picture is always a new file (an existing ``--out`` is refused). Errors print one line and exit
with 2 (refused, nothing written) or 1 (a write that failed), as ``main.py`` does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from argcheck.command_line import OneLineParser
from models.plot_kernels import continuous_layers, kernel_view, save_kernel_plot
from training.config.resolvers import run_folder_of_checkpoint
from training.tools import check_new_output, checkpoint_network, run_tool, write_new

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


def main(argv: list[str] | None = None) -> int:
    """Draw the kernels of the checkpoint named in ``argv`` into a new PNG file; the exit code."""
    parser = OneLineParser(
        prog="python -m training.plot_kernels",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", type=Path, help="a .ckpt file written by main.py")
    parser.add_argument(
        "--out", type=Path, default=None, help=f"a new PNG file (default: ./{DEFAULT_FOLDER}/<run>_<checkpoint>.png)"
    )
    parser.add_argument("--channels", type=int, default=4, help="kernel channels drawn per layer")
    args = parser.parse_args(argv)
    if args.channels < 1:
        parser.error(f"--channels must be at least 1, got {args.channels}")
    if args.out is not None and args.out.suffix.lower() != ".png":
        parser.error(f"--out {args.out} must name a .png file")  # matplotlib would add .png, or refuse the format

    def draw() -> int:
        out = args.out or default_output(args.checkpoint)
        check_new_output(out, make_folder=args.out is None)  # the default is new too, in a folder of its own
        module = checkpoint_network(args.checkpoint).module
        for name, layer in continuous_layers(module.net):
            print(f"{name}: mask {kernel_view(name, layer, max_channels=0).mask_summary()}")
        write_new(out, lambda path: save_kernel_plot(module.net, path, args.channels))
        print(f"wrote {out}")
        return 0

    return run_tool(draw)


if __name__ == "__main__":
    sys.exit(main())
