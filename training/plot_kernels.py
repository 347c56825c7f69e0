"""``python -m training.plot_kernels <checkpoint.ckpt> [--out kernels.png]``: draw a checkpoint's kernels and masks.

The network is rebuilt from the config stored in the checkpoint and the dataset's metadata (no data is read).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from models.plot_kernels import save_kernel_plot
from training.build import build_datamodule, build_module
from training.checkpoints import CheckpointError, load_weights, read_checkpoint
from training.compat import upgraded_config


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("checkpoint", type=Path, help="a .ckpt file written by main.py")
    parser.add_argument("--out", type=Path, default=None, help="PNG path (default: next to the checkpoint)")
    parser.add_argument("--channels", type=int, default=4, help="kernel channels drawn per layer")
    args = parser.parse_args(argv)
    checkpoint = read_checkpoint(args.checkpoint)
    if "ccnn_config" not in checkpoint:
        raise CheckpointError(
            f"checkpoint {args.checkpoint} carries no config (ccnn_config); it was not written by main.py."
        )
    cfg = upgraded_config(checkpoint["ccnn_config"])
    module = build_module(cfg, build_datamodule(cfg).meta)
    load_weights(module, args.checkpoint)
    out = args.out or args.checkpoint.with_suffix(".kernels.png")
    save_kernel_plot(module.net, out, args.channels)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
