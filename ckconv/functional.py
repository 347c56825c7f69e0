"""Pure functions at the core of ckconv: convolution (direct and FFT), position grids, the Gaussian mask, cropping.

Layout: signals are ``(B, C, *spatial)``; weights follow ``torch.nn.functional.conv{d}d``: ``(C_out, C_in, *k)`` for
dense and ``(C, 1, *k)`` for depthwise (``groups=C``). Every convolution here is a cross-correlation, like torch's.

Alignment. Output position ``t`` is ``y[t] = sum_j w[j] * x[t + j - c]`` per dimension, where ``c`` is the kernel's
anchor index:
- centred ("same" output size): ``c = (k - 1) // 2``, the convention of ``padding="same"`` in torch. For odd ``k`` the
  anchor is the middle tap, i.e. relative position 0 of the grid.
- causal (1D only): ``c = k - 1``. The last tap (relative position +1 of the grid) multiplies the current step, so an
  output never depends on later inputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from argcheck import InvalidArgument

UseFFT = bool | Literal["auto"]

# Kernel sizes (number of taps, the product over dimensions) from which FFT convolution beats direct convolution,
# measured with `python -m bench.layers` on a 2-core CPU (see bench/README.md). Where the FFT cost is nearly flat in
# the kernel size and direct convolution grows linearly with it, the crossover is where they meet.
FFT_CROSSOVER_TAPS: dict[int, int] = {1: 15, 2: 25, 3: 27}

SUPPORTED_DIMS = (1, 2, 3)


# ---------------------------------------------------------------------------------------------------------------
# Argument checks shared by the convolutions
# ---------------------------------------------------------------------------------------------------------------
def check_data_dim(data_dim: int) -> None:
    """Raise :class:`InvalidArgument` unless ``data_dim`` is 1, 2 or 3."""
    if isinstance(data_dim, bool) or not isinstance(data_dim, int) or data_dim not in SUPPORTED_DIMS:
        raise InvalidArgument("data_dim", f"data_dim must be one of {SUPPORTED_DIMS}, got {data_dim!r}.")


def _check_conv_args(x: Tensor, weight: Tensor, bias: Tensor | None, causal: bool, groups: int) -> int:
    data_dim = weight.dim() - 2
    check_data_dim(data_dim)
    if x.dim() != weight.dim():
        raise ValueError(
            f"input must have shape (B, C, *spatial) with {data_dim} spatial dimensions to match the weight "
            f"{tuple(weight.shape)}, got input of shape {tuple(x.shape)}."
        )
    in_channels = x.shape[1]
    if groups not in (1, in_channels):
        raise ValueError(f"groups must be 1 (dense) or in_channels={in_channels} (depthwise), got {groups}.")
    if weight.shape[1] * groups != in_channels:
        raise ValueError(
            f"input has {in_channels} channels but the weight {tuple(weight.shape)} with groups={groups} "
            f"expects {weight.shape[1] * groups}."
        )
    if groups > 1 and weight.shape[0] != in_channels:
        raise ValueError(f"depthwise weight must have {in_channels} output channels, got {weight.shape[0]}.")
    if causal and data_dim != 1:
        raise ValueError(f"causal=True needs data_dim=1 (sequences), got data_dim={data_dim}.")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}.")
    return data_dim


def anchor_index(kernel_size: int, causal: bool) -> int:
    """Index of the kernel tap that multiplies the input at the output's own position."""
    return kernel_size - 1 if causal else (kernel_size - 1) // 2


def _paddings(kernel_size: Sequence[int], causal: bool) -> list[int]:
    """``F.pad`` amounts (last dimension first) that make a 'valid' convolution return the input's size."""
    pads: list[int] = []
    for k in reversed(kernel_size):
        left = anchor_index(k, causal)
        pads += [left, k - 1 - left]
    return pads


# ---------------------------------------------------------------------------------------------------------------
# Direct convolution
# ---------------------------------------------------------------------------------------------------------------
def direct_conv(
    x: Tensor, weight: Tensor, bias: Tensor | None = None, *, causal: bool = False, groups: int = 1
) -> Tensor:
    """Convolution in the spatial domain, output the same size as the input.

    Args:
        x: input ``(B, C_in, *spatial)``.
        weight: ``(C_out, C_in, *k)`` (``groups=1``) or ``(C_in, 1, *k)`` (``groups=C_in``); any sizes, odd or even.
        bias: optional ``(C_out,)``.
        causal: 1D only; output ``t`` sees inputs ``<= t``.
        groups: 1 (dense) or ``C_in`` (depthwise).

    Returns:
        ``(B, C_out, *spatial)``.
    """
    data_dim = _check_conv_args(x, weight, bias, causal, groups)
    x = F.pad(x, _paddings(weight.shape[2:], causal))
    return getattr(F, f"conv{data_dim}d")(x, weight, bias, groups=groups)


# ---------------------------------------------------------------------------------------------------------------
# FFT convolution
# ---------------------------------------------------------------------------------------------------------------
# Per element, torch's CPU FFT runs odd real-FFT sizes 2-3x slower than nearby sizes with factors of two,
# sizes with a single factor 2 up to 1.5x slower, and above 256 points sizes with fewer than three factors of two
# 1.3-2.5x slower (e.g. 1125 vs 1152 points: 2.6x the time; bench/README.md, "FFT sizes"). These sizes are also
# among those cuFFT documents as fast (2^a 3^b 5^c 7^d).
_FFT_SIZE_MULTIPLE_LARGE = 8
_FFT_SIZE_MULTIPLE_SMALL = 4
_FFT_SIZE_SMALL_LIMIT = 256


def _is_5_smooth(m: int) -> bool:
    for p in (2, 3, 5):
        while m % p == 0:
            m //= p
    return m == 1


@cache
def fast_fft_size(n: int) -> int:
    """The smallest fast FFT size ``>= n``: a power of two below 4; otherwise a number whose only prime factors are 2,
    3 and 5 and that is a multiple of 4 (up to 256) or of 8 (above), the sizes measured fastest per element."""
    if n <= _FFT_SIZE_MULTIPLE_SMALL:
        return 1 << max(n - 1, 0).bit_length()
    multiple = _FFT_SIZE_MULTIPLE_SMALL if n <= _FFT_SIZE_SMALL_LIMIT else _FFT_SIZE_MULTIPLE_LARGE
    m = -(-n // multiple) * multiple
    while not _is_5_smooth(m // multiple):
        m += multiple
    return m


def min_fft_size(n: int, k: int, start: int) -> int:
    """Smallest fast FFT size for which the circular convolution of an ``n``-long input with a ``k``-tap kernel is
    exact on the kept window ``[start, start + n)`` of the linear one.

    A circular size ``m`` adds ``z[t + m]`` and ``z[t - m]`` of the linear result ``z`` (length ``n + k - 1``) to
    ``z[t]``; both are zero on the window when ``m >= n + k - 1 - start`` and ``m >= n + start``. Centred kernels
    (``start = k // 2``) thus need about ``n + k / 2`` instead of ``n + k``: a 48x48 instead of a 64x64 FFT for a
    32x32 image and a 33x33 kernel. Causal ones (``start = 0``) need the full ``n + k - 1``.
    """
    return fast_fft_size(max(n + k - 1 - start, n + start, k))


def _low_precision(dtype: torch.dtype) -> bool:
    return dtype in (torch.float16, torch.bfloat16)


def _zero_padded(x: Tensor, sizes: Sequence[int], starts: Sequence[int] | None = None) -> Tensor:
    """``x`` placed at ``starts`` (default: the origin) of a zero tensor of spatial ``sizes``: the input before its FFT
    (at the origin) and the output gradient before its FFT (back at the kept window), one routine for both. Only the
    padding is zeroed; ``x`` is copied into the rest."""
    starts = starts or [0] * len(sizes)
    out = x.new_empty(*x.shape[:2], *sizes)
    for dim, (start, n, size) in enumerate(zip(starts, x.shape[2:], sizes), start=2):
        # Zero the slabs before and after x along this dimension (full extent in the others; overlaps are harmless).
        out.narrow(dim, 0, start).zero_()
        out.narrow(dim, start + n, size - start - n).zero_()
    out[(slice(None), slice(None), *(slice(a, a + n) for a, n in zip(starts, x.shape[2:])))] = x
    return out


class _FFTCorrelation(torch.autograd.Function):
    """Linear cross-correlation by real FFTs, with a backward written out in the frequency domain.

    With ``a`` the input zero-padded to the FFT size, ``b`` the flipped kernel zero-padded, and ``z = a (*) b`` their
    circular convolution (equal to the linear one on the kept window, see :func:`min_fft_size`), the output is that
    window of ``z``.
    The adjoints of a circular convolution are circular correlations, so with ``G`` the FFT of the output gradient
    placed back at the window: ``dA = G conj(B)`` and ``dB = sum_batch G conj(A)``. This needs one real FFT and two
    inverse real FFTs, where autograd's generic backward runs a full complex FFT for ``rfftn`` and zero-fills and
    copies the padded gradient for the crop.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, fft_sizes: list[int], starts: list[int], groups: int) -> Tensor:
        data_dim = len(fft_sizes)
        dims = tuple(range(-data_dim, 0))
        x_f = torch.fft.rfftn(_zero_padded(x, fft_sizes), dim=dims)  # (B, C_in, *freq)
        w_f = torch.fft.rfftn(weight.flip(dims), s=fft_sizes, dim=dims)  # (C_out, C_in or 1, *freq)
        # Channel mixing per frequency for dense kernels: (B, I, F) x (O, I, F) -> (B, O, F).
        y_f = torch.einsum("bi...,oi...->bo...", x_f, w_f) if groups == 1 else x_f * w_f[:, 0]
        y = torch.fft.irfftn(y_f, s=fft_sizes, dim=dims)  # (B, C_out, *fft_sizes)
        window = (slice(None), slice(None), *(slice(a, a + n) for a, n in zip(starts, x.shape[2:])))
        ctx.save_for_backward(x_f, w_f)
        ctx.meta = (fft_sizes, starts, groups, tuple(x.shape[2:]), tuple(weight.shape[2:]), dims)
        return y[window]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y: Tensor) -> tuple[Tensor | None, ...]:
        x_f, w_f = ctx.saved_tensors
        fft_sizes, starts, groups, spatial, ksize, dims = ctx.meta
        g_f = torch.fft.rfftn(_zero_padded(grad_y, fft_sizes, starts), dim=dims)
        grad_x = grad_w = None
        # The kernel's gradient first: the input's may then overwrite g_f in place.
        if ctx.needs_input_grad[1]:
            if groups == 1:
                gw_f = torch.einsum("bo...,bi...->oi...", g_f, x_f.conj())
            else:
                gw_f = torch.linalg.vecdot(x_f, g_f, dim=0).unsqueeze(1)  # sum_b conj(x_f) g_f
            full = torch.fft.irfftn(gw_f, s=fft_sizes, dim=dims)
            grad_w = full[(slice(None), slice(None), *(slice(0, k) for k in ksize))].flip(dims)
        if ctx.needs_input_grad[0]:
            conj_w = w_f.conj().resolve_conj()  # the kernel's spectrum is small: conjugate it once
            if groups == 1:
                gx_f = torch.einsum("bo...,oi...->bi...", g_f, conj_w)
            else:
                gx_f = g_f.mul_(conj_w[:, 0])  # g_f is not needed any more
            full = torch.fft.irfftn(gx_f, s=fft_sizes, dim=dims)
            grad_x = full[(slice(None), slice(None), *(slice(0, n) for n in spatial))]
        return grad_x, grad_w, None, None, None


def fft_conv(x: Tensor, weight: Tensor, bias: Tensor | None = None, *, causal: bool = False, groups: int = 1) -> Tensor:
    """Linear (not circular) convolution through the FFT; same semantics and arguments as :func:`direct_conv`.

    Both operands are zero-padded to a fast FFT size (see :func:`min_fft_size`) large enough that no wrapped-around
    term reaches the outputs that are kept. The FFT runs in float32 even under autocast (half-precision FFTs lose
    accuracy and cuFFT restricts them to powers of two); a float16/bfloat16 input therefore gives a float32 output,
    as autocast's float32 ops do.

    A NaN or infinity in ``x`` makes every position of its example NaN in each output channel that reads its channel,
    the positions before it included, even with ``causal=True``: every frequency sums all positions, and the inverse
    FFT of an infinite spectrum is NaN. The direct path keeps it to the outputs whose window holds it (NaN or ±inf).
    Finite inputs are causal on both paths, to rounding.
    """
    data_dim = _check_conv_args(x, weight, bias, causal, groups)
    spatial = x.shape[2:]
    ksize = weight.shape[2:]
    # Cross-correlation is convolution with the flipped kernel: y[t] = full_conv(x, flip(w))[t + k - 1 - c].
    starts = [k - 1 - anchor_index(k, causal) for k in ksize]
    fft_sizes = [min_fft_size(n, k, a) for n, k, a in zip(spatial, ksize, starts)]

    with torch.autocast(device_type=x.device.type, enabled=False):
        if _low_precision(x.dtype) or _low_precision(weight.dtype):
            x, weight = x.float(), weight.float()
            bias = bias.float() if bias is not None else None
        y = _FFTCorrelation.apply(x, weight, fft_sizes, starts, groups)
        if bias is not None:
            y = y + bias.view(-1, *([1] * data_dim))
    return y


def prefers_fft(kernel_size: Sequence[int], use_fft: UseFFT = "auto") -> bool:
    """Pick FFT or direct convolution: forced by ``use_fft``, or for "auto" by the measured crossover."""
    if use_fft == "auto":
        return math.prod(kernel_size) >= FFT_CROSSOVER_TAPS[len(kernel_size)]
    if isinstance(use_fft, bool):
        return use_fft
    raise InvalidArgument("use_fft", f"use_fft must be True, False or 'auto', got {use_fft!r}.")


def conv(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    *,
    causal: bool = False,
    groups: int = 1,
    use_fft: UseFFT = "auto",
) -> Tensor:
    """Convolution that picks the FFT or the direct path per call (see :func:`prefers_fft`)."""
    impl = fft_conv if prefers_fft(weight.shape[2:], use_fft) else direct_conv
    return impl(x, weight, bias, causal=causal, groups=groups)


# ---------------------------------------------------------------------------------------------------------------
# Positions, mask and cropping
# ---------------------------------------------------------------------------------------------------------------
def kernel_positions(
    kernel_size: Sequence[int],
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
    causal: bool = False,
) -> Tensor:
    """Relative positions of the kernel taps: a grid over ``[-1, 1]^d`` of shape ``(1, d, *kernel_size)``.

    A dimension of size 1 holds the anchor tap only: position 0, or +1 (the current step) for a causal kernel, where
    the mask is centred; at 0 a causal FlexConv of one tap sampled its mask 1 unit away from its centre, about 0.
    """
    check_data_dim(len(kernel_size))
    lone = 1.0 if causal else 0.0
    axes = []
    for k in kernel_size:
        if k <= 0:
            raise ValueError(f"kernel_size entries must be positive, got {tuple(kernel_size)}.")
        axes.append(torch.linspace(-1.0, 1.0, k, device=device, dtype=dtype) if k > 1 else torch.full((1,), lone))
    axes = [a.to(device=device, dtype=dtype) for a in axes]
    return torch.stack(torch.meshgrid(*axes, indexing="ij")).unsqueeze(0)


def bandlimited_resampling(source: Tensor, target: Tensor, source_step: float, target_step: float) -> Tensor:
    """The matrix ``(len(target), len(source))`` that takes the samples of a function on the evenly spaced positions
    ``source`` to its values on ``target``, low-passed to the coarser grid's Nyquist frequency.

    The samples stand for the band-limited function they determine (Whittaker-Shannon interpolation, nothing
    beyond the samples given); with ``H = max(source_step, target_step)`` that function, low-passed to ``pi / H``
    radians per unit, takes at ``y`` the value ``sum_i v_i (source_step / H) sinc((y - x_i) / H)``. On a finer
    target grid this is the interpolation itself (the source samples are kept where the grids meet); on a coarser
    one it is the ideal anti-aliasing filter followed by sampling, so nothing above the target's Nyquist frequency
    folds onto lower frequencies.

    Args:
        source: ``(n,)`` positions of the samples, ``source_step`` apart (one position: a grid of that step).
        target: ``(m,)`` positions to evaluate, ``target_step`` apart.
        source_step, target_step: the two grids' spacings (> 0).

    Returns:
        ``(m, n)`` in the dtype of ``source``, computed in float64.
    """
    coarser = max(source_step, target_step)
    offsets = (target.double()[:, None] - source.double()[None, :]) / coarser
    return ((source_step / coarser) * torch.sinc(offsets)).to(source.dtype)


def along_axis(x: Tensor, axis: int, matrix: Tensor) -> Tensor:
    """``matrix`` ``(m, n)`` applied to the ``n`` entries of ``x`` along ``axis``: that axis becomes ``m`` long."""
    return torch.movedim(torch.movedim(x, axis, -1) @ matrix.T, -1, axis)


# Where a signal's samples sit in the extent they cover: at the centres of equal cells, or from one end to the other.
InputGrid = Literal["cells", "ends"]


def resample(x: Tensor, size: Sequence[int], grid: InputGrid = "cells") -> Tensor:
    """``x`` ``(B, C, *spatial)`` resampled to ``size`` per spatial axis, band-limited (``bandlimited_resampling``:
    low-passed to the new grid's Nyquist frequency where it is coarser). ``grid`` says where the samples sit in the
    extent they cover: at the centres of equal cells, ``(i + 1/2) / n`` (``"cells"``, an image's pixels), or from one
    end to the other, ``i / (n - 1)`` (``"ends"``)."""
    for axis, n in enumerate(size):
        m = x.shape[2 + axis]
        if n == m:
            continue
        source, source_step = _sample_positions(m, grid)
        target, target_step = _sample_positions(n, grid)
        matrix = bandlimited_resampling(source, target, source_step, target_step)
        x = along_axis(x, 2 + axis, matrix.to(device=x.device, dtype=x.dtype))
    return x


def _sample_positions(n: int, grid: InputGrid) -> tuple[Tensor, float]:
    """Positions of ``n`` samples over [0, 1] on ``grid`` and their step."""
    if grid == "ends" and n > 1:
        return torch.linspace(0, 1, n, dtype=torch.float64), 1 / (n - 1)
    return (torch.arange(n, dtype=torch.float64) + 0.5) / n, 1 / n


# Added to the squared width so that the mask's gradient stays finite as the width goes to 0 (ccnn PR #1).
MASK_EPS = 1e-8


def gaussian_mask(positions: Tensor, mean: Tensor, width: Tensor) -> Tensor:
    """FlexConv's window ``exp(-1/2 * sum_d (x_d - mean_d)^2 / (width_d^2 + eps))``.

    Args:
        positions: ``(1, d, *size)``.
        mean: ``(d,)`` centre of the window.
        width: ``(d,)`` standard deviation of the window (in position units; the grid spans [-1, 1]).

    Returns:
        ``(1, 1, *size)``, values in (0, 1].
    """
    shape = (1, -1) + (1,) * (positions.dim() - 2)
    z = (positions - mean.view(shape)) ** 2 / (width.view(shape) ** 2 + MASK_EPS)
    return torch.exp(-0.5 * z.sum(dim=1, keepdim=True))


def mask_radius(width: float, threshold: float) -> float:
    """Distance from the mean at which a Gaussian of this width falls to ``threshold``."""
    return abs(width) * math.sqrt(-2.0 * math.log(threshold))


def cropped_size(kernel_size: int, mean: float, width: float, threshold: float, causal: bool) -> int:
    """Number of taps kept along one dimension when the mask is below ``threshold`` outside them.

    Crops keep the anchor aligned: causal kernels keep their most recent taps (the end of the grid); centred kernels
    are cropped symmetrically around their anchor, keeping every tap whose position ``x`` satisfies
    ``|x| <= max(|mean - r|, |mean + r|)`` (``r`` = :func:`mask_radius`), like the original.
    """
    if kernel_size <= 1 or not 0.0 < threshold < 1.0:
        return kernel_size
    step = 2.0 / (kernel_size - 1)
    radius = mask_radius(width, threshold)
    if causal:
        # Keep positions >= mean - radius. floor() keeps one tap more than strictly needed, as the original did.
        lowest = mean - radius
        if lowest <= -1.0:
            return kernel_size
        first = math.floor((lowest + 1.0) / step + 1e-9)
        return max(1, kernel_size - first)
    reach = max(abs(mean - radius), abs(mean + radius))
    if reach >= 1.0:
        return kernel_size
    if kernel_size % 2 == 1:
        half = math.floor(reach / step + 1e-9)  # taps on each side of the middle one
        return 2 * half + 1
    half = math.floor(reach / step + 0.5 + 1e-9)  # positions +-(j - 1/2) * step
    return max(2, 2 * half)


def crop_slices(kernel_size: Sequence[int], cropped: Sequence[int], causal: bool) -> tuple[slice, ...]:
    """Slices over the spatial dimensions of a kernel that keep ``cropped`` taps per dimension, anchor aligned."""
    slices = []
    for k, c in zip(kernel_size, cropped):
        start = k - c if causal else (k - c) // 2
        slices.append(slice(start, start + c))
    return tuple(slices)
