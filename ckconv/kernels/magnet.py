"""MAGNet: the multiplicative anisotropic Gabor network of the CCNN paper."""

from __future__ import annotations

from ckconv.kernels.mfn import GaborMFN


class MAGNet(GaborMFN):
    """Multiplicative Anisotropic Gabor Network.

    An MFN (see :mod:`ckconv.kernels.mfn`) whose L+1 filters are anisotropic Gabor filters

        g_i(x) = exp(-1/2 sum_d (gamma_{i,d} (x_d - mu_{i,d}))^2) * sin(W_i x + b_i),

    with gamma_i, mu_i of shape (H, d). Filter i draws gamma_i ~ Gamma(alpha / (i + 1), beta): later
    filters get wider envelopes and, since W_i is scaled by ``2 pi omega_0 gamma_i``, lower frequencies.
    With ``bias=True`` the net has ``(L+1)(3dH + H) + L(H^2 + H) + HC + C`` parameters.

    Args: see :class:`~ckconv.kernels.mfn.GaborMFN` (``alpha``, ``beta``) and
    :class:`~ckconv.kernels.base.KernelNet`; ``num_layers`` is L.
    """

    anisotropic = True

    def filter_alpha(self, index: int) -> float:
        return self.alpha / (index + 1)
