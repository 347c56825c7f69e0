"""Pictures of the learned kernels and masks of every continuous conv layer, as PNG and in the logger.

Every panel spans the layer's whole grid of kernel positions, [-1, 1] per dimension, so that layers can be compared:
a narrow mask is narrow on the page. Taps that the mask crops away (the layer never evaluates them) are left blank on
a grey background. 1D kernels are curves with the mask dashed over them (as the envelope ``±mask · max|kernel|``); 2D
kernels are images (rows: height, columns: width) with a colour bar and the mask's contours; 3D kernels are shown by
their middle slice in depth. The last column holds each layer's own mask with its learned width, the crop threshold,
and how many taps the crop keeps.

Use from code (``plot_kernels(net)``), as a callback during training (``KernelPlotCallback``), or from a checkpoint
with ``python -m training.plot_kernels <checkpoint.ckpt>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor, nn

from ckconv import CKConv
from ckconv.functional import crop_slices, kernel_positions

CROPPED_COLOUR = "0.9"  # background of the taps the mask crops away
# A title at a fixed height: no panel has ticks on top for it to clear, and placing it automatically measured every
# panel's tick labels (0.3 s of a 0.8 s picture of the default network).
TITLE: dict[str, Any] = {"fontsize": 7, "y": 1.0}


def continuous_layers(net: nn.Module) -> list[tuple[str, CKConv]]:
    """All continuous conv layers of ``net`` with their qualified names, in definition order."""
    return [(name, m) for name, m in net.named_modules() if isinstance(m, CKConv)]


@dataclass(frozen=True)
class KernelView:
    """What one row of the picture shows: a layer's kernels and mask on its whole grid of kernel positions.

    Attributes:
        name: the layer's qualified name in the network.
        positions: per dimension, the positions of the taps in [-1, 1], ``(k_d,)``.
        kernels: ``(C, *k)``, the first channels of the (masked) kernel the layer convolves with at its training size;
            NaN at the taps the mask crops away.
        labels: one label per channel of ``kernels``.
        kept: per dimension, the slice of taps that the crop keeps.
        mask: ``(*k)``, the mask's values at every tap; None for a layer without mask.
        widths: the mask's learned width per dimension (position units); empty without mask.
        means: the mask's centre per dimension; empty without mask.
        threshold: the mask value under which taps are cropped (None without mask or cropping).
    """

    name: str
    positions: tuple[Tensor, ...]
    kernels: Tensor
    labels: tuple[str, ...]
    kept: tuple[slice, ...]
    mask: Tensor | None
    widths: tuple[float, ...]
    means: tuple[float, ...]
    threshold: float | None

    @property
    def size(self) -> tuple[int, ...]:
        """Taps per dimension of the whole grid."""
        return tuple(self.kernels.shape[1:])

    @property
    def kept_size(self) -> tuple[int, ...]:
        """Taps per dimension that the crop keeps."""
        return tuple(s.stop - s.start for s in self.kept)

    def mask_summary(self) -> str:
        """``σ=0.173, 14/40 taps`` (one value per dimension where they differ), 3 significant digits throughout
        (``σ=0.160``, not ``σ=0.16``, beside ``σ=0.173``)."""
        if self.mask is None:
            return "no mask"
        widths = ", ".join(f"{w:#.3g}" for w in self.widths)  # "#": keep trailing zeros
        taps = "×".join(map(str, self.kept_size)) + "/" + "×".join(map(str, self.size))
        text = f"σ={widths if len(self.widths) == 1 else '(' + widths + ')'}, {taps} taps"
        if any(m not in (0.0, 1.0) for m in self.means):  # a learned centre
            text += ", μ=" + ", ".join(f"{m:#.3g}" for m in self.means)
        return text


@torch.no_grad()
def kernel_view(name: str, layer: CKConv, max_channels: int = 4) -> KernelView:
    """The :class:`KernelView` of ``layer`` at its training size (no resampling), first ``max_channels`` channels."""
    spatial = layer.input_size or layer.kernel_size  # the size the layer was built for: its kernel has kernel_size taps
    size = layer.kernel_size_for(spatial)
    sampled = layer.sample_kernel(spatial).float().cpu()  # (C_in, 1, *kept) separable, (C_out, C_in, *kept) dense
    kept = crop_slices(size, sampled.shape[2:], layer.causal)
    channels = sampled[:max_channels, 0]
    kernels = torch.full((channels.shape[0], *size), float("nan"))
    kernels[(slice(None), *kept)] = channels
    labels = tuple(f"ch {c}" if layer.separable else f"out {c} ← in 0" for c in range(channels.shape[0]))
    device = layer.kernel_net.output_layer.weight.device
    grid = kernel_positions(size, device=device, causal=layer.causal)  # (1, d, *size)
    d = len(size)
    positions = tuple(grid[0, i][tuple(slice(None) if j == i else 0 for j in range(d))].float().cpu() for i in range(d))
    if layer.mask is None:
        return KernelView(name, positions, kernels, labels, kept, None, (), (), None)
    mask = layer.mask(grid.to(layer.mask.width.dtype))[0, 0].float().cpu()
    threshold = layer.mask.threshold if layer.mask.dynamic_cropping else None
    widths = tuple(layer.mask.width.float().tolist())
    means = tuple(layer.mask.mean.float().tolist())
    return KernelView(name, positions, kernels, labels, kept, mask, widths, means, threshold)


# ---------------------------------------------------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------------------------------------------------
def _half_step(positions: Tensor) -> float:
    return float(positions[1] - positions[0]) / 2 if len(positions) > 1 else 1.0


def _shade_cropped_1d(ax: Any, view: KernelView) -> None:
    x, kept, half = view.positions[0], view.kept[0], _half_step(view.positions[0])
    if kept.start > 0:
        ax.axvspan(-1 - half, float(x[kept.start]) - half, color=CROPPED_COLOUR, lw=0)
    if kept.stop < len(x):
        ax.axvspan(float(x[kept.stop - 1]) + half, 1 + half, color=CROPPED_COLOUR, lw=0)


def _draw_row_1d(axes: list[Any], view: KernelView, bottom: bool) -> None:
    x = view.positions[0].numpy()
    kept = view.kept[0]
    for ax, kernel, label in zip(axes, view.kernels, view.labels):
        _shade_cropped_1d(ax, view)
        ax.plot(x[kept], kernel[kept].numpy(), lw=0.9, marker=".", ms=2.5, label="kernel")
        if view.mask is not None:
            bound = float(kernel[kept].abs().max()) or 1.0
            for sign in (1, -1):
                ax.plot(x, sign * bound * view.mask.numpy(), ls="--", lw=0.7, color="0.35", label="mask")
        ax.axhline(0.0, color="0.6", lw=0.4)
        ax.set_title(label, **TITLE)
    mask_ax = axes[-1]
    if view.mask is not None:
        _shade_cropped_1d(mask_ax, view)
        mask_ax.plot(x, view.mask.numpy(), color="C1", lw=1.0, label="mask")
        if view.threshold is not None:
            mask_ax.axhline(view.threshold, color="0.35", ls=":", lw=0.7, label="threshold")
        mask_ax.set_ylim(0.0, 1.05)
        mask_ax.set_ylabel("mask", fontsize=7)
    for ax in axes:
        ax.set_xlim(-1.0 - _half_step(view.positions[0]), 1.0 + _half_step(view.positions[0]))
        ax.set_xticks([-1.0, 0.0, 1.0])
        ax.tick_params(labelsize=6)
        if bottom:
            ax.set_xlabel("position", fontsize=7)
    axes[0].set_ylabel(f"{view.name}\nkernel", fontsize=7)


def _slice_2d(view: KernelView, values: Tensor) -> Tensor:
    """The 2D panel of ``values`` ``(*k)``: itself in 2D, the middle slice along the first dimensions in 3D."""
    while values.dim() > 2:
        values = values[values.shape[0] // 2]
    return values


def _draw_row_image(fig: Any, axes: list[Any], view: KernelView, bottom: bool) -> None:
    import matplotlib

    y, x = view.positions[-2], view.positions[-1]
    hy, hx = _half_step(y), _half_step(x)
    extent = (-1 - hx, 1 + hx, -1 - hy, 1 + hy)  # pixel centres at the tap positions
    kernels = [_slice_2d(view, k) for k in view.kernels]
    bound = max((float(k.nan_to_num().abs().max()) for k in kernels), default=0.0) or 1.0
    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad=CROPPED_COLOUR)
    mask = None if view.mask is None else _slice_2d(view, view.mask).numpy()
    levels = sorted({0.5} | ({view.threshold} if view.threshold is not None else set()))
    image = None
    for ax, kernel, label in zip(axes, kernels, view.labels):
        image = ax.imshow(kernel.numpy(), cmap=cmap, vmin=-bound, vmax=bound, origin="lower", extent=extent)
        if mask is not None:
            ax.contour(x.numpy(), y.numpy(), mask, levels=levels, colors="k", linestyles="--", linewidths=0.6)
        ax.set_title(label, **TITLE)
    if image is not None:
        fig.colorbar(image, ax=axes[: len(kernels)], shrink=0.9, pad=0.02).ax.tick_params(labelsize=6)
    if mask is not None:
        mask_image = axes[-1].imshow(mask, cmap="viridis", vmin=0.0, vmax=1.0, origin="lower", extent=extent)
        if view.threshold is not None:
            axes[-1].contour(x.numpy(), y.numpy(), mask, levels=[view.threshold], colors="w", linewidths=0.7)
        fig.colorbar(mask_image, ax=axes[-1], shrink=0.9, pad=0.02).ax.tick_params(labelsize=6)
    middle = round(float(view.positions[0][view.size[0] // 2]), 2) + 0.0  # + 0.0: no "-0.00" from rounding
    depth = "" if len(view.size) == 2 else f", depth {middle:.2f}"
    for ax in axes:
        ax.set_xticks([-1.0, 0.0, 1.0])
        ax.set_yticks([-1.0, 0.0, 1.0])
        ax.tick_params(labelsize=6)
        if bottom:
            ax.set_xlabel("position (width)", fontsize=7)
    axes[0].set_ylabel(f"{view.name}{depth}\nposition (height)", fontsize=7)


# Margins and gaps in inches, room for the labels, titles and colour bars drawn around the panels. Fixed rather than
# matplotlib's constrained layout, which measures every text by drawing the figure once more: it was half the time
# of a picture, and a training run draws one at every fifth of its epochs.
MARGIN_LEFT, MARGIN_BOTTOM, MARGIN_TOP = 0.75, 0.5, 0.3
MARGIN_RIGHT = {False: 0.15, True: 0.55}  # by whether image rows (with the mask's colour bar at the right) are drawn
GAP_WIDE = {False: 0.5, True: 0.35}  # between panels; image rows' colour bars take their room from the panels
GAP_HIGH = 0.55


def _fixed_margins(fig: Any, width: float, height: float, columns: int, rows: int, image_rows: bool) -> None:
    left, right = MARGIN_LEFT / width, 1 - MARGIN_RIGHT[image_rows] / width
    bottom, top = MARGIN_BOTTOM / height, 1 - MARGIN_TOP / height
    gap = GAP_WIDE[image_rows]
    panel_width = ((right - left) * width - (columns - 1) * gap) / columns
    panel_height = ((top - bottom) * height - (rows - 1) * GAP_HIGH) / rows
    # subplots_adjust takes the gaps as fractions of the mean panel size
    fig.subplots_adjust(left, bottom, right, top, wspace=gap / panel_width, hspace=GAP_HIGH / panel_height)


def plot_kernels(net: nn.Module, max_channels: int = 4) -> Any:
    """A matplotlib figure: one row per continuous layer with its first ``max_channels`` kernels and its mask.

    See the module docstring for what each panel shows.

    Raises:
        ValueError: ``net`` has no continuous convolution layer.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    views = [kernel_view(name, layer, max_channels) for name, layer in continuous_layers(net)]
    if not views:
        raise ValueError("the network has no continuous convolution layers to plot.")
    columns = max(len(view.labels) for view in views) + 1  # no more than the widest layer has (plus the mask)
    image_rows = any(len(v.size) > 1 for v in views)
    width, height = (2.6 if image_rows else 2.4) * columns, 2.2 * len(views)
    fig, grid = plt.subplots(len(views), columns, figsize=(width, height), squeeze=False)
    _fixed_margins(fig, width, height, columns, len(views), image_rows)
    for row, view in enumerate(views):
        axes = list(grid[row])
        drawn = [*axes[: len(view.labels)], axes[-1]]
        for ax in axes[len(view.labels) : -1]:
            ax.axis("off")  # a layer with fewer channels than columns
        bottom = row == len(views) - 1
        if len(view.size) == 1:
            _draw_row_1d(drawn, view, bottom)
        else:
            _draw_row_image(fig, drawn, view, bottom)
        if view.mask is None:
            axes[-1].clear()
            axes[-1].axis("off")
            axes[-1].set_title("no mask", **TITLE)
        else:
            axes[-1].set_title(f"mask: {view.mask_summary()}", **TITLE)
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


def picture_epochs(epochs: int, pictures: int) -> list[int]:
    """The epochs (counted from 1) that end each of ``pictures`` equal shares of an ``epochs`` run: the last one among
    them, and every epoch of a run shorter than ``pictures``."""
    return sorted({round(share * epochs / pictures) for share in range(1, pictures + 1)} - {0})


class KernelPlotCallback(pl.Callback):
    """Saves ``<dirpath>/epoch_<n>.png`` at the end of each of ``pictures`` equal shares of the run's epochs (the last
    at its final epoch, see :func:`picture_epochs`) and sends it to loggers that take images. A picture that cannot be
    written (a full disk) is said in one warning; the run goes on (its checkpoint, if the disk stays full, is what
    stops it, in one line)."""

    def __init__(self, dirpath: str | Path, pictures: int = 5, max_channels: int = 4) -> None:
        self.dirpath = Path(dirpath)
        self.pictures = pictures
        self.max_channels = max_channels

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        if not trainer.is_global_zero or epoch + 1 not in picture_epochs(trainer.max_epochs, self.pictures):
            return
        net = getattr(pl_module, "net", pl_module)
        if not continuous_layers(net):
            return
        try:
            path = save_kernel_plot(net, self.dirpath / f"epoch_{epoch:04d}.png", self.max_channels)
        except OSError as error:
            rank_zero_warn(f"the kernel picture of epoch {epoch + 1} could not be written: {error.strerror or error}.")
            return
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key="kernels", images=[str(path)], step=trainer.global_step)
