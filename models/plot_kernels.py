"""Pictures of the learned kernels and masks of every continuous conv layer, as PNG and in the logger.

Use from code (``plot_kernels(net)``), as a callback during training (``KernelPlotCallback``), or from a checkpoint
with ``python -m training.plot_kernels <checkpoint.ckpt>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from ckconv import CKConv


def continuous_layers(net: nn.Module) -> list[tuple[str, CKConv]]:
    """All continuous conv layers of ``net`` with their qualified names, in definition order."""
    return [(name, m) for name, m in net.named_modules() if isinstance(m, CKConv)]


@torch.no_grad()
def layer_kernel_and_mask(layer: CKConv) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The layer's kernel at its training size, shape ``(C_out or C_in, C_in or 1, *k)``, and its mask ``(*k)``."""
    size = layer.kernel_size_for(layer.input_size or layer.kernel_size)
    kernel = layer.sample_kernel(size).float().cpu()
    if layer.mask is None:
        return kernel, None
    return kernel, layer.mask(layer.cropped_positions(size))[0, 0].float().cpu()


def plot_kernels(net: nn.Module, max_channels: int = 4) -> Any:
    """A matplotlib figure: one row per continuous layer, kernels of the first channels and the mask.

    1D kernels are drawn as curves (mask dashed); 2D kernels as images; 3D kernels by their middle slice.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = continuous_layers(net)
    if not layers:
        raise ValueError("the network has no continuous convolution layers to plot.")
    columns = max_channels + 1
    fig, axes = plt.subplots(len(layers), columns, figsize=(2.4 * columns, 2.0 * len(layers)), squeeze=False)
    for row, (name, layer) in enumerate(layers):
        kernel, mask = layer_kernel_and_mask(layer)
        for col in range(columns):
            ax = axes[row][col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col == max_channels:
                panel, title = mask, "mask"
            elif col < kernel.shape[0]:
                panel, title = kernel[col, 0], f"ch {col}"
            else:
                panel, title = None, ""
            if panel is None:
                ax.axis("off")
                continue
            while panel.dim() > 2:  # 3D: middle slice
                panel = panel[panel.shape[0] // 2]
            if panel.dim() == 1:
                ax.plot(panel.numpy(), lw=0.8)
            else:
                bound = float(panel.abs().max()) or 1.0
                ax.imshow(panel.numpy(), cmap="RdBu_r", vmin=-bound, vmax=bound)
            ax.set_title(f"{name} {title}" if col == 0 else title, fontsize=7)
    fig.tight_layout()
    return fig


def save_kernel_plot(net: nn.Module, path: str | Path, max_channels: int = 4) -> Path:
    """Draw :func:`plot_kernels` into a PNG file."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = plot_kernels(net, max_channels)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


class KernelPlotCallback(pl.Callback):
    """Saves ``<dirpath>/epoch_<n>.png`` every ``every_n_epochs`` epochs and sends it to loggers that take images."""

    def __init__(self, dirpath: str | Path, every_n_epochs: int = 10, max_channels: int = 4) -> None:
        self.dirpath = Path(dirpath)
        self.every_n_epochs = every_n_epochs
        self.max_channels = max_channels

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        last = epoch + 1 == trainer.max_epochs
        if not trainer.is_global_zero or not (last or (epoch + 1) % self.every_n_epochs == 0):
            return
        net = getattr(pl_module, "net", pl_module)
        if not continuous_layers(net):
            return
        path = save_kernel_plot(net, self.dirpath / f"epoch_{epoch:04d}.png", self.max_channels)
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key="kernels", images=[str(path)], step=trainer.global_step)
