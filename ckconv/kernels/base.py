"""The shared base of every kernel network.

A kernel network maps continuous relative positions to convolution-kernel values:
``positions (B, d, *size) -> kernel (B, out_channels, *size)``, with ``B = 1`` for grid convolutions.
Every layer of a kernel net acts on one position at a time, so the nets flatten the positions to
``(P, d)`` with ``P = B * prod(size)``, apply ``nn.Linear`` layers (cheaper than 1x1 convolutions, same
parameters) and reshape back. Kernel nets never see the signal.
"""

from __future__ import annotations

import torch
from torch import nn

from argcheck import DataDim, PositiveInt, check_arguments


class KernelNet(nn.Module):
    """Base class: argument checks, the flatten/reshape around the per-position network.

    Subclasses build their layers in ``__init__``, must define ``self.output_layer`` (the final
    ``nn.Linear``; the convolution layer rescales its weight for the Chang initialisation) and implement
    :meth:`forward_flat`. A subclass's signature says what it reads: the arguments of this base, passed on as
    ``**kwargs``, and its own (``omega_0``, ``causal``, ...); a layer passes a kernel net only what it accepts.

    Args:
        data_dim: Number of spatial dimensions d of the positions (1, 2 or 3).
        out_channels: Number of kernel values produced per position.
        hidden_channels: Width of the hidden layers.
        num_layers: Number of hidden layers (its exact meaning is given by each net).
        bias: Whether the linear layers carry a bias.
    """

    output_layer: nn.Linear

    def __init__(
        self,
        data_dim: DataDim,
        out_channels: PositiveInt,
        hidden_channels: PositiveInt = 32,
        num_layers: PositiveInt = 3,
        bias: bool = True,
    ) -> None:
        check_arguments(KernelNet.__init__, locals())
        super().__init__()
        self.data_dim = data_dim
        self.out_channels = out_channels
        self.hidden_channels = hidden_channels
        self.num_layers = num_layers
        self.bias = bias

    def forward_flat(self, x: torch.Tensor) -> torch.Tensor:
        """Maps flattened positions ``(P, d)`` to kernel values ``(P, out_channels)``."""
        raise NotImplementedError

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        """Evaluates the kernel at every position.

        Args:
            positions: Relative positions of shape ``(B, d, *size)`` with ``len(size) == d``, values
                in [-1, 1]; ``B`` is 1 for grid convolutions.

        Returns:
            Kernel values of shape ``(B, out_channels, *size)``.
        """
        d = self.data_dim
        if positions.dim() != d + 2 or positions.shape[1] != d:
            raise ValueError(
                f"positions must have shape (B, {d}, *size) with {d} spatial dimension(s) "
                f"for data_dim={d}, got {tuple(positions.shape)}"
            )
        batch, size = positions.shape[0], positions.shape[2:]
        x = positions.movedim(1, -1).reshape(-1, d)  # (P, d)
        out = self.forward_flat(x)  # (P, C)
        return out.reshape(batch, *size, self.out_channels).movedim(-1, 1).contiguous()

    def extra_repr(self) -> str:
        return (
            f"data_dim={self.data_dim}, out_channels={self.out_channels}, "
            f"hidden_channels={self.hidden_channels}, num_layers={self.num_layers}"
        )
