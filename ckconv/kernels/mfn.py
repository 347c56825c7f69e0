"""Multiplicative filter networks (MFN): the recursion shared by MAGNet, GaborNet and FourierNet.

An MFN with L hidden layers multiplies L+1 filters g_i of the positions x into the hidden state:

    h_0 = g_0(x),    h_i = g_i(x) * (A_i h_{i-1} + c_i),    out = A_out h_L + c_out.

The nets differ only in their filters: Gabor filters (MAGNet: anisotropic, GaborNet: isotropic) or
sinusoids (FourierNet). All layers act on flattened positions ``(P, d)``. Their spectrum follows from the filters'
parameters, which lets ``max_frequency`` bound it (:mod:`ckconv.bandlimit`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Gamma

from argcheck import PositiveFloat, check_arguments
from ckconv.bandlimit import ENVELOPE_STDS, band_scale, check_max_frequency
from ckconv.kernels.base import KernelNet


class GaborFilter(nn.Module):
    """One Gabor filter ``g(x) = exp(-1/2 sum_d (gamma_d (x_d - mu_d))^2) * sin(W x + b)``.

    Args:
        data_dim: Dimension d of the positions.
        hidden_channels: Number of filters H evaluated in parallel.
        omega_0: Frequency scale: W is drawn from U(+-1/sqrt(d)) and multiplied by ``2 pi omega_0 gamma``.
        alpha: Shape of the Gamma distribution the envelope widths gamma are drawn from.
        beta: Rate of that Gamma distribution (mean ``alpha / beta``).
        anisotropic: One gamma per unit and dimension ``(H, d)`` if True, one per unit ``(H, 1)`` if False.
        causal: Place the centres in ``[1 - s, 1]`` (recent past of a causal kernel) when s != 1.
        init_spatial_value: Extent s of the centres: mu ~ U(-s, s), or U(1 - s, 1) when causal.
        bias: Whether ``W x`` carries the bias b (initialised to 0).
        band_limit: Highest frequency per axis (radians per unit of position) of the filter, its sinusoid's
            ``|W|`` plus ``ENVELOPE_STDS`` times its envelope's ``gamma``; the bank is dilated to fit
            (:func:`~ckconv.bandlimit.band_scale`). ``None``: no bound.
    """

    def __init__(
        self,
        data_dim: int,
        hidden_channels: int,
        omega_0: float,
        alpha: float,
        beta: float,
        anisotropic: bool = True,
        causal: bool = False,
        init_spatial_value: float = 1.0,
        bias: bool = True,
        band_limit: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.omega_0 = omega_0
        self.alpha = alpha
        self.beta = beta
        self.causal = causal
        self.init_spatial_value = init_spatial_value
        gamma_dims = data_dim if anisotropic else 1
        self.gamma = nn.Parameter(torch.empty(hidden_channels, gamma_dims))
        self.mu = nn.Parameter(torch.empty(hidden_channels, data_dim))
        self.linear = nn.Linear(data_dim, hidden_channels, bias=bias)
        # A constant of the layer's grid, not learnt and not saved: the checkpoint's flags rebuild it.
        self.register_buffer("band_limit", _limit_tensor(band_limit), persistent=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        gamma = Gamma(torch.tensor(float(self.alpha)), torch.tensor(float(self.beta)))
        self.gamma.copy_(gamma.sample(self.gamma.shape))
        s = self.init_spatial_value
        if self.causal and s != 1.0:
            self.mu.copy_(1.0 - s * torch.rand_like(self.mu))
        else:
            self.mu.copy_(s * (2.0 * torch.rand_like(self.mu) - 1.0))
        bound = 1.0 / math.sqrt(self.linear.in_features)
        nn.init.uniform_(self.linear.weight, -bound, bound)
        # Wider envelopes (small gamma) get lower frequencies: the filter keeps few oscillations.
        self.linear.weight.mul_(2.0 * math.pi * self.omega_0 * self.gamma)
        if self.linear.bias is not None:
            nn.init.zeros_(self.linear.bias)

    def frequencies(self) -> tuple[Tensor, Tensor]:
        """The sinusoids' frequencies ``W`` ``(H, d)`` and the envelopes' inverse widths ``gamma`` (``(H, d)``, or
        ``(H, 1)`` when isotropic) that the filter applies: its parameters, dilated into ``band_limit`` if any."""
        if self.band_limit is None:
            return self.linear.weight, self.gamma
        scale = band_scale(self.linear.weight.abs() + ENVELOPE_STDS * self.gamma.abs(), self.band_limit)  # (d,)
        return self.linear.weight * scale, self.gamma * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps positions ``(P, d)`` to filter responses ``(P, H)``."""
        weight, gamma = self.frequencies()
        scaled = gamma * (x.unsqueeze(1) - self.mu)  # (P, H, d)
        envelope = torch.exp(-0.5 * scaled.square().sum(-1))  # (P, H)
        return envelope * torch.sin(F.linear(x, weight, self.linear.bias))

    def extra_repr(self) -> str:
        band = "" if self.band_limit is None else f", band_limit={tuple(self.band_limit.tolist())}"
        return f"gamma={tuple(self.gamma.shape)}, alpha={self.alpha:g}, beta={self.beta:g}{band}"


class FourierFilter(nn.Module):
    """One sinusoidal filter ``g(x) = sin(W x + b)``, W ~ U(+-scale/sqrt(d)), b ~ U(-pi, pi).

    Args:
        data_dim: Dimension d of the positions.
        hidden_channels: Number of filters H evaluated in parallel.
        scale: Multiplier of the weight bound (``omega_0 / sqrt(L + 1)`` in FourierNet).
        bias: Whether the filter has the phase b.
        band_limit: Highest frequency ``|W|`` per axis (radians per unit of position); the bank is dilated to fit.
            ``None``: no bound.
    """

    def __init__(
        self,
        data_dim: int,
        hidden_channels: int,
        scale: float,
        bias: bool = True,
        band_limit: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.scale = scale
        self.linear = nn.Linear(data_dim, hidden_channels, bias=bias)
        self.register_buffer("band_limit", _limit_tensor(band_limit), persistent=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        bound = self.scale / math.sqrt(self.linear.in_features)
        nn.init.uniform_(self.linear.weight, -bound, bound)
        if self.linear.bias is not None:
            nn.init.uniform_(self.linear.bias, -math.pi, math.pi)

    def frequencies(self) -> Tensor:
        """The frequencies ``W`` ``(H, d)`` the filter applies: its weight, dilated into ``band_limit`` if any."""
        if self.band_limit is None:
            return self.linear.weight
        return self.linear.weight * band_scale(self.linear.weight.abs(), self.band_limit)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps positions ``(P, d)`` to filter responses ``(P, H)``."""
        return torch.sin(F.linear(x, self.frequencies(), self.linear.bias))

    def extra_repr(self) -> str:
        band = "" if self.band_limit is None else f", band_limit={tuple(self.band_limit.tolist())}"
        return f"scale={self.scale:g}{band}"


def _limit_tensor(band_limit: Sequence[float] | None) -> Tensor | None:
    return None if band_limit is None else torch.tensor([float(v) for v in band_limit])


class MFNBase(KernelNet):
    """The multiplicative recursion; subclasses provide the L+1 filters through :meth:`make_filter`.

    ``num_layers`` is L, the number of hidden linears A_i (H -> H). The hidden linears are initialised
    kaiming-uniform (linear gain) with bias 1.0, so that at init each layer passes the filter on
    almost unchanged; the output linear is kaiming-uniform with bias 0.

    Args:
        omega_0: Frequency scale of the filters.
        max_frequency: Bound on the output's frequencies along each axis, in radians per unit of position (a number
            for every axis, or one per axis; ``inf``: none); each of the L + 1 filters keeps within
            ``max_frequency / (L + 1)`` (:mod:`ckconv.bandlimit`). ``None``: unbounded (the original MFNs).
        Other args: see :class:`~ckconv.kernels.base.KernelNet`.
    """

    def __init__(
        self,
        data_dim: int,
        out_channels: int,
        *,
        omega_0: PositiveFloat = 10.0,
        max_frequency: float | Sequence[float] | None = None,
        **kwargs: Any,
    ) -> None:
        check_arguments(MFNBase.__init__, locals())
        super().__init__(data_dim, out_channels, **kwargs)
        self.omega_0 = float(omega_0)
        self.max_frequency = None if max_frequency is None else check_max_frequency(max_frequency, data_dim)
        H, num_layers, bias = self.hidden_channels, self.num_layers, self.bias
        self.filters = nn.ModuleList(self.make_filter(i) for i in range(num_layers + 1))
        self.hidden_layers = nn.ModuleList(nn.Linear(H, H, bias=bias) for _ in range(num_layers))
        self.output_layer = nn.Linear(H, out_channels, bias=bias)
        self.reset_parameters()

    def make_filter(self, index: int) -> nn.Module:
        """Builds filter g_index (0 <= index <= L), a module mapping ``(P, d)`` to ``(P, H)``."""
        raise NotImplementedError

    def filter_band_limit(self) -> tuple[float, ...] | None:
        """Each filter's share of ``max_frequency`` per axis (the L + 1 shares add up to it), or ``None``."""
        if self.max_frequency is None:
            return None
        return tuple(bound / (self.num_layers + 1) for bound in self.max_frequency)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        for layer in self.hidden_layers:
            nn.init.kaiming_uniform_(layer.weight, nonlinearity="linear")
            if layer.bias is not None:
                nn.init.ones_(layer.bias)
        nn.init.kaiming_uniform_(self.output_layer.weight, nonlinearity="linear")
        if self.output_layer.bias is not None:
            nn.init.zeros_(self.output_layer.bias)

    def forward_flat(self, x: torch.Tensor) -> torch.Tensor:
        h = self.filters[0](x)  # (P, H)
        for filt, layer in zip(self.filters[1:], self.hidden_layers):
            h = filt(x) * layer(h)
        return self.output_layer(h)  # (P, C)


class GaborMFN(MFNBase):
    """An MFN of Gabor filters; subclasses choose isotropy (``anisotropic``) and each filter's Gamma shape.

    Args:
        causal: Place the envelopes' centres in the recent past of a causal kernel (see :class:`GaborFilter`).
        init_spatial_value: Extent s of the initial centres (see :class:`GaborFilter`).
        alpha: Shape of the Gamma distribution of the envelope widths.
        beta: Rate of that distribution.
        Other args: see :class:`MFNBase`; ``num_layers`` is L.
    """

    anisotropic: ClassVar[bool]

    def __init__(
        self,
        data_dim: int,
        out_channels: int,
        *,
        causal: bool = False,
        init_spatial_value: PositiveFloat = 1.0,
        alpha: PositiveFloat = 6.0,
        beta: PositiveFloat = 1.0,
        **kwargs: Any,
    ) -> None:
        check_arguments(GaborMFN.__init__, locals())
        # Set before the base builds the filters, which read them (plain values: nn.Module allows that early).
        self.causal = causal
        self.init_spatial_value = float(init_spatial_value)
        self.alpha = alpha
        self.beta = beta
        super().__init__(data_dim, out_channels, **kwargs)

    def filter_alpha(self, index: int) -> float:
        """Shape of the Gamma distribution that filter ``index`` draws its envelope widths from."""
        raise NotImplementedError

    def make_filter(self, index: int) -> nn.Module:
        return GaborFilter(
            self.data_dim,
            self.hidden_channels,
            self.omega_0,
            alpha=self.filter_alpha(index),
            beta=self.beta,
            anisotropic=self.anisotropic,
            causal=self.causal,
            init_spatial_value=self.init_spatial_value,
            bias=self.bias,
            band_limit=self.filter_band_limit(),
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, alpha={self.alpha:g}, beta={self.beta:g}, causal={self.causal}"


class GaborNet(GaborMFN):
    """MFN with isotropic Gabor filters (one envelope width per unit), as in the MFN paper.

    Every filter draws gamma ~ Gamma(alpha / (L + 1), beta), so that the product of the L + 1 envelopes
    has the width of a single Gamma(alpha, beta) envelope.

    Args: see :class:`GaborMFN`.
    """

    anisotropic = False

    def filter_alpha(self, index: int) -> float:
        return self.alpha / (self.num_layers + 1)


class FourierNet(MFNBase):
    """MFN with sinusoidal filters ``sin(W_i x + b_i)``; W_i is scaled by ``omega_0 / sqrt(L + 1)``.

    The scaling keeps the bandwidth of the product of the L + 1 sinusoids near ``omega_0``.

    Args: see :class:`MFNBase`.
    """

    def make_filter(self, index: int) -> nn.Module:
        scale = self.omega_0 / math.sqrt(self.num_layers + 1)
        return FourierFilter(
            self.data_dim, self.hidden_channels, scale, bias=self.bias, band_limit=self.filter_band_limit()
        )
