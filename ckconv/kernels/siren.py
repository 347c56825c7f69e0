"""SIREN: a sine-activated MLP kernel net (Sitzmann et al., 2020)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ckconv.kernels.base import KernelNet


class SIREN(KernelNet):
    """Sine network: ``Linear(d->H)``, ``sin(omega_0 .)``, ``num_layers - 1`` times ``Linear(H->H)``,
    ``sin(omega_0 .)``, then ``Linear(H->C)``.

    Initialisation as in the SIREN paper: the first layer U(+-1/d), the hidden and output layers
    U(+-sqrt(6/H)/omega_0), so that every pre-activation ``omega_0 (W h + b)`` is roughly standard
    normal. Biases keep the torch default, except the output bias, which starts at 0.
    ``causal`` and ``init_spatial_value`` are accepted and unused.

    Args: see :class:`~ckconv.kernels.base.KernelNet`; ``num_layers`` counts the sine layers.
    """

    def __init__(
        self,
        data_dim: int,
        out_channels: int,
        hidden_channels: int = 32,
        num_layers: int = 3,
        omega_0: float = 1.0,
        bias: bool = True,
        causal: bool = False,
        init_spatial_value: float = 1.0,
    ) -> None:
        super().__init__(data_dim, out_channels, hidden_channels, num_layers, omega_0, bias, causal, init_spatial_value)
        H = hidden_channels
        self.hidden_layers = nn.ModuleList(
            nn.Linear(data_dim if i == 0 else H, H, bias=bias) for i in range(num_layers)
        )
        self.output_layer = nn.Linear(H, out_channels, bias=bias)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        for i, layer in enumerate(self.hidden_layers):
            layer.reset_parameters()
            bound = 1.0 / self.data_dim if i == 0 else math.sqrt(6.0 / self.hidden_channels) / self.omega_0
            nn.init.uniform_(layer.weight, -bound, bound)
        bound = math.sqrt(6.0 / self.hidden_channels) / self.omega_0
        nn.init.uniform_(self.output_layer.weight, -bound, bound)
        if self.output_layer.bias is not None:
            nn.init.zeros_(self.output_layer.bias)

    def forward_flat(self, x: torch.Tensor) -> torch.Tensor:
        h = x  # (P, d)
        for layer in self.hidden_layers:
            h = torch.sin(self.omega_0 * layer(h))  # (P, H)
        return self.output_layer(h)  # (P, C)
