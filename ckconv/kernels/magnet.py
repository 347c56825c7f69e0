"""MAGNet: the multiplicative anisotropic Gabor network of the CCNN paper."""

from __future__ import annotations

from torch import nn

from ckconv.kernels.mfn import GaborFilter, MFNBase, check_gamma_args


class MAGNet(MFNBase):
    """Multiplicative Anisotropic Gabor Network.

    An MFN (see :mod:`ckconv.kernels.mfn`) whose L+1 filters are anisotropic Gabor filters

        g_i(x) = exp(-1/2 sum_d (gamma_{i,d} (x_d - mu_{i,d}))^2) * sin(W_i x + b_i),

    with gamma_i, mu_i of shape (H, d). Filter i draws gamma_i ~ Gamma(alpha / (i + 1), beta): later
    filters get wider envelopes and, since W_i is scaled by ``2 pi omega_0 gamma_i``, lower frequencies.
    With ``bias=True`` the net has ``(L+1)(3dH + H) + L(H^2 + H) + HC + C`` parameters.

    Args:
        alpha: Shape of the Gamma distribution of the envelope widths.
        beta: Rate of that distribution.
        Other args: see :class:`~ckconv.kernels.base.KernelNet`; ``num_layers`` is L.
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
        alpha: float = 6.0,
        beta: float = 1.0,
    ) -> None:
        check_gamma_args(alpha, beta)
        self.alpha = alpha
        self.beta = beta
        super().__init__(data_dim, out_channels, hidden_channels, num_layers, omega_0, bias, causal, init_spatial_value)

    def make_filter(self, index: int) -> nn.Module:
        return GaborFilter(
            self.data_dim,
            self.hidden_channels,
            self.omega_0,
            alpha=self.alpha / (index + 1),
            beta=self.beta,
            anisotropic=True,
            causal=self.causal,
            init_spatial_value=self.init_spatial_value,
            bias=self.bias,
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, alpha={self.alpha:g}, beta={self.beta:g}, causal={self.causal}"
