"""Band-limited kernels: an MFN kernel net's frequencies, and a FlexConv mask's, bounded so that the kernel, sampled
on the training grid, is not aliased (FlexConv, Romero et al., ICLR 2022, "alias-free MAGNets").

Why. A layer samples its kernel net on a grid of k taps over [-1, 1], a step of 2 / (k - 1), whose Nyquist frequency
is pi (k - 1) / 2 radians per unit of position. Higher frequencies of the kernel net are folded onto lower ones on
that grid, so the network learns their aliases. A kernel net whose spectrum stays below the training grid's Nyquist
frequency is sampled faithfully at training: the kernel net itself is the function its taps determine. Other grids
no longer need the bound (a layer resamples its training taps, band-limited, ``CKConv.sample_kernel``), and it costs
accuracy on the training grid (experiments/README.md); it stays for kernels meant to be read as functions.

How. An MFN's output is a sum of products of its L + 1 filters (the linear layers between them only mix units), so
along each axis its spectrum lies within the sum, over the filters, of each filter's highest frequency:
- a sinusoid ``sin(w . x + b)``: ``|w_a|``;
- a Gabor filter (that sinusoid times a Gaussian envelope of inverse width ``gamma``): ``|w_a| + s gamma_a``, the
  envelope's spectrum being a Gaussian of standard deviation ``gamma_a``, of which ``s = ENVELOPE_STDS`` count.
Each filter gets an equal share of the bound, ``max_frequency / (L + 1)`` (the FlexConv paper's split). Along an axis
where a filter's highest unit exceeds its share, every unit's ``w`` and ``gamma`` are multiplied by
``share / highest``: the filter bank is dilated as a whole, its units' relative frequencies kept. The bound holds for
any parameter values, after every optimizer step; the paper reached it with a penalty in the loss instead.

A FlexConv kernel is the kernel net's output times a Gaussian mask of width ``sigma``, whose spectrum is a Gaussian of
standard deviation ``1 / sigma``: the bandwidths of the two add up. A convolution layer with a bound therefore gives
the mask ``MASK_BAND_FRACTION`` of it and the kernel net the rest, and the mask keeps within its part by a smallest
width: it applies ``sqrt(sigma^2 + sigma_min^2)`` with ``sigma_min = ENVELOPE_STDS / part`` (the learnt width widened
in quadrature: a smooth function of ``sigma``, close to it when ``sigma`` is well above ``sigma_min``), 1.3 taps of the
training grid for a bound at its Nyquist frequency. Unbounded, a mask narrower than a tap makes a kernel of one or two
taps whose sum, hence the layer's gain, changes with the grid: the first layer of a default MNIST-1D model learnt a
width of 0.015 (0.3 taps), and the model fell to chance at other lengths.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from argcheck import InvalidArgument

# Standard deviations of a Gabor envelope's Gaussian spectrum counted into the filter's highest frequency: beyond
# 2, a Gaussian keeps 2.3% of its mass on one side (1 std, the paper's choice, leaves 16%).
ENVELOPE_STDS = 2.0

# The part of a masked layer's bound that its mask takes. Measured on MNIST-1D (trained at length 40, seed 0, test
# accuracy at 40 / 80 / 160): one equal share among the kernel net's 4 filters and the mask (1/5) 94.8 / 95.2 / 96.2%,
# 1/3 96.4 / 96.6 / 97.0%, 1/2 96.8 / 96.8 / 96.6%; a mask bounded by the whole bound on its own, not sharing it
# (so the kernel up to twice the Nyquist frequency), 98.4 / 92.8 / 87.6%.
MASK_BAND_FRACTION = 0.5


def grid_nyquist(taps: int) -> float:
    """The Nyquist frequency, in radians per unit of position, of ``taps`` kernel taps over [-1, 1].

    A single tap (position 0 only) is sampled at no other position, on any grid: no frequency aliases (``inf``).
    """
    return math.pi * (taps - 1) / 2 if taps > 1 else math.inf


def check_max_frequency(max_frequency: float | Sequence[float], data_dim: int) -> tuple[float, ...]:
    """``max_frequency`` as one bound per axis, each a number > 0 (``inf``: no bound along that axis).

    Raises:
        InvalidArgument: naming ``max_frequency``.
    """
    values = (max_frequency,) * data_dim if isinstance(max_frequency, int | float) else tuple(max_frequency)
    if len(values) != data_dim or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and v > 0 and not math.isnan(v) for v in values
    ):
        raise InvalidArgument(
            "max_frequency",
            f"max_frequency must be a number > 0 or {data_dim} of them (radians per unit of position; inf: no "
            f"bound), got {max_frequency!r}.",
        )
    return tuple(float(v) for v in values)


def min_width(max_frequency: Sequence[float]) -> tuple[float, ...]:
    """The smallest Gaussian width (standard deviation, in units of position) whose spectrum keeps ``ENVELOPE_STDS``
    standard deviations within ``max_frequency`` (radians per unit, per axis): ``ENVELOPE_STDS / max_frequency``."""
    return tuple(ENVELOPE_STDS / bound for bound in max_frequency)


def band_scale(extent: Tensor, limit: Tensor) -> Tensor:
    """Per-axis factors ``<= 1`` that bring the highest of ``extent`` within ``limit``: ``min(1, limit / highest)``.

    Args:
        extent: ``(H, d)`` highest frequency of each unit along each axis (non-negative).
        limit: ``(d,)`` the bound per axis (``inf``: none).

    Returns:
        ``(d,)``: 1 where the bank fits, else ``limit / highest``. Gradients flow to ``extent`` only where the factor
        is below 1.
    """
    highest = extent.amax(dim=0)  # (d,)
    bounded = torch.isfinite(limit)
    # A finite stand-in where there is no bound, so that the branch where() discards holds no inf (whose gradient,
    # times the zero where() sends back, would be NaN).
    finite_limit = torch.where(bounded, limit, 1.0)
    # limit / max(highest, limit) is 1 where the bank fits, with no gradient to highest there.
    return torch.where(bounded, finite_limit / torch.maximum(highest, finite_limit), 1.0)
