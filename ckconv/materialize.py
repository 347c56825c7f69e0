"""A convolution layer at one input size, as a plain convolution with a fixed kernel (no kernel net, no mask).

At a fixed input size a continuous kernel is a tensor: :func:`materialize_conv` samples it once (masked, cropped and
rescaled exactly as the layer's forward pass would) and returns a :class:`FixedConv` that applies it by the path the
layer would pick for that kernel (FFT or direct, ``functional.prefers_fft``). A FixedConv computes the layer's
output for inputs of that size only, and refuses others (another size needs another kernel: materialise again).

Per-channel affine maps next to the convolution (an eval-mode batch norm) fold into it: one after it
(:meth:`FixedConv.with_output_affine`) into the kernel's output channels and the bias; one before it
(:meth:`FixedConv.with_input_affine`) into the kernel's input channels and a bias that varies with the position,
since the zero padding makes the convolution of a constant smaller near the borders.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from argcheck import InvalidArgument
from ckconv.functional import UseFFT, anchor_index, conv, direct_conv, min_fft_size, prefers_fft

__all__ = ["FixedConv", "materialize_conv"]


def _fft_plan(spatial: Sequence[int], kernel: Sequence[int], causal: bool) -> tuple[list[int], list[int]]:
    """(FFT sizes, window starts) of ``functional.fft_conv`` for this input and kernel size: the same padding, so
    that the materialised FFT path computes what the layer's does."""
    starts = [k - 1 - anchor_index(k, causal) for k in kernel]
    return [min_fft_size(n, k, a) for n, k, a in zip(spatial, kernel, starts)], starts


def _kernel_spectrum(weight: Tensor, fft_sizes: Sequence[int]) -> Tensor:
    """The FFT of the flipped kernel, as ``functional.fft_conv`` computes it at every call."""
    dims = tuple(range(-len(fft_sizes), 0))
    return torch.fft.rfftn(weight.flip(dims), s=list(fft_sizes), dim=dims)


class FixedConv(nn.Module):
    """A convolution with a fixed kernel for inputs of one spatial size: what a ckconv layer computes there.

    Holds tensors only (buffers, no parameters): the kernel, its bias, and for separable layers the channel mixer.
    A bias may be per channel ``(C,)`` or per channel and position ``(C, *input_size)`` (after folding an affine map
    that came before the convolution).

    Args:
        weight: ``(C_out, C_in, *k)``, or ``(C_in, 1, *k)`` when ``mixer_weight`` is given (depthwise).
        bias: the convolution's bias (dense layers), ``(C_out,)`` or ``(C_out, *input_size)``, or ``None``.
        input_size: the spatial size of the inputs this kernel belongs to.
        causal: causal alignment (1D), else centred.
        use_fft: apply the kernel by FFT (True) or directly (False).
        mixer_weight: the pointwise channel mixer ``(C_out, C_in)`` of a separable layer, or ``None``.
        mixer_bias: the mixer's bias, ``(C_out,)`` or ``(C_out, *input_size)``, or ``None``.

    Raises:
        InvalidArgument: a tensor of the wrong shape.
    """

    weight: Tensor
    bias: Tensor | None
    mixer_weight: Tensor | None
    mixer_bias: Tensor | None
    spectrum: Tensor | None

    def __init__(
        self,
        weight: Tensor,
        bias: Tensor | None,
        *,
        input_size: Sequence[int],
        causal: bool,
        use_fft: bool,
        mixer_weight: Tensor | None = None,
        mixer_bias: Tensor | None = None,
    ) -> None:
        super().__init__()
        self.input_size = tuple(int(n) for n in input_size)
        self.data_dim = weight.dim() - 2
        if len(self.input_size) != self.data_dim:
            raise InvalidArgument(
                "input_size", f"input_size must have {self.data_dim} entries for this kernel, got {self.input_size}."
            )
        self.separable = mixer_weight is not None
        self.in_channels = weight.shape[0] if self.separable else weight.shape[1]
        self.out_channels = mixer_weight.shape[0] if mixer_weight is not None else weight.shape[0]
        self.causal = causal
        self.use_fft = bool(use_fft)
        self.kernel_size = tuple(weight.shape[2:])
        conv_channels = weight.shape[0]
        for name, tensor, channels in (("bias", bias, conv_channels), ("mixer_bias", mixer_bias, self.out_channels)):
            if tensor is not None and tuple(tensor.shape) not in ((channels,), (channels, *self.input_size)):
                raise InvalidArgument(
                    name,
                    f"{name} must be ({channels},) or ({channels}, *{self.input_size}), got {tuple(tensor.shape)}.",
                )
        if self.separable and bias is not None:
            raise InvalidArgument("bias", "a separable FixedConv takes the convolution's bias inside mixer_bias.")
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)
        self.register_buffer("mixer_weight", mixer_weight)
        self.register_buffer("mixer_bias", mixer_bias)
        self.fft_sizes, self.starts = _fft_plan(self.input_size, self.kernel_size, causal)
        # The kernel's spectrum, computed once here instead of at every call (it is half the FFT work at batch 1).
        # Not saved: it follows from the weight, and a dtype change (.double()) leaves complex buffers as they are,
        # in which case forward computes it anew for that call.
        spectrum = _kernel_spectrum(weight, self.fft_sizes) if self.use_fft else None
        self.register_buffer("spectrum", spectrum, persistent=False)

    # ---------------------------------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        tracing = torch.jit.is_tracing()
        if not tracing:  # the checks are Python conditions on shapes, which a trace would freeze or warn about
            self._check_input(x)
            if x.numel() == 0:
                return x.new_zeros((x.shape[0], self.out_channels, *x.shape[2:]))
        per_channel = self.bias is not None and self.bias.dim() == 1
        y = self._convolve(x, self.bias if per_channel else None)
        if self.bias is not None and not per_channel:
            y = y + self.bias
        if self.mixer_weight is None:
            return y
        return self._mix(y)

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != self.data_dim + 2 or x.shape[1] != self.in_channels or tuple(x.shape[2:]) != self.input_size:
            raise ValueError(
                f"this materialised convolution takes inputs of shape (B, {self.in_channels}, "
                f"{', '.join(map(str, self.input_size))}), got {tuple(x.shape)}; materialise the network again for "
                "another size."
            )

    def _convolve(self, x: Tensor, bias: Tensor | None) -> Tensor:
        groups = self.in_channels if self.separable else 1
        if not self.use_fft:
            return direct_conv(x, self.weight, bias, causal=self.causal, groups=groups)
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()  # the FFT runs in float32, as functional.fft_conv runs it under autocast
        spectrum = self.spectrum
        if spectrum is None or spectrum.device != x.device or spectrum.dtype != _complex_of(x.dtype):
            # Another dtype or device than the one materialised for: the layer's own FFT convolution.
            return conv(x, self.weight, bias, causal=self.causal, groups=groups, use_fft=True)
        dims = tuple(range(-self.data_dim, 0))
        with torch.autocast(device_type=x.device.type, enabled=False):
            x_f = torch.fft.rfftn(x, s=self.fft_sizes, dim=dims)  # (B, C_in, *freq), zero-padded as fft_conv does
            # (B, I, F) x (O, I, F) -> (B, O, F) for dense kernels; one product per channel for depthwise ones.
            y_f = x_f * spectrum[:, 0] if groups > 1 else torch.einsum("bi...,oi...->bo...", x_f, spectrum)
            y = torch.fft.irfftn(y_f, s=self.fft_sizes, dim=dims)
            y = y[(slice(None), slice(None), *(slice(a, a + n) for a, n in zip(self.starts, self.input_size)))]
            if bias is not None:
                y = y + bias.view(-1, *([1] * self.data_dim))
        return y

    def _mix(self, y: Tensor) -> Tensor:
        """The channel mixer, computed as ``ckconv.linear.PointwiseLinear`` computes it (same ops, same rounding)."""
        assert self.mixer_weight is not None
        batch, positions = y.shape[0], math.prod(self.input_size)
        flat = y.reshape(batch, self.in_channels, positions)
        weight = self.mixer_weight.expand(batch, -1, -1)  # (B, O, I)
        if self.mixer_bias is None:
            out = torch.bmm(weight, flat)
        else:
            bias = self.mixer_bias.reshape(1, self.out_channels, -1).expand(batch, -1, positions)
            out = torch.baddbmm(bias, weight, flat)
        return out.reshape(batch, self.out_channels, *self.input_size)

    # ---------------------------------------------------------------------------------------------------------
    def _replaced(self, **tensors: Tensor | None) -> FixedConv:
        parts = {
            "weight": self.weight,
            "bias": self.bias,
            "mixer_weight": self.mixer_weight,
            "mixer_bias": self.mixer_bias,
        }
        parts.update(tensors)
        weight = parts.pop("weight")
        assert weight is not None
        bias = parts.pop("bias")
        return FixedConv(weight, bias, input_size=self.input_size, causal=self.causal, use_fft=self.use_fft, **parts)

    @torch.no_grad()
    def with_output_affine(self, scale: Tensor, shift: Tensor) -> FixedConv:
        """The FixedConv that computes ``scale * self(x) + shift`` (per output channel), e.g. with an eval-mode batch
        norm after it folded in."""
        if self.separable:
            assert self.mixer_weight is not None
            return self._replaced(
                mixer_weight=self.mixer_weight * scale[:, None],
                mixer_bias=_affine_bias(self.mixer_bias, scale, shift),
            )
        shape = (-1,) + (1,) * (self.weight.dim() - 1)
        return self._replaced(weight=self.weight * scale.view(shape), bias=_affine_bias(self.bias, scale, shift))

    @torch.no_grad()
    def with_input_affine(self, scale: Tensor, shift: Tensor) -> FixedConv:
        """The FixedConv that computes ``self(scale * x + shift)`` (per input channel), e.g. with an eval-mode batch
        norm before it folded in. The shift's response is computed once, in float64, for every position: the zero
        padding makes it smaller near the borders, so the bias becomes ``(C, *input_size)``."""
        dims = self.data_dim
        constant = shift.double().view(1, -1, *([1] * dims)).expand(1, -1, *self.input_size)
        groups = self.in_channels if self.separable else 1
        response = conv(constant, self.weight.double(), None, causal=self.causal, groups=groups)[0]  # (C, *size)
        if self.separable:
            scaled = self.weight * scale.view(-1, *([1] * (dims + 1)))
            assert self.mixer_weight is not None
            mixer = self.mixer_weight.double()
            shift_out = torch.einsum("oi,i...->o...", mixer, response)  # W applied to the response, per position
            bias = shift_out if self.mixer_bias is None else shift_out + _expanded(self.mixer_bias.double(), dims)
            return self._replaced(weight=scaled, mixer_bias=bias.to(self.weight.dtype))
        scaled = self.weight * scale.view(1, -1, *([1] * dims))
        bias = response if self.bias is None else response + _expanded(self.bias.double(), dims)
        return self._replaced(weight=scaled, bias=bias.to(self.weight.dtype))

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, input_size={self.input_size}, kernel_size={self.kernel_size}, "
            f"causal={self.causal}, separable={self.separable}, use_fft={self.use_fft}"
        )


def _complex_of(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


def _expanded(bias: Tensor, data_dim: int) -> Tensor:
    """A ``(C,)`` bias as ``(C, 1, ...)`` so that it adds to ``(C, *size)``; a ``(C, *size)`` one as it is."""
    return bias.view(-1, *([1] * data_dim)) if bias.dim() == 1 else bias


def _affine_bias(bias: Tensor | None, scale: Tensor, shift: Tensor) -> Tensor:
    if bias is None:
        return shift.clone()
    shape = (-1,) + (1,) * (bias.dim() - 1)
    return bias * scale.view(shape) + shift.view(shape)


@torch.no_grad()
def materialize_conv(layer: nn.Module, input_size: Sequence[int], *, use_fft: UseFFT | None = None) -> FixedConv:
    """The ckconv layer ``layer`` (any of ``ckconv.CONV_TYPES``) as a :class:`FixedConv` for inputs of ``input_size``.

    The kernel is sampled as the layer's forward pass samples it (in eval mode: an MLP kernel net's batch norm uses
    its running statistics), and applied by the path the layer would choose for it, or by ``use_fft`` if given.
    Nothing is shared with ``layer``: later changes to it do not reach the result.

    Args:
        layer: a ``CKConv``/``FlexConv`` (and separable variants) or a discrete ``Conv``.
        input_size: the spatial size of the layer's input.
        use_fft: ``None`` (as the layer would: its own ``use_fft`` rule on the sampled kernel), or ``True``,
            ``False`` or ``"auto"`` to choose otherwise (``False`` for exporters without FFT operators).

    Raises:
        InvalidArgument: ``input_size`` is not ``data_dim`` positive ints.
    """
    size = tuple(input_size)
    if len(size) != layer.data_dim or not all(isinstance(n, int) and n > 0 for n in size):
        raise InvalidArgument(
            "input_size", f"input_size must be {layer.data_dim} positive ints for this layer, got {input_size!r}."
        )
    was_training = layer.training
    layer.eval()
    device = next(layer.parameters()).device.type
    try:
        # In float32 even under autocast: the kernel is sampled once, and the FFT takes no half precision.
        with torch.autocast(device_type=device, enabled=False):
            kernel = layer.sample_kernel(size) if layer.continuous else layer.weight
    finally:
        layer.train(was_training)
    kernel = kernel.detach().clone()
    chosen = prefers_fft(kernel.shape[2:], layer.use_fft if use_fft is None else use_fft)
    conv_bias = None if layer.bias is None else layer.bias.detach().clone()
    mixer = layer.channel_mixer
    if mixer is None:
        return FixedConv(kernel, conv_bias, input_size=size, causal=layer.causal, use_fft=chosen)
    mixer_weight = mixer.weight.detach().clone()
    # The mixer's bias with the convolution's folded in, by the ops PointwiseLinear.forward uses (same rounding).
    mixer_bias = None if mixer.bias is None else mixer.bias.detach().clone()
    if conv_bias is not None:
        shift = torch.mv(mixer_weight, conv_bias)
        mixer_bias = shift if mixer_bias is None else mixer_bias + shift
    return FixedConv(
        kernel,
        None,
        input_size=size,
        causal=layer.causal,
        use_fft=chosen,
        mixer_weight=mixer_weight,
        mixer_bias=mixer_bias,
    )
