"""The CCNN: one residual network of continuous convolutions for sequences, images and volumes.

Layout ``(B, C, *spatial)`` throughout. Token inputs ``(B, L)`` (int64) are embedded first; paired token inputs
``(B, 2, L)`` (LRA Retrieval) go through the same encoder twice and are compared by a small MLP.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from ckconv import CONV_TYPES, PointwiseLinear
from models.blocks import BLOCKS
from models.layers import build_activation, build_dropout, build_norm

EMBEDDINGS = ("learned", "float")


def block_widths(hidden_channels: int, num_blocks: int, width_factors: Sequence[Sequence[float]]) -> list[int]:
    """Width of every block from ``[(factor, n_blocks), ...]``; an empty list (or ``[[0.0]]``) keeps all at 1x."""
    pairs = [tuple(p) for p in width_factors if len(p) == 2]
    if len(pairs) != len([p for p in width_factors if tuple(p) != (0.0,)]):
        raise ValueError(f"net.block_width_factors must be a list of [factor, n_blocks] pairs, got {width_factors!r}.")
    if not pairs:
        return [hidden_channels] * num_blocks
    widths = [int(hidden_channels * f) for f, n in pairs for _ in range(int(n))]
    if len(widths) != num_blocks or min(widths) <= 0:
        raise ValueError(
            f"net.block_width_factors {width_factors!r} gives {len(widths)} blocks; net.no_blocks={num_blocks}."
        )
    return widths


class CCNN(nn.Module):
    """Residual continuous CNN: embed -> dropout_in -> conv -> norm -> act -> blocks -> norm -> mean pool -> readout.

    Args:
        in_channels: channels of the input signal (ignored for token inputs, which are embedded).
        num_classes: classes; two classes get one logit (binary cross-entropy).
        data_dim: spatial dimensions of the input.
        input_size: length or resolution the network is trained at (continuous kernels of size "same" need it).
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
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        data_dim: int,
        input_size: Sequence[int] | None = None,
        *,
        hidden_channels: int = 64,
        num_blocks: int = 4,
        block_type: str = "S4",
        prenorm: bool = True,
        norm: str = "BatchNorm",
        nonlinearity: str = "GELU",
        dropout: float = 0.0,
        dropout_in: float = 0.0,
        dropout_type: str = "Dropout",
        conv_type: str = "SeparableFlexConv",
        conv_options: Mapping[str, Any] | None = None,
        block_width_factors: Sequence[Sequence[float]] = (),
        downsampling: Sequence[int] = (),
        downsampling_size: int = 2,
        vocab_size: int | None = None,
        embedding: str = "learned",
        embedding_dim: int | None = None,
        paired: bool = False,
    ) -> None:
        super().__init__()
        if block_type not in BLOCKS:
            raise ValueError(f"net.block.type must be one of {tuple(BLOCKS)}, got {block_type!r}.")
        if conv_type not in CONV_TYPES:
            raise ValueError(f"conv.type must be one of {tuple(CONV_TYPES)}, got {conv_type!r}.")
        if embedding not in EMBEDDINGS:
            raise ValueError(f"net.embedding must be one of {EMBEDDINGS}, got {embedding!r}.")
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}.")
        if hidden_channels <= 0 or num_blocks < 0:
            raise ValueError(
                f"net.no_hidden must be positive and net.no_blocks non-negative, got {hidden_channels}, {num_blocks}."
            )
        bad = [i for i in downsampling if not 0 <= i < num_blocks]
        if bad:
            raise ValueError(f"net.downsampling indices must be block indices in [0, {num_blocks}), got {bad}.")
        self.data_dim = data_dim
        self.num_classes = num_classes
        self.paired = paired
        self.is_token_input = vocab_size is not None

        self.embedding: nn.Module | None = None
        if vocab_size is not None:
            if embedding == "learned":
                embedding_dim = embedding_dim or hidden_channels
                self.embedding = nn.Embedding(vocab_size, embedding_dim)
                in_channels = embedding_dim
            else:
                in_channels = 1
        self.float_tokens = vocab_size is not None and embedding == "float"

        conv_cls = CONV_TYPES[conv_type]
        options = dict(conv_options or {})
        size = None if input_size is None else tuple(input_size)

        def make_conv_at(size: tuple[int, ...] | None):
            extra = {"input_size": size} if conv_type not in ("Conv", "SeparableConv") else {}
            return partial(conv_cls, data_dim=data_dim, **extra, **options)

        self.dropout_in = build_dropout("Dropout", dropout_in, data_dim)
        self.conv1 = make_conv_at(size)(in_channels, hidden_channels)
        self.norm1 = build_norm(norm, hidden_channels, data_dim)
        self.act = build_activation(nonlinearity)

        widths = block_widths(hidden_channels, num_blocks, block_width_factors)
        blocks: list[nn.Module] = []
        channels = hidden_channels
        for i, width in enumerate(widths):
            blocks.append(
                BLOCKS[block_type](
                    channels,
                    width,
                    make_conv_at(size),
                    data_dim,
                    norm=norm,
                    nonlinearity=nonlinearity,
                    dropout=dropout,
                    dropout_type=dropout_type,
                    prenorm=prenorm,
                )
            )
            channels = width
            if i in downsampling:
                blocks.append(getattr(nn, f"MaxPool{data_dim}d")(downsampling_size))
                size = None if size is None else tuple(max(1, n // downsampling_size) for n in size)
        self.blocks = nn.Sequential(*blocks)
        self.out_norm = build_norm(norm, channels, data_dim) if block_type == "S4" and prenorm else nn.Identity()
        num_outputs = 1 if num_classes == 2 else num_classes
        if paired:
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
