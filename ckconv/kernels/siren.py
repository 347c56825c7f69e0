"""SIREN: a sine-activated MLP kernel net (Sitzmann et al., 2020)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from argcheck import PositiveFloat, check_arguments
from ckconv.kernels.base import KernelNet


class SIREN(KernelNet):
    """Sine network: ``Linear(d->H)``, ``sin(omega_0 .)``, ``num_layers - 1`` times ``Linear(H->H)``,
    ``sin(omega_0 .)``, then ``Linear(H->C)``.

    Initialisation as in the SIREN paper: the first layer U(+-1/d), the hidden and output layers
    U(+-sqrt(6/H)/omega_0), so that every pre-activation ``omega_0 (W h + b)`` is roughly standard
    normal. Biases keep the torch default, except the output bias, which starts at 0.

    Args:
        omega_0: Frequency scale of the sines.
        Other args: see :class:`~ckconv.kernels.base.KernelNet`; ``num_layers`` counts the sine layers.
    """

    def __init__(self, data_dim: int, out_channels: int, *, omega_0: PositiveFloat = 10.0, **kwargs: Any) -> None:
        check_arguments(SIREN.__init__, locals())
        super().__init__(data_dim, out_channels, **kwargs)
        self.omega_0 = float(omega_0)
        H, num_layers, bias = self.hidden_channels, self.num_layers, self.bias
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

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, omega_0={self.omega_0}"
