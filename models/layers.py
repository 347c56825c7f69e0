"""Dimension-generic norms, dropouts and activations chosen by name.

The builders' argument names are the network's (``norm``, ``dropout_type``, ``dropout``, ``nonlinearity``), so that
their errors name the argument the caller of :class:`models.ccnn.CCNN` or a block passed.
"""

from __future__ import annotations

import typing
from typing import Literal

import torch
from torch import Tensor, nn

from argcheck import InvalidArgument, Probability, check_arguments, check_choice


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


Norm = Literal["BatchNorm", "LayerNorm", "Identity"]
DropoutType = Literal["Dropout", "Dropout1d", "Dropout2d", "Dropout3d"]
NORMS = typing.get_args(Norm)
DROPOUTS = typing.get_args(DropoutType)


def build_norm(norm: Norm, num_channels: int, data_dim: int) -> nn.Module:
    """``BatchNorm`` (BatchNorm{d}d), ``LayerNorm`` (over channels) or ``Identity``."""
    check_choice("norm", norm, NORMS)
    if norm == "BatchNorm":
        return getattr(nn, f"BatchNorm{data_dim}d")(num_channels)
    if norm == "LayerNorm":
        return ChannelLayerNorm(num_channels)
    return nn.Identity()


def build_dropout(dropout_type: DropoutType, dropout: Probability, data_dim: int) -> nn.Module:
    """Element dropout (``Dropout``) or channel dropout matched to the data (any ``Dropout{k}d`` name).

    The original passed ``Dropout2d`` to 1D sequences, which torch treats as channel dropout on a batch of 2D maps;
    here every ``Dropout{k}d`` means channel dropout for the data's own dimension.

    Args:
        dropout_type: ``"Dropout"``, ``"Dropout1d"``, ``"Dropout2d"`` or ``"Dropout3d"``.
        dropout: the probability of dropping, in [0, 1).
        data_dim: spatial dimensions of the data.
    """
    check_arguments(build_dropout, locals())
    check_choice("dropout_type", dropout_type, DROPOUTS)
    if dropout == 0.0:
        return nn.Identity()
    if dropout_type == "Dropout":
        return nn.Dropout(dropout)
    return getattr(nn, f"Dropout{data_dim}d")(dropout)


def build_activation(nonlinearity: str) -> nn.Module:
    """A ``torch.nn`` activation by class name, e.g. ``GELU``, ``ReLU``, ``SiLU``, built without arguments."""
    cls = getattr(nn, nonlinearity, None) if isinstance(nonlinearity, str) else None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)) or nonlinearity.startswith("_"):
        raise InvalidArgument(
            "nonlinearity",
            f"nonlinearity must name a torch.nn activation such as 'GELU' or 'ReLU', got {nonlinearity!r}.",
        )
    try:
        activation = cls()
    except TypeError as error:
        raise InvalidArgument(
            "nonlinearity", f"nonlinearity={nonlinearity!r} cannot be built without arguments ({error})."
        ) from error
    if not _keeps_shape(activation):  # ``Module`` has no forward, ``GLU`` halves channels, ``Softmax2d`` wants images
        raise InvalidArgument(
            "nonlinearity",
            f"nonlinearity={nonlinearity!r} is no elementwise activation: it does not map a tensor to one of the "
            "same shape; use e.g. 'GELU' or 'ReLU'.",
        )
    return activation


def _keeps_shape(module: nn.Module) -> bool:
    """Whether ``module`` maps a small (batch, channels, length) tensor to one of the same shape. Applied in eval
    mode, so that no random number is drawn (a run's seeded draws stay those of the network it builds)."""
    probe = torch.linspace(-2.0, 2.0, 24).reshape(2, 3, 4)
    module.eval()
    try:
        with torch.no_grad():
            out = module(probe)
    except Exception:  # whatever a module that is no activation raises on a tensor
        return False
    finally:
        module.train()
    return isinstance(out, Tensor) and out.shape == probe.shape
