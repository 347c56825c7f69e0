"""Continuous-kernel convolutions (CKConv, FlexConv and their separable variants) and the discrete baselines.

A continuous kernel is a small network over relative positions in [-1, 1]^d. Each forward pass samples it on the
training grid (``kernel_size`` taps at the training size ``input_size``). At another input size the same extent has
proportionally more or fewer taps, and the kernel there is the band-limited function its training taps determine,
low-passed to the new grid's Nyquist frequency where that grid is coarser, its values rescaled by the ratio of the grid
steps so that the sum over taps keeps approximating the same continuous convolution (``CKConv.sample_kernel``). So the
kernel a network learnt on its training grid is the kernel it uses on every grid: nothing the training grid folded is
unfolded on a finer one, and nothing a coarser one cannot hold is folded there. ``kernel_bandlimit`` additionally
keeps the kernel net's and the mask's frequencies below the training grid's Nyquist frequency (``ckconv.bandlimit``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from argcheck import (
    DataDim,
    Fraction,
    InvalidArgument,
    PositiveFloat,
    PositiveInt,
    accepted_arguments,
    check_arguments,
    check_choice,
    prefixed_arguments,
)
from ckconv.bandlimit import MASK_BAND_FRACTION, grid_nyquist
from ckconv.functional import InputGrid, along_axis, bandlimited_resampling, conv, crop_slices, kernel_positions
from ckconv.kernels import KERNEL_NETS, build_kernel_net
from ckconv.linear import PointwiseLinear
from ckconv.mask import GaussianMask

KernelSize = int | Sequence[int] | Literal["same", "full"]

# FlexConv places the kernel net's Gabor envelopes inside the initial mask: init_spatial_value = 1.667 * mask width.
MASK_TO_SPATIAL_INIT = 1.667

# Arguments of a kernel net that the layer sets itself (from its own arguments), so kernel_options may not: the
# position dimension, the output channels, causality, the frequency bound; a masked layer also sets the initial
# extent of the Gabor centres from its mask (unless kernel_options gives it).
KERNEL_ARGUMENTS_SET_BY_LAYER = ("data_dim", "out_channels", "causal", "max_frequency")
# Arguments of the mask that a masked layer sets itself.
MASK_ARGUMENTS_SET_BY_LAYER = ("data_dim", "causal", "max_frequency")


def _as_tuple(value: int | Sequence[int], data_dim: int, name: str) -> tuple[int, ...]:
    values = (value,) * data_dim if isinstance(value, int) else tuple(value) if isinstance(value, Sequence) else ()
    if len(values) != data_dim or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        raise InvalidArgument(name, f"{name} must be a positive int or {data_dim} positive ints, got {value!r}.")
    return values


def _check_options(argument: str, options: Mapping[str, Any] | None, set_by_layer: tuple[str, ...]) -> dict[str, Any]:
    """``options`` as a dict; refuse one that is not a mapping, or that sets what the layer sets itself."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise InvalidArgument(argument, f"{argument} must be a mapping of keyword arguments, got {options!r}.")
    for key in options:
        if key in set_by_layer:
            raise InvalidArgument(
                f"{argument}.{key}", f"{argument}.{key} is set by the layer itself (from its own arguments)."
            )
    return dict(options)


def resolve_kernel_size(
    kernel_size: KernelSize, input_size: int | Sequence[int] | None, data_dim: int
) -> tuple[int, ...]:
    """Kernel taps per dimension at the training size: "same" -> n, "full" -> 2n - 1, or the given ints."""
    if kernel_size in ("same", "full"):
        if input_size is None:
            raise InvalidArgument(
                "input_size",
                f"input_size (the training length or resolution) is needed for kernel_size={kernel_size!r}, got None; "
                "pass it, or give kernel_size as taps per dimension.",
            )
        sizes = _as_tuple(input_size, data_dim, "input_size")
        return sizes if kernel_size == "same" else tuple(2 * n - 1 for n in sizes)
    if isinstance(kernel_size, str):
        raise InvalidArgument(
            "kernel_size", f"kernel_size must be 'same', 'full', an int or a tuple of ints, got {kernel_size!r}."
        )
    return _as_tuple(kernel_size, data_dim, "kernel_size")


def resampled_size(
    kernel_size: int, train_size: int, new_size: int, causal: bool, input_grid: InputGrid = "cells"
) -> int:
    """Taps that cover the same extent as ``kernel_size`` taps did at ``train_size`` when the input has ``new_size``.

    The input's step shrinks by ``new_size / train_size`` when its samples are the centres of equal cells
    (``input_grid="cells"``: an image's pixels, an audio clip's samples) and by ``(new_size - 1) / (train_size - 1)``
    when they run from one end of the extent to the other (``"ends"``: ``linspace(0, 1, n)``); the kernel's taps follow,
    so that a tap stays one input step apart.
    """
    if new_size == train_size or kernel_size == 1:
        return kernel_size
    ends = input_grid == "ends" and train_size > 1 and new_size > 1
    ratio = (new_size - 1) / (train_size - 1) if ends else new_size / train_size
    if not causal and kernel_size % 2 == 1:
        return 2 * max(0, round((kernel_size - 1) // 2 * ratio)) + 1  # keep a middle tap at position 0
    return max(1, round((kernel_size - 1) * ratio) + 1)


def _check_bandlimit(bandlimit: float | None, kernel_type: str) -> None:
    """A bound needs a kernel net whose spectrum follows from its parameters: one that takes ``max_frequency``."""
    if bandlimit is not None and "max_frequency" not in accepted_arguments(KERNEL_NETS[kernel_type]):
        bounded = ", ".join(name for name, net in KERNEL_NETS.items() if "max_frequency" in accepted_arguments(net))
        raise InvalidArgument(
            "kernel_bandlimit",
            f"kernel_bandlimit needs a kernel net whose frequencies follow from its parameters ({bounded}), got "
            f"kernel_type={kernel_type!r}.",
        )


class _Convolution(nn.Module):
    """What every convolution layer here shares: argument checks, the input check and the forward pass (depthwise or
    dense convolution with the layer's kernel, then the optional pointwise channel mixer). Subclasses provide
    ``kernel_for`` and create their own parameters (``bias``, ``channel_mixer``); this class creates none, so it does
    not change the order in which subclasses draw their random initialisation."""

    bias: nn.Parameter | None
    channel_mixer: PointwiseLinear | None
    # Whether the kernel is continuous: a kernel network sampled on a grid, which takes ``input_size``.
    continuous: ClassVar[bool] = False

    def __init__(
        self,
        in_channels: PositiveInt,
        out_channels: PositiveInt,
        data_dim: DataDim,
        causal: bool,
        use_fft: bool | Literal["auto"],
        separable: bool,
    ) -> None:
        check_arguments(_Convolution.__init__, locals())
        super().__init__()
        if causal and data_dim != 1:
            raise InvalidArgument("causal", f"causal=True needs data_dim=1 (sequences), got data_dim={data_dim}.")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.data_dim = data_dim
        self.causal = causal
        self.use_fft = use_fft
        self.separable = separable

    def kernel_for(self, x: Tensor) -> Tensor:
        """The kernel to apply to ``x``: ``(C_in, 1, *k)`` when separable, else ``(C_out, C_in, *k)``."""
        raise NotImplementedError

    def check_input(self, x: Tensor) -> None:
        """Raise a ValueError unless ``x`` is a floating-point ``(B, in_channels, *spatial)`` with ``data_dim`` spatial
        dimensions (an integer input was converted by the FFT path and refused by the direct one)."""
        if not x.is_floating_point():
            raise ValueError(f"{type(self).__name__} expects a floating-point input, got {x.dtype}.")
        if x.dim() != self.data_dim + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} expects input of shape (B, {self.in_channels}, "
                f"{', '.join(['n'] * self.data_dim)}) (in_channels={self.in_channels}, data_dim={self.data_dim}), "
                f"got {tuple(x.shape)}."
            )

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        if x.numel() == 0:  # an empty batch or grid, as torch's convolutions take it (the FFT cannot plan for it)
            return x.new_zeros((x.shape[0], self.out_channels, *x.shape[2:]))
        groups = self.in_channels if self.separable else 1
        kernel = self.kernel_for(x)
        if self.channel_mixer is None:
            return conv(x, kernel, self.bias, causal=self.causal, groups=groups, use_fft=self.use_fft)
        # The convolution's bias enters the mixer's as W b: one pass less over the activations, forward and backward.
        y = conv(x, kernel, None, causal=self.causal, groups=groups, use_fft=self.use_fft)
        return self.channel_mixer(y, input_offset=self.bias)


class CKConv(_Convolution):
    """Continuous-kernel convolution: a kernel network sampled on a position grid, applied by direct or FFT conv.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        data_dim: number of spatial dimensions (1, 2 or 3).
        kernel_size: "same" (as large as the training input), "full" (2n - 1) or taps per dimension.
        input_size: training length or resolution; needed for "same"/"full", and enables resampling at other sizes.
        input_grid: where the input's samples sit, which sets how its step changes with its size: ``"cells"``, at the
            centres of equal cells (pixels, audio samples: the step scales by the size ratio), or ``"ends"``, from one
            end of the extent to the other (``linspace``: by the ratio of the sizes less one). See ``resampled_size``.
        causal: 1D only; output ``t`` depends on inputs ``<= t`` (for finite inputs: on the FFT path a NaN or
            infinity reaches every position, see ``functional.fft_conv``).
        bias: learnable bias after the convolution.
        use_fft: ``True``, ``False`` or ``"auto"`` (FFT above the measured crossover, see ``functional.prefers_fft``).
        separable: depthwise continuous convolution followed by a pointwise channel mixer (fewer parameters).
        kernel_type: kernel network name in ``ckconv.kernels.KERNEL_NETS``.
        kernel_options: the kernel network's own keyword arguments (``hidden_channels``, ``num_layers``,
            ``omega_0``, ``bias``, ...; see its signature); each must be one it takes. The layer sets
            ``data_dim``, ``out_channels``, ``causal`` and ``max_frequency`` itself, where the net takes them.
        kernel_bandlimit: bound the kernel's frequencies by this fraction (in (0, 1]) of the Nyquist frequency of the
            training grid (``kernel_size`` taps over [-1, 1]), so that the kernel net itself holds nothing that the
            training grid folds (FlexConv's alias-free MAGNets). Not needed to run at other sizes: every kernel is
            resampled from its training taps (see :meth:`sample_kernel`). A mask, if any, takes half of the bound
            and the kernel net's ``num_layers + 1`` filters share the rest equally (``ckconv.bandlimit``). Kernel nets
            whose spectrum follows from their parameters only (those that take ``max_frequency``). ``None``: no bound.
        kernel_init_scale: a factor on the kernel network's initial output weights (after the Chang scaling, if
            any): the sampled kernel starts that much larger or smaller.
        chang_initialize: scale the kernel network's output layer by ``sqrt(1 / fan_in)`` so that the sampled kernel
            keeps the signal variance; applied once, here, from the kernel size left after the initial crop.

    Raises:
        InvalidArgument: naming the argument of this signature; a kernel-network argument is named
            ``kernel_options.<its name>``.
    """

    continuous = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        data_dim: int = 1,
        *,
        kernel_size: PositiveInt | Sequence[int] | Literal["same", "full"] = "same",
        input_size: int | Sequence[int] | None = None,
        input_grid: InputGrid = "cells",
        causal: bool = False,
        bias: bool = True,
        use_fft: bool | Literal["auto"] = "auto",
        separable: bool = False,
        kernel_type: str = "MAGNet",
        kernel_options: Mapping[str, Any] | None = None,
        kernel_bandlimit: Fraction | None = None,
        kernel_init_scale: PositiveFloat = 1.0,
        chang_initialize: bool = True,
    ) -> None:
        super().__init__(in_channels, out_channels, data_dim, causal, use_fft, separable)
        check_arguments(CKConv.__init__, locals())
        kernel_kwargs = _check_options("kernel_options", kernel_options, KERNEL_ARGUMENTS_SET_BY_LAYER)
        check_choice("kernel_type", kernel_type, tuple(KERNEL_NETS))
        _check_bandlimit(kernel_bandlimit, kernel_type)
        self.kernel_size = resolve_kernel_size(kernel_size, input_size, data_dim)
        self.input_size = None if input_size is None else _as_tuple(input_size, data_dim, "input_size")
        self.input_grid = input_grid
        self.kernel_bandlimit = kernel_bandlimit
        # The bound on the kernel's frequencies per axis (radians per unit of position), or None.
        self.max_frequency = (
            None if kernel_bandlimit is None else tuple(kernel_bandlimit * grid_nyquist(k) for k in self.kernel_size)
        )
        self.mask: GaussianMask | None = self._build_mask()

        accepted = accepted_arguments(KERNEL_NETS[kernel_type])
        if self.mask is not None and "init_spatial_value" in accepted:
            kernel_kwargs.setdefault("init_spatial_value", MASK_TO_SPATIAL_INIT * self.mask.init_value)
        if self.max_frequency is not None:
            net_part = 1.0 - (MASK_BAND_FRACTION if self.mask is not None else 0.0)
            kernel_kwargs["max_frequency"] = tuple(net_part * bound for bound in self.max_frequency)
        if "causal" in accepted:
            kernel_kwargs["causal"] = causal
        with prefixed_arguments("kernel_options."):
            self.kernel_net = build_kernel_net(
                kernel_type,
                data_dim=data_dim,
                out_channels=in_channels if separable else in_channels * out_channels,
                **kernel_kwargs,
            )
        conv_channels = in_channels if separable else out_channels
        self.bias = nn.Parameter(torch.zeros(conv_channels)) if bias else None
        self.channel_mixer = PointwiseLinear(in_channels, out_channels, bias=bias) if separable else None
        self._initialize_output_layer(chang_initialize, kernel_init_scale)

    def _build_mask(self) -> GaussianMask | None:
        return None

    @torch.no_grad()
    def _initialize_output_layer(self, chang_initialize: bool, scale: float) -> None:
        if chang_initialize:
            taps = self.mask.cropped_kernel_size(self.kernel_size) if self.mask is not None else self.kernel_size
            fan_in = math.prod(taps) * (1 if self.separable else self.in_channels)
            self.kernel_net.output_layer.weight.mul_(math.sqrt(1.0 / fan_in))
        if scale != 1.0:
            self.kernel_net.output_layer.weight.mul_(scale)

    # ---------------------------------------------------------------------------------------------------------
    def kernel_size_for(self, spatial: Sequence[int]) -> tuple[int, ...]:
        """Taps per dimension for an input of size ``spatial`` (resampled when it differs from ``input_size``)."""
        if self.input_size is None:
            return self.kernel_size
        return tuple(
            resampled_size(k, n_train, n, self.causal, self.input_grid)
            for k, n_train, n in zip(self.kernel_size, self.input_size, spatial)
        )

    def cropped_positions(self, size: Sequence[int]) -> Tensor:
        """Positions ``(1, d, *k)`` of the taps kept of a ``size`` grid: all of them, or the mask's crop."""
        reference = self.kernel_net.output_layer.weight
        positions = kernel_positions(size, reference.device, reference.dtype, self.causal)  # (1, d, *size)
        if self.mask is None:
            return positions
        cropped = self.mask.cropped_kernel_size(size)
        return positions[(slice(None), slice(None), *crop_slices(size, cropped, self.causal))]

    def sample_kernel(self, spatial: Sequence[int]) -> Tensor:
        """The (masked, cropped) kernel for an input of size ``spatial``.

        The kernel net and the mask are sampled on the training grid only. On another grid the kernel is the one
        those training taps determine: their band-limited interpolation, low-passed to the new grid's Nyquist
        frequency where it is coarser (``functional.bandlimited_resampling``, one axis at a time), its values scaled
        by the ratio of the grid steps so that the sum over taps keeps approximating the same continuous
        convolution. Why not sample the kernel net at the new positions: what the network learnt is the kernel on
        the training grid, where any content of the kernel net above that grid's Nyquist frequency is folded onto
        lower frequencies; a finer grid would sample that content as it is (another kernel: an unbounded model fell
        to chance at other lengths), and a coarser grid would fold what lies between the two Nyquist frequencies.

        Returns:
            ``(C_in, 1, *k)`` when separable, else ``(C_out, C_in, *k)``.
        """
        trained = self.kernel_size
        size = self.kernel_size_for(spatial)
        positions = self.cropped_positions(trained)  # (1, d, *k)
        kernel = self.kernel_net(positions)  # (1, C_k, *k)
        if self.mask is not None:
            kernel = kernel * self.mask(positions)
        if size != trained:
            kernel = self._resample(kernel, trained, size)
        k_shape = kernel.shape[2:]
        if self.separable:
            return kernel.reshape(self.in_channels, 1, *k_shape)
        return kernel.reshape(self.out_channels, self.in_channels, *k_shape)

    def _resample(self, kernel: Tensor, trained: Sequence[int], size: Sequence[int]) -> Tensor:
        """``kernel`` ``(1, C_k, *cropped)`` on the training grid (``trained`` taps before the crop), resampled to a
        grid of ``size`` taps (cropped by the mask as the training grid is)."""
        kept_trained = self.mask.cropped_kernel_size(trained) if self.mask is not None else tuple(trained)
        kept = self.mask.cropped_kernel_size(size) if self.mask is not None else tuple(size)
        from_slices = crop_slices(trained, kept_trained, self.causal)
        to_slices = crop_slices(size, kept, self.causal)
        for axis, (k, s) in enumerate(zip(trained, size)):
            if s == k:
                continue
            if s == 1:
                # A kernel of several taps resampled to one lies within one sample spacing of the new grid: that tap
                # carries its sum over the training grid, the limit of the rescaled low-pass as the new step grows.
                kernel = kernel.sum(dim=2 + axis, keepdim=True)
                continue
            source = torch.linspace(-1.0, 1.0, k, dtype=torch.float64)[from_slices[axis]]
            target = torch.linspace(-1.0, 1.0, s, dtype=torch.float64)[to_slices[axis]]
            source_step, target_step = 2 / (k - 1), 2 / (s - 1)
            # Rescaled by the step ratio: the sum over taps approximates the integral of the same kernel.
            matrix = bandlimited_resampling(source, target, source_step, target_step) * (target_step / source_step)
            matrix = matrix.to(device=kernel.device, dtype=kernel.dtype)
            kernel = along_axis(kernel, 2 + axis, matrix)
        return kernel

    def kernel_for(self, x: Tensor) -> Tensor:
        # Sampled anew at every call, in training and evaluation alike: evaluation once reused the last kernel
        # (cache_eval_kernels), which saved 0.5% of an sMNIST CCNN-4,140 eval forward and could go stale on writes
        # through ``param.data``; see the ckconv package docstring.
        return self.sample_kernel(x.shape[2:])

    def extra_repr(self) -> str:
        band = "" if self.kernel_bandlimit is None else f", kernel_bandlimit={self.kernel_bandlimit}"
        return (
            f"{self.in_channels}, {self.out_channels}, data_dim={self.data_dim}, kernel_size={self.kernel_size}, "
            f"input_size={self.input_size}, causal={self.causal}, separable={self.separable}, "
            f"use_fft={self.use_fft!r}{band}"
        )


class SeparableCKConv(CKConv):
    """:class:`CKConv` with a depthwise continuous kernel and a pointwise channel mixer."""

    def __init__(self, in_channels: int, out_channels: int, data_dim: int = 1, **kwargs: Any) -> None:
        kwargs.setdefault("separable", True)
        super().__init__(in_channels, out_channels, data_dim, **kwargs)


class FlexConv(CKConv):
    """:class:`CKConv` windowed by a learnable Gaussian mask whose width sets the effective kernel size.

    Args:
        mask_options: the mask's own keyword arguments (``init_value``, ``threshold``, ``dynamic_cropping``,
            ``learn_mean``; see :class:`~ckconv.mask.GaussianMask`). The layer sets ``data_dim``, ``causal`` and
            ``max_frequency`` itself; the kernel net's Gabor centres start within the initial mask
            (``init_spatial_value = 1.667 * init_value``) unless ``kernel_options`` says otherwise.
        **kwargs: the arguments of :class:`CKConv`.

    Raises:
        InvalidArgument: as :class:`CKConv`; a mask argument is named ``mask_options.<its name>``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        data_dim: int = 1,
        *,
        mask_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._mask_options = _check_options("mask_options", mask_options, MASK_ARGUMENTS_SET_BY_LAYER)
        super().__init__(in_channels, out_channels, data_dim, **kwargs)

    def mask_max_frequency(self) -> tuple[float, ...] | None:
        """The mask's part of ``max_frequency`` per axis (``MASK_BAND_FRACTION`` of it), or ``None``."""
        return None if self.max_frequency is None else tuple(MASK_BAND_FRACTION * f for f in self.max_frequency)

    def _build_mask(self) -> GaussianMask:
        band = {} if self.max_frequency is None else {"max_frequency": self.mask_max_frequency()}
        accepted = accepted_arguments(GaussianMask)
        with prefixed_arguments("mask_options."):
            for key in self._mask_options:  # else GaussianMask raises a TypeError that names no argument
                if key not in accepted:
                    raise InvalidArgument(key, f"{key} is not an argument of GaussianMask (it takes {accepted}).")
            return GaussianMask(self.data_dim, causal=self.causal, **self._mask_options, **band)


class SeparableFlexConv(FlexConv):
    """:class:`FlexConv` with a depthwise continuous kernel and a pointwise channel mixer (the CCNN's layer)."""

    def __init__(self, in_channels: int, out_channels: int, data_dim: int = 1, **kwargs: Any) -> None:
        kwargs.setdefault("separable", True)
        super().__init__(in_channels, out_channels, data_dim, **kwargs)


# -------------------------------------------------------------------------------------------------------------
# Discrete baselines
# -------------------------------------------------------------------------------------------------------------
class Conv(_Convolution):
    """Discrete convolution with free weights per tap, with the same alignment rules as the continuous layers.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        data_dim: number of spatial dimensions.
        kernel_size: taps per dimension (an int or one per dimension).
        causal: 1D only.
        bias: learnable bias.
        use_fft: ``True``, ``False`` or ``"auto"``.
        separable: depthwise kernel followed by a pointwise channel mixer.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        data_dim: int = 1,
        *,
        kernel_size: PositiveInt | Sequence[int] = 3,
        causal: bool = False,
        bias: bool = True,
        use_fft: bool | Literal["auto"] = "auto",
        separable: bool = False,
    ) -> None:
        super().__init__(in_channels, out_channels, data_dim, causal, use_fft, separable)
        check_arguments(Conv.__init__, locals())
        self.kernel_size = _as_tuple(kernel_size, data_dim, "kernel_size")
        weight_shape = (in_channels, 1) if separable else (out_channels, in_channels)
        self.weight = nn.Parameter(torch.empty(*weight_shape, *self.kernel_size))
        conv_channels = in_channels if separable else out_channels
        self.bias = nn.Parameter(torch.empty(conv_channels)) if bias else None
        self.channel_mixer = PointwiseLinear(in_channels, out_channels, bias=bias) if separable else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # torch's Conv init: kaiming_uniform(a=sqrt(5)), bias U(+-1/sqrt(fan_in)).
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight[0].numel()
            nn.init.uniform_(self.bias, -1.0 / math.sqrt(fan_in), 1.0 / math.sqrt(fan_in))

    def kernel_for(self, x: Tensor) -> Tensor:
        return self.weight

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, data_dim={self.data_dim}, kernel_size={self.kernel_size}, "
            f"causal={self.causal}, separable={self.separable}"
        )


class SeparableConv(Conv):
    """:class:`Conv` with a depthwise kernel and a pointwise channel mixer."""

    def __init__(self, in_channels: int, out_channels: int, data_dim: int = 1, **kwargs: Any) -> None:
        kwargs.setdefault("separable", True)
        super().__init__(in_channels, out_channels, data_dim, **kwargs)


CONV_TYPES: dict[str, type[nn.Module]] = {
    "CKConv": CKConv,
    "SeparableCKConv": SeparableCKConv,
    "FlexConv": FlexConv,
    "SeparableFlexConv": SeparableFlexConv,
    "Conv": Conv,
    "SeparableConv": SeparableConv,
}
