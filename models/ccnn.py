"""The CCNN: one residual network of continuous convolutions for sequences, images and volumes.

Layout ``(B, C, *spatial)`` throughout. Token inputs ``(B, L)`` (int64) are embedded first; paired token inputs
``(B, 2, L)`` (LRA Retrieval) go through the same encoder twice and are compared by a small MLP.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, Literal

import torch
from torch import Tensor, nn

from argcheck import (
    DataDim,
    InvalidArgument,
    NonNegativeInt,
    PositiveInt,
    Probability,
    accepted_arguments,
    check_arguments,
    check_choice,
)
from ckconv import CONV_TYPES, PointwiseLinear
from ckconv.functional import InputGrid
from models.blocks import BLOCKS, ConvFactory
from models.layers import DropoutType, Norm, build_activation, build_dropout, build_norm

# What the network passes its conv layers itself (conv_options may not).
CONV_ARGUMENTS_SET_BY_NETWORK = ("in_channels", "out_channels", "data_dim", "input_size", "input_grid")

Size = tuple[int, ...] | None


def block_widths(hidden_channels: int, num_blocks: int, width_factors: Sequence[Sequence[float]]) -> list[int]:
    """Width of every block from ``[(factor, n_blocks), ...]``; an empty list keeps all at ``hidden_channels``."""
    pairs = [tuple(p) if isinstance(p, Sequence) and not isinstance(p, str) else (p,) for p in width_factors]
    numbers = all(isinstance(x, int | float) and not isinstance(x, bool) for p in pairs for x in p)
    if not numbers or not all(len(p) == 2 and p[1] == int(p[1]) for p in pairs):
        raise InvalidArgument(
            "block_width_factors",
            f"block_width_factors must be a list of [factor, n_blocks] pairs, got {width_factors!r}.",
        )
    if not pairs:
        return [hidden_channels] * num_blocks
    widths = [int(hidden_channels * f) for f, n in pairs for _ in range(int(n))]
    if len(widths) != num_blocks or min(widths) <= 0:
        raise InvalidArgument(
            "block_width_factors",
            f"block_width_factors={width_factors!r} gives the block widths {widths}; "
            f"num_blocks={num_blocks} positive widths are needed.",
        )
    return widths


def _as_size(input_size: int | Sequence[int], data_dim: int) -> tuple[int, ...]:
    """``input_size`` per axis: an int is every axis's size, as the conv layers take it."""
    return (input_size,) * data_dim if isinstance(input_size, int) else tuple(input_size)


def _conv_factory(
    conv_type: str, data_dim: int, input_grid: InputGrid, options: Mapping[str, Any]
) -> Callable[[Size], ConvFactory]:
    """``size -> (in_channels, out_channels) -> layer``: the network's conv layer for inputs of ``size``.

    Raises:
        InvalidArgument: ``conv_options`` is not a mapping, sets what the network passes itself (channels,
            ``data_dim``, ``input_size``), or names no keyword of the ``conv_type`` layer.
    """
    conv_cls = CONV_TYPES[conv_type]
    if not isinstance(options, Mapping):
        raise InvalidArgument("conv_options", f"conv_options must be a mapping of layer arguments, got {options!r}.")
    accepted = accepted_arguments(conv_cls)
    for key in options:
        if key in CONV_ARGUMENTS_SET_BY_NETWORK:
            raise InvalidArgument(
                f"conv_options.{key}", f"conv_options.{key} is set by the network itself; pass it to CCNN instead."
            )
        if key not in accepted:
            raise InvalidArgument(
                f"conv_options.{key}", f"conv_options.{key} is not an argument of {conv_type} (it takes {accepted})."
            )

    def at_size(size: Size) -> ConvFactory:
        # A continuous kernel is sampled for the input size its layer sees; a discrete one has no such size.
        extra = {"input_size": size, "input_grid": input_grid} if conv_cls.continuous else {}
        layer = partial(conv_cls, data_dim=data_dim, **extra, **options)

        def build(in_channels: int, out_channels: int) -> nn.Module:
            try:
                return layer(in_channels, out_channels)
            except InvalidArgument as error:
                if error.argument in CONV_ARGUMENTS_SET_BY_NETWORK:  # CCNN's own argument (input_size), passed on
                    raise
                raise error.within("conv_options.") from error  # the layer's options, named as CCNN got them

        return build

    return at_size


class CCNN(nn.Module):
    """Residual continuous CNN: embed -> dropout_in -> conv -> norm -> act -> blocks -> norm -> mean pool -> readout.

    Built in three parts, in this order (the order in which the parameters draw their initial values): the stem
    (embedding, input dropout, first conv, norm, activation), the residual blocks (with the max-pools of
    ``downsampling``) and the head (final norm, readout).

    Args:
        in_channels: channels of the input signal (ignored for token inputs, which are embedded).
        num_classes: classes; two classes get one logit (binary cross-entropy).
        data_dim: spatial dimensions of the input.
        input_size: length or resolution the network is trained at (continuous kernels of size "same" need it).
        input_grid: where the input's samples sit, ``"cells"`` or ``"ends"`` (the continuous layers' argument: how
            the input's step changes with its size, see ``ckconv.conv.resampled_size``).
        hidden_channels: width of the network.
        num_blocks: residual blocks.
        block_type: ``"S4"`` (the paper's) or ``"default"`` (classic ResNet block).
        prenorm: norm before (True) or after (False) the residual sum in S4 blocks.
        norm: ``"BatchNorm"``, ``"LayerNorm"`` or ``"Identity"``.
        nonlinearity: a torch.nn activation name.
        dropout: dropout in every block.
        dropout_in: dropout on the input.
        dropout_type: ``"Dropout"`` or channel dropout (``"Dropout1d/2d/3d"``, matched to the data dimension).
        conv_type: a name of ``ckconv.CONV_TYPES``.
        conv_options: keyword arguments of every conv layer (kernel size, causal, mask and kernel-net settings).
        block_width_factors: ``[(factor, n_blocks), ...]`` widths of the blocks relative to ``hidden_channels``.
        downsampling: block indices after which a max-pool of ``downsampling_size`` halves the resolution.
        downsampling_size: pool size.
        vocab_size: token inputs: number of token ids; ``None`` for signals.
        embedding: token inputs: ``"learned"`` (an embedding table) or ``"float"`` (the original: the token id as
            one float channel).
        embedding_dim: width of the learned embedding (defaults to ``hidden_channels``).
        paired: inputs hold two token sequences to compare (LRA Retrieval).

    Raises:
        InvalidArgument: naming the argument of this signature; an option in ``conv_options`` is named by its
            conv-layer keyword, prefixed (``conv_options.kernel_size``, ``conv_options.kernel_options.omega_0``).
    """

    def __init__(
        self,
        in_channels: PositiveInt,
        num_classes: int,
        data_dim: DataDim,
        input_size: int | Sequence[int] | None = None,
        *,
        input_grid: InputGrid = "cells",
        hidden_channels: PositiveInt = 64,
        num_blocks: NonNegativeInt = 4,
        block_type: str = "S4",
        prenorm: bool = True,
        norm: Norm = "BatchNorm",
        nonlinearity: str = "GELU",
        dropout: Probability = 0.0,
        dropout_in: Probability = 0.0,
        dropout_type: DropoutType = "Dropout",
        conv_type: str = "SeparableFlexConv",
        conv_options: Mapping[str, Any] | None = None,
        block_width_factors: Sequence[Sequence[float]] = (),
        downsampling: Sequence[int] = (),
        downsampling_size: PositiveInt = 2,
        vocab_size: PositiveInt | None = None,
        embedding: Literal["learned", "float"] = "learned",
        embedding_dim: PositiveInt | None = None,
        paired: bool = False,
    ) -> None:
        super().__init__()
        check_arguments(CCNN.__init__, locals())
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise InvalidArgument("num_classes", f"num_classes must be an integer >= 2, got {num_classes!r}.")
        check_choice("block_type", block_type, tuple(BLOCKS))
        check_choice("conv_type", conv_type, tuple(CONV_TYPES))
        bad = [i for i in downsampling if not 0 <= i < num_blocks]
        if bad:
            raise InvalidArgument(
                "downsampling", f"downsampling must hold block indices in [0, {num_blocks}), got {bad} among them."
            )
        widths = block_widths(hidden_channels, num_blocks, block_width_factors)
        self.data_dim = data_dim
        self.num_classes = num_classes
        self.paired = paired
        conv_at = _conv_factory(conv_type, data_dim, input_grid, conv_options or {})
        size = None if input_size is None else _as_size(input_size, data_dim)
        layers = {"norm": norm, "nonlinearity": nonlinearity}  # the stem, every block and the head share them

        self._build_stem(
            in_channels,
            hidden_channels,
            conv_at(size),
            vocab_size=vocab_size,
            embedding=embedding,
            embedding_dim=embedding_dim,
            dropout_in=dropout_in,
            **layers,
        )
        self._build_blocks(
            hidden_channels,
            widths,
            conv_at,
            size,
            block_type=block_type,
            downsampling=downsampling,
            downsampling_size=downsampling_size,
            dropout=dropout,
            dropout_type=dropout_type,
            prenorm=prenorm,
            **layers,
        )
        self._build_head(
            widths[-1] if widths else hidden_channels,
            num_classes,
            final_norm=block_type == "S4" and prenorm,
            **layers,
        )

    def _build_stem(
        self,
        in_channels: int,
        hidden_channels: int,
        make_conv: ConvFactory,
        *,
        vocab_size: int | None,
        embedding: str,
        embedding_dim: int | None,
        dropout_in: float,
        norm: str,
        nonlinearity: str,
    ) -> None:
        """Token embedding (token inputs), input dropout, first conv to ``hidden_channels``, norm, activation."""
        self.embedding: nn.Module | None = None
        if vocab_size is not None:
            if embedding == "learned":
                embedding_dim = embedding_dim or hidden_channels
                self.embedding = nn.Embedding(vocab_size, embedding_dim)
                in_channels = embedding_dim
            else:
                in_channels = 1
        self.float_tokens = vocab_size is not None and embedding == "float"
        self.dropout_in = build_dropout("Dropout", dropout_in, self.data_dim)
        self.conv1 = make_conv(in_channels, hidden_channels)
        self.norm1 = build_norm(norm, hidden_channels, self.data_dim)
        self.act = build_activation(nonlinearity)

    def _build_blocks(
        self,
        in_channels: int,
        widths: Sequence[int],
        conv_at: Callable[[Size], ConvFactory],
        size: Size,
        *,
        block_type: str,
        downsampling: Sequence[int],
        downsampling_size: int,
        **block_options: Any,
    ) -> None:
        """One residual block per width; after block ``i`` in ``downsampling``, a max-pool, and the blocks after it
        sample their kernels for the pooled size."""
        blocks: list[nn.Module] = []
        channels = in_channels
        for i, width in enumerate(widths):
            blocks.append(BLOCKS[block_type](channels, width, conv_at(size), self.data_dim, **block_options))
            channels = width
            if i in downsampling:
                blocks.append(getattr(nn, f"MaxPool{self.data_dim}d")(downsampling_size))
                size = None if size is None else tuple(max(1, n // downsampling_size) for n in size)
        self.blocks = nn.Sequential(*blocks)

    def _build_head(self, channels: int, num_classes: int, *, final_norm: bool, norm: str, nonlinearity: str) -> None:
        """Final norm (pre-norm S4 blocks leave their sum un-normalised) and the readout to the logits."""
        self.out_norm = build_norm(norm, channels, self.data_dim) if final_norm else nn.Identity()
        num_outputs = 1 if num_classes == 2 else num_classes
        if self.paired:
            # LRA Retrieval: [u, v, u * v, u - v] of the two pooled encodings -> MLP -> logits.
            self.readout: nn.Module = nn.Sequential(
                nn.Linear(4 * channels, channels),
                build_activation(nonlinearity),
                nn.Linear(channels, num_outputs),
            )
        else:
            self.readout = PointwiseLinear(channels, num_outputs)
        self.out_channels = channels

    def encode(self, x: Tensor) -> Tensor:
        """Features pooled over all positions: ``(B, C, *spatial)`` (or tokens ``(B, L)``) -> ``(B, channels)``."""
        if self.embedding is not None:
            x = self.embedding(x).transpose(1, 2)  # (B, L) -> (B, L, E) -> (B, E, L)
        elif self.float_tokens:
            x = x.unsqueeze(1).to(torch.get_default_dtype())  # the original: token id as one float channel
        x = self.act(self.norm1(self.conv1(self.dropout_in(x))))
        x = self.out_norm(self.blocks(x))
        return x.flatten(2).mean(dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, num_classes)``, or ``(B,)`` for two classes."""
        if self.paired:
            if x.dim() != 3 or x.shape[1] != 2:
                raise ValueError(f"paired inputs must have shape (B, 2, L), got {tuple(x.shape)}.")
            u, v = self.encode(x[:, 0]), self.encode(x[:, 1])
            logits = self.readout(torch.cat([u, v, u * v, u - v], dim=-1))
        else:
            features = self.encode(x)  # (B, C)
            logits = self.readout(features.unsqueeze(-1)).squeeze(-1)  # pointwise readout, as a 1x1 layer
        return logits.squeeze(-1) if logits.shape[-1] == 1 else logits
