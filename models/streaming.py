"""Streaming inference for causal 1D CCNNs: feed a sequence a sample (or a chunk) at a time.

Every layer of a causal CCNN but its convolutions and max-pools works position by position (norms in eval mode,
activations, pointwise linears, the residual sums), and a causal convolution at step ``t`` reads the last ``k``
inputs only. :class:`StreamingCCNN` materialises the network at one input size (the kernels the whole-sequence
forward pass uses at that size, hence its sampling rate) and keeps, per convolution, the last ``k - 1`` inputs it saw
(:class:`ckconv.streaming.StreamingConv`), per max-pool the samples of its unfinished window, and the running sum of
the features that the network's mean pool averages. After ``n`` samples, :meth:`StreamingCCNN.logits` equals the
network's logits for those ``n`` samples at that sampling rate (``net(x)`` itself when ``n`` is the input size), and
:meth:`StreamingCCNN.step` returns the features at the new positions, equal to those of :func:`position_features`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from argcheck import InvalidArgument
from ckconv.materialize import FixedConv
from ckconv.streaming import StreamingConv, StreamingMaxPool
from models.ccnn import CCNN
from models.materialize import materialize

__all__ = ["StreamingCCNN", "position_features"]


def position_features(net: CCNN, x: Tensor) -> Tensor:
    """The features ``(B, C, *positions)`` at every position that ``net`` averages into its pooled encoding: what
    :meth:`models.ccnn.CCNN.encode` computes before its mean (layer by layer, the same modules)."""
    if net.embedding is not None:
        x = net.embedding(x).transpose(1, 2)  # (B, L) -> (B, E, L)
    elif net.float_tokens:
        x = x.unsqueeze(1).to(torch.get_default_dtype())
    x = net.act(net.norm1(net.conv1(net.dropout_in(x))))
    return net.out_norm(net.blocks(x))


def _check_streamable(net: CCNN) -> None:
    if net.data_dim != 1 or net.paired:
        raise InvalidArgument(
            "net", f"streaming needs a 1D network of one sequence, got data_dim={net.data_dim}, paired={net.paired}."
        )
    convolutions = [name for name, module in net.named_modules() if getattr(module, "causal", None) is False]
    if convolutions:
        raise InvalidArgument(
            "net", f"streaming needs causal convolutions; {convolutions[0]} is centred (it reads later samples)."
        )


class StreamingCCNN(nn.Module):
    """A causal 1D CCNN fed a sequence in chunks, each layer keeping only what its kernel reaches.

    Holds state between calls: :meth:`reset` before each new sequence (a new batch size also starts anew).

    Args:
        net: a causal 1D CCNN (not paired); left as it was.
        input_size: the sequence length whose kernels (hence sampling rate) to use: the length ``net`` was trained at
            gives the outputs of ``net(x)`` for sequences of that length.

    Raises:
        InvalidArgument: naming ``net`` (not causal, not 1D, paired) or ``input_size``.
    """

    def __init__(self, net: CCNN, input_size: int) -> None:
        super().__init__()
        _check_streamable(net)
        # Norms stay unfolded: a norm folded into the convolution after it becomes a bias that depends on the
        # position in a sequence of input_size samples, which a stream of any length has no use for.
        self.net = materialize(net, input_size, fold_batchnorm=False)
        for name, module in list(self.net.named_modules()):
            if isinstance(module, FixedConv):
                self._replace(name, StreamingConv(module))
            elif isinstance(module, nn.MaxPool1d):
                self._replace(name, StreamingMaxPool(int(module.kernel_size)))  # stride = kernel size (CCNN's pools)
        self._sum: Tensor | None = None
        self.positions = 0  # positions averaged so far (after the pools)

    def _replace(self, name: str, module: nn.Module) -> None:
        parent, _, attribute = name.rpartition(".")
        setattr(self.net.get_submodule(parent) if parent else self.net, attribute, module)

    def reset(self) -> None:
        """Forget everything fed so far: the next :meth:`step` starts a new sequence."""
        for module in self.net.modules():
            if isinstance(module, StreamingConv | StreamingMaxPool):
                module.reset()
        self._sum = None
        self.positions = 0

    @torch.no_grad()
    def step(self, chunk: Tensor) -> Tensor:
        """Feed the next samples: ``(B, C, n)`` signals or ``(B, n)`` token ids (``n >= 1``).

        Returns:
            the features ``(B, C_feat, m)`` of the positions completed by this chunk (``m = n`` without pools).
        """
        if self._sum is not None and chunk.shape[0] != self._sum.shape[0]:
            self.reset()
        features = position_features(self.net, chunk)
        total = features.sum(dim=-1)
        self._sum = total if self._sum is None else self._sum + total
        self.positions += features.shape[-1]
        return features

    def forward(self, chunk: Tensor) -> Tensor:
        """:meth:`step`."""
        return self.step(chunk)

    @torch.no_grad()
    def logits(self) -> Tensor:
        """The logits of the sequence fed so far: ``(B, num_classes)``, or ``(B,)`` for two classes.

        Raises:
            RuntimeError: no position has been completed yet.
        """
        if self._sum is None or self.positions == 0:
            raise RuntimeError("no position has been fed yet (or none completed by the pools); call step() first.")
        pooled = self._sum / self.positions  # the network's mean over positions
        logits = self.net.readout(pooled.unsqueeze(-1)).squeeze(-1)
        return logits.squeeze(-1) if logits.shape[-1] == 1 else logits
