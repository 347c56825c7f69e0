"""Pointwise (1x1) linear layer over the channels of a ``(B, C, *spatial)`` tensor, for any number of dimensions."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from argcheck import InvalidArgument, PositiveInt, check_arguments


class PointwiseLinear(nn.Module):
    """``y[:, o, ...] = sum_i W[o, i] x[:, i, ...] + b[o]``: a 1x1 convolution in any dimension.

    Computed as a batched matrix product over the flattened positions, faster than ``conv{d}d`` with a 1x1 kernel.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        bias: add a learnable bias.
        init: ``"kaiming_normal"`` (fan-in, ReLU gain, bias 0: the original's channel mixers and readouts) or
            ``"kaiming_uniform"`` (the ``nn.Linear`` default).
    """

    def __init__(
        self, in_channels: PositiveInt, out_channels: PositiveInt, bias: bool = True, init: str = "kaiming_normal"
    ) -> None:
        super().__init__()
        check_arguments(PointwiseLinear.__init__, locals())
        if init not in ("kaiming_normal", "kaiming_uniform"):
            raise InvalidArgument("init", f"init must be 'kaiming_normal' or 'kaiming_uniform', got {init!r}.")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.init = init
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.init == "kaiming_normal":
            nn.init.kaiming_normal_(self.weight, nonlinearity="relu")
            if self.bias is not None:
                nn.init.zeros_(self.bias)
        else:
            nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
            if self.bias is not None:
                bound = 1.0 / math.sqrt(self.in_channels)
                nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor, input_offset: Tensor | None = None) -> Tensor:
        """``W (x + input_offset) + b``, with the offset folded into the bias.

        Args:
            x: ``(B, in_channels, *spatial)``; any strides whose positions flatten to a view (e.g. a cropped window).
            input_offset: optional ``(in_channels,)`` shift (a preceding layer's bias): it enters the bias as
                ``b + W o``, which saves a pass over ``x`` and the bias gradient's reduction over it.
        """
        if x.dim() < 2 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (B, {self.in_channels}, ...), got shape {tuple(x.shape)}.")
        if input_offset is not None and input_offset.shape != (self.in_channels,):
            raise ValueError(f"input_offset must be ({self.in_channels},), got {tuple(input_offset.shape)}.")
        batch, spatial = x.shape[0], x.shape[2:]
        # (B, I, P), a view for inputs whose positions flatten; P spelt out, as -1 is ambiguous for an empty batch.
        flat = x.reshape(batch, self.in_channels, math.prod(spatial))
        # A batched product with the weight broadcast over the batch (stride 0) works on the channel-first layout
        # directly; torch.matmul would transpose x into a copy first (measured 1.6x slower, bench/README.md).
        weight = self.weight.expand(batch, -1, -1)  # (B, O, I)
        bias = self.bias
        if input_offset is not None:
            shift = torch.mv(self.weight, input_offset)
            bias = shift if bias is None else bias + shift
        if bias is None:
            y = torch.bmm(weight, flat)
        else:
            y = torch.baddbmm(bias.view(1, -1, 1).expand(batch, -1, flat.shape[-1]), weight, flat)
        return y.reshape(batch, self.out_channels, *spatial)  # (B, O, *spatial)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, bias={self.bias is not None}"
