"""Residual blocks of the CCNN, for any data dimension. ``make_conv(in_channels, out_channels)`` builds the layer."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from ckconv import PointwiseLinear
from models.layers import build_activation, build_dropout, build_norm

# (in_channels, out_channels) -> conv layer: what the network gives each block to build its convolutions with.
ConvFactory = Callable[[int, int], nn.Module]


def _shortcut(in_channels: int, out_channels: int) -> nn.Module:
    # Identity when the width is unchanged (the original added no parameters there).
    return nn.Identity() if in_channels == out_channels else PointwiseLinear(in_channels, out_channels)


class S4Block(nn.Module):
    """The paper's block: ``y = act(Linear(Dropout(act(Conv(Norm(x)))))) + shortcut(x)``.

    With ``prenorm=False`` the norm moves after the residual sum: ``y = Norm(act(Linear(...Conv(x)...)) + x)``.
    The shortcut sees the un-normalised input.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        make_conv: ConvFactory,
        data_dim: int,
        norm: str = "BatchNorm",
        nonlinearity: str = "GELU",
        dropout: float = 0.0,
        dropout_type: str = "Dropout",
        prenorm: bool = True,
    ) -> None:
        super().__init__()
        self.prenorm = prenorm
        self.norm = build_norm(norm, in_channels if prenorm else out_channels, data_dim)
        self.conv = make_conv(in_channels, out_channels)
        self.act = build_activation(nonlinearity)
        self.dropout = build_dropout(dropout_type, dropout, data_dim)
        self.linear = PointwiseLinear(out_channels, out_channels)
        self.shortcut = _shortcut(in_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm(x) if self.prenorm else x
        h = self.dropout(self.act(self.conv(h)))
        h = self.act(self.linear(h)) + self.shortcut(x)
        return h if self.prenorm else self.norm(h)


class ResNetBlock(nn.Module):
    """The classic block: ``y = act(Norm(Conv(Dropout(act(Norm(Conv(x)))))) + shortcut(x))``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        make_conv: ConvFactory,
        data_dim: int,
        norm: str = "BatchNorm",
        nonlinearity: str = "GELU",
        dropout: float = 0.0,
        dropout_type: str = "Dropout",
        prenorm: bool = True,
    ) -> None:
        super().__init__()
        self.conv1 = make_conv(in_channels, out_channels)
        self.norm1 = build_norm(norm, out_channels, data_dim)
        self.conv2 = make_conv(out_channels, out_channels)
        self.norm2 = build_norm(norm, out_channels, data_dim)
        self.act = build_activation(nonlinearity)
        self.dropout = build_dropout(dropout_type, dropout, data_dim)
        self.shortcut = _shortcut(in_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        h = self.dropout(self.act(self.norm1(self.conv1(x))))
        h = self.norm2(self.conv2(h))
        return self.act(h + self.shortcut(x))


BLOCKS: dict[str, type[nn.Module]] = {"S4": S4Block, "default": ResNetBlock}
