"""Causal 1D layers fed a chunk of samples at a time, each keeping only what its kernel reaches.

A causal convolution's output at step ``t`` reads the inputs ``t - k + 1 .. t``. :class:`StreamingConv` keeps the
last ``k - 1`` inputs between calls, so that feeding a sequence in chunks (one sample, or any number) gives the
outputs of the whole-sequence convolution at the same positions, the sequence's start padded with zeros as there.
:class:`StreamingMaxPool` does the same for a max-pool, keeping the samples of a window not yet complete.

These modules hold state between forward passes (unlike every other ckconv layer): :meth:`reset` before a new
sequence. The state is never saved (not a buffer).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from argcheck import InvalidArgument
from ckconv.materialize import FixedConv

__all__ = ["StreamingConv", "StreamingMaxPool"]


class StreamingConv(nn.Module):
    """A causal 1D :class:`~ckconv.materialize.FixedConv` applied to a sequence one chunk at a time.

    The kernel is the one the FixedConv was materialised with (for its ``input_size``): the sampling rate of that
    size, whatever the length streamed.

    Args:
        layer: a causal, 1D FixedConv whose biases are per channel (no affine map folded in before it: that one's
            bias depends on the position in a sequence of ``input_size`` samples).

    Raises:
        InvalidArgument: ``layer`` is not causal, not 1D, or has a bias per position.
    """

    def __init__(self, layer: FixedConv) -> None:
        super().__init__()
        if not layer.causal or layer.data_dim != 1:
            raise InvalidArgument(
                "layer",
                f"streaming needs a causal 1D convolution, got causal={layer.causal}, data_dim={layer.data_dim}.",
            )
        for name in ("bias", "mixer_bias"):
            tensor = getattr(layer, name)
            if tensor is not None and tensor.dim() != 1:
                raise InvalidArgument(
                    "layer", f"streaming needs a bias per channel; this layer's {name} varies with the position."
                )
        self.layer = layer
        self.reach = layer.kernel_size[0] - 1  # inputs before the current one that the kernel reads
        self.history: Tensor | None = None

    def reset(self) -> None:
        """Forget the samples seen: the next chunk starts a new sequence."""
        self.history = None

    def forward(self, chunk: Tensor) -> Tensor:
        """Outputs ``(B, C_out, n)`` for the next ``n`` samples ``(B, C_in, n)`` of the sequence."""
        layer = self.layer
        if chunk.dim() != 3 or chunk.shape[1] != layer.in_channels:
            raise ValueError(f"expected a chunk of shape (B, {layer.in_channels}, n), got {tuple(chunk.shape)}.")
        if chunk.shape[-1] == 0:  # a max-pool before this layer completed no window yet
            return chunk.new_zeros(chunk.shape[0], layer.out_channels, 0)
        if self.history is None or self.history.shape[0] != chunk.shape[0]:
            self.history = chunk.new_zeros(chunk.shape[0], chunk.shape[1], self.reach)  # the zero padding
        window = torch.cat([self.history, chunk], dim=-1)  # (B, C_in, k - 1 + n)
        self.history = window[..., window.shape[-1] - self.reach :].clone()
        groups = layer.in_channels if layer.separable else 1
        y = F.conv1d(window, layer.weight, layer.bias, groups=groups)  # unpadded: n outputs
        if layer.mixer_weight is None:
            return y
        weight = layer.mixer_weight.expand(y.shape[0], -1, -1)  # (B, O, I), as PointwiseLinear computes it
        if layer.mixer_bias is None:
            return torch.bmm(weight, y)
        return torch.baddbmm(layer.mixer_bias.view(1, -1, 1).expand(y.shape[0], -1, y.shape[-1]), weight, y)


class StreamingMaxPool(nn.Module):
    """``torch.nn.MaxPool1d(size)`` (stride ``size``, no padding) over a sequence fed in chunks: each window's
    maximum comes out once its last sample has arrived.

    Args:
        size: the pool's window and stride.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.pending: Tensor | None = None

    def reset(self) -> None:
        """Forget the samples seen: the next chunk starts a new sequence."""
        self.pending = None

    def forward(self, chunk: Tensor) -> Tensor:
        """The maxima ``(B, C, m)`` of the windows completed by ``chunk`` ``(B, C, n)`` (``m`` may be 0)."""
        window = chunk if self.pending is None else torch.cat([self.pending, chunk], dim=-1)
        complete = window.shape[-1] // self.size * self.size
        self.pending = window[..., complete:].clone()
        if complete == 0:
            return window[..., :0]
        return F.max_pool1d(window[..., :complete], self.size)
