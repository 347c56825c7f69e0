"""Dimension-generic norms, dropouts and activations chosen by the names users pass on the command line."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of ``(B, C, *spatial)``, independently at every position."""

    def __init__(self, num_channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=1, keepdim=True)
        var = x.var(dim=1, keepdim=True, unbiased=False)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (x - mean) / (var + self.eps).sqrt() * self.weight.view(shape) + self.bias.view(shape)

    def extra_repr(self) -> str:
        return f"{self.num_channels}, eps={self.eps}"


NORMS = ("BatchNorm", "LayerNorm", "Identity")
DROPOUTS = ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d")


def build_norm(name: str, num_channels: int, data_dim: int) -> nn.Module:
    """``BatchNorm`` (BatchNorm{d}d), ``LayerNorm`` (over channels) or ``Identity``."""
    if name == "BatchNorm":
        return getattr(nn, f"BatchNorm{data_dim}d")(num_channels)
    if name == "LayerNorm":
        return ChannelLayerNorm(num_channels)
    if name == "Identity":
        return nn.Identity()
    raise ValueError(f"net.norm must be one of {NORMS}, got {name!r}.")


def build_dropout(name: str, p: float, data_dim: int) -> nn.Module:
    """Element dropout (``Dropout``) or channel dropout matched to the data (any ``Dropout{k}d`` name).

    The original passed ``Dropout2d`` to 1D sequences, which torch treats as channel dropout on a batch of 2D maps;
    here every ``Dropout{k}d`` means channel dropout for the data's own dimension.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}.")
    if name not in DROPOUTS:
        raise ValueError(f"net.dropout_type must be one of {DROPOUTS}, got {name!r}.")
    if p == 0.0:
        return nn.Identity()
    if name == "Dropout":
        return nn.Dropout(p)
    return getattr(nn, f"Dropout{data_dim}d")(p)


def build_activation(name: str) -> nn.Module:
    """A ``torch.nn`` activation by class name, e.g. ``GELU``, ``ReLU``, ``SiLU``."""
    cls = getattr(nn, name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)) or name.startswith("_"):
        raise ValueError(f"net.nonlinearity must name a torch.nn activation such as 'GELU' or 'ReLU', got {name!r}.")
    return cls()
