"""FlexConv's learnable Gaussian window over kernel positions, and its cropping rule."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from argcheck import DataDim, InvalidArgument, OpenFraction, PositiveFloat, check_arguments
from ckconv.adapters import version_counter
from ckconv.bandlimit import check_max_frequency, min_width
from ckconv.functional import cropped_size, gaussian_mask
from ckconv.hints import OptimHint

# The mask parameters learn at their own rate (optimizer.mask_lr_ratio) and are never decayed: decay would pull the
# width to 0, i.e. shrink every kernel to a single tap.
MASK_HINT = OptimHint(group="mask", weight_decay=False)


@dataclass(frozen=True)
class HostCopy:
    """A mask's width and mean as Python floats, with the tensors and version counters they were read from.

    The crop rule needs the widths on the host; on a GPU every read is a device synchronisation, so the values are
    kept here and read again only when they changed. The tensors themselves are kept (not their ids): a freed
    tensor's id can be reused by a new one, e.g. under ``torch.func.functional_call``, which would otherwise pass
    for the old values.
    """

    width: Tensor
    mean: Tensor
    versions: tuple[int, int]
    widths: tuple[float, ...]
    means: tuple[float, ...]

    def describes(self, width: Tensor, mean: Tensor) -> bool:
        """Whether these values are those of ``width`` and ``mean`` now: same tensors, unchanged since the read."""
        return (
            self.width is width
            and self.mean is mean
            and self.versions == (version_counter(width), version_counter(mean))
        )


class GaussianMask(nn.Module):
    """A Gaussian window ``exp(-1/2 sum_d (x_d - mean_d)^2 / (width_d^2 + eps))`` with a learnable width.

    The mean sits at the kernel's anchor: position +1 (the most recent tap) for causal kernels, 0 for centred ones.

    Args:
        data_dim: number of spatial dimensions.
        init_value: initial width (standard deviation, in the units of the [-1, 1] position grid).
        causal: whether the kernel is causal (1D only); places the mean at +1.
        learn_mean: make the mean a parameter too.
        threshold: mask value below which kernel taps are cropped away (with ``dynamic_cropping``), in (0, 1).
        dynamic_cropping: crop the kernel to the region where the mask exceeds ``threshold``.
        max_frequency: bound on the mask's spectrum per axis (radians per unit of position; a number for every axis,
            or one per axis): the mask applies the width ``sqrt(width^2 + min_width^2)``, ``min_width`` from
            :func:`ckconv.bandlimit.min_width`. ``None``: the width as learnt.
    """

    optim_hints: ClassVar[dict[str, OptimHint]] = {"width": MASK_HINT, "mean": MASK_HINT}

    def __init__(
        self,
        data_dim: DataDim,
        init_value: PositiveFloat = 0.075,
        causal: bool = False,
        learn_mean: bool = False,
        threshold: OpenFraction = 0.1,
        dynamic_cropping: bool = True,
        max_frequency: float | Sequence[float] | None = None,
    ) -> None:
        check_arguments(GaussianMask.__init__, locals())
        super().__init__()
        if causal and data_dim != 1:
            raise InvalidArgument("causal", f"causal=True needs data_dim=1, got data_dim={data_dim}.")
        self.data_dim = data_dim
        self.causal = causal
        self.threshold = threshold
        self.dynamic_cropping = dynamic_cropping
        self.init_value = init_value
        self.width = nn.Parameter(torch.full((data_dim,), float(init_value)))
        mean = torch.full((data_dim,), 1.0 if causal else 0.0)
        if learn_mean:
            self.mean = nn.Parameter(mean)
        else:
            self.register_buffer("mean", mean)
        # Cache (state outside parameters, never saved): the host copy of (width, mean) for the crop rule. Valid
        # while HostCopy.describes(width, mean); a forward pass refreshes it when stale, refresh_mask_widths() for
        # all masks of a network in one transfer.
        self.host_copy: HostCopy | None = None
        # A constant of the layer's grid (not learnt, not saved), kept on the host for the crop rule as well.
        self.min_widths = None if max_frequency is None else min_width(check_max_frequency(max_frequency, data_dim))
        min_widths = None if self.min_widths is None else torch.tensor(self.min_widths)
        self.register_buffer("min_width", min_widths, persistent=False)

    def forward(self, positions: Tensor) -> Tensor:
        """Mask values ``(1, 1, *size)`` at ``positions`` ``(1, d, *size)``."""
        return gaussian_mask(positions, self.mean.to(positions.dtype), self.applied_width().to(positions.dtype))

    def applied_width(self) -> Tensor:
        """The width ``(d,)`` the mask applies: ``width``, or ``sqrt(width^2 + min_width^2)`` with ``max_frequency``."""
        if self.min_width is None:
            return self.width
        return torch.sqrt(self.width.square() + self.min_width.square())

    def cropped_kernel_size(self, kernel_size: Sequence[int]) -> tuple[int, ...]:
        """Kernel size left after cropping with the current widths; unchanged without dynamic cropping.

        Uses :meth:`host_values`: no device read when :func:`refresh_mask_widths` ran since the widths last changed.
        """
        if not self.dynamic_cropping:
            return tuple(kernel_size)
        widths, means = self.host_values()
        if self.min_widths is not None:
            widths = tuple(math.hypot(w, lowest) for w, lowest in zip(widths, self.min_widths))
        return tuple(cropped_size(k, m, w, self.threshold, self.causal) for k, m, w in zip(kernel_size, means, widths))

    def host_values(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(widths, means) as Python floats; read from the device only when they changed since the last read."""
        if self.host_copy is None or not self.host_copy.describes(self.width, self.mean):
            self.store_host_values(torch.stack([self.width.detach(), self.mean.detach()]).float().cpu())
        assert self.host_copy is not None
        return self.host_copy.widths, self.host_copy.means

    def store_host_values(self, values: Tensor) -> None:
        """Record ``values`` = stacked (width, mean) on the host as the current ones."""
        versions = (version_counter(self.width), version_counter(self.mean))
        widths, means = tuple(values[0].tolist()), tuple(values[1].tolist())
        self.host_copy = HostCopy(self.width, self.mean, versions, widths, means)

    def extra_repr(self) -> str:
        band = "" if self.min_widths is None else f", min_width={tuple(round(w, 6) for w in self.min_widths)}"
        return (
            f"data_dim={self.data_dim}, init_value={self.init_value}, causal={self.causal}, "
            f"threshold={self.threshold}, dynamic_cropping={self.dynamic_cropping}{band}"
        )


@torch.no_grad()
def refresh_mask_widths(model: nn.Module) -> None:
    """Copy the width and mean of every mask in ``model`` to the host in one transfer (one device synchronisation
    instead of one per layer). Call it between optimizer steps; forward passes then read no device values."""
    masks = [m for m in model.modules() if isinstance(m, GaussianMask) and m.dynamic_cropping]
    if not masks:
        return
    values = torch.stack([torch.stack([m.width, m.mean]).float() for m in masks]).cpu()  # (n_masks, 2, d)
    for mask, value in zip(masks, values):
        mask.store_host_values(value)
