"""A trained CCNN at one input size as a network of plain convolutions: no kernel nets, no masks.

At a fixed resolution every continuous kernel is a tensor. :func:`materialize` samples each layer's kernel once, for
the size of the input that layer sees when the network is fed inputs of ``input_size`` (after any max-pools), and
returns a copy of the network whose convolutions are :class:`ckconv.materialize.FixedConv` modules, with the eval-mode
batch norms folded into the convolution or readout next to them where that is exact. Its logits equal the original's
in eval mode (to float32 rounding) for inputs of that size; another size is another call.

:class:`MaterializedEvaluation` serves an evaluation loop: it materialises the network for each input size it meets
and reuses that copy while the weights do not change (one evaluation), instead of sampling every kernel at every
batch.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from argcheck import InvalidArgument
from ckconv import CONV_TYPES, PointwiseLinear
from ckconv.functional import UseFFT
from ckconv.materialize import FixedConv, materialize_conv
from models.blocks import ResNetBlock, S4Block
from models.ccnn import CCNN

__all__ = ["MaterializedEvaluation", "check_input_size", "conv_input_sizes", "example_input", "materialize"]

_CONV_CLASSES = tuple(CONV_TYPES.values())


def spatial_size(net: CCNN, input_size: int | Sequence[int]) -> tuple[int, ...]:
    """``input_size`` per spatial axis of ``net`` (an int is every axis's size).

    Raises:
        InvalidArgument: naming ``input_size``: not one positive int per axis.
    """
    if isinstance(input_size, int):
        size: tuple = (input_size,) * net.data_dim
    else:
        size = tuple(input_size) if isinstance(input_size, Sequence) else ()
    if len(size) != net.data_dim or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in size):
        raise InvalidArgument(
            "input_size", f"input_size must be a positive int or {net.data_dim} positive ints, got {input_size!r}."
        )
    return size


def example_input(net: CCNN, input_size: int | Sequence[int], batch_size: int = 1) -> Tensor:
    """A zero input of ``batch_size`` examples of ``input_size`` in the layout ``net`` takes: ``(B, C, *size)``
    floats for signals, ``(B, L)`` token ids for token inputs, ``(B, 2, L)`` for paired ones."""
    size = spatial_size(net, input_size)
    reference = next(net.parameters())
    if net.paired:
        return torch.zeros(batch_size, 2, *size, dtype=torch.long, device=reference.device)
    if net.embedding is not None or net.float_tokens:
        return torch.zeros(batch_size, *size, dtype=torch.long, device=reference.device)
    return torch.zeros(batch_size, net.conv1.in_channels, *size, dtype=reference.dtype, device=reference.device)


@torch.no_grad()
def conv_input_sizes(net: CCNN, input_size: int | Sequence[int]) -> dict[str, tuple[int, ...]]:
    """The spatial size of the input of each convolution layer (by its name in ``net``) when ``net`` is fed inputs of
    ``input_size``: found by one forward pass of a one-example zero input, so that pools and every other change of
    size count as the network applies them.

    Raises:
        InvalidArgument: naming ``input_size``: the network cannot take it (e.g. too small for its max-pools).
    """
    sizes: dict[str, tuple[int, ...]] = {}
    names = {module: name for name, module in net.named_modules() if isinstance(module, _CONV_CLASSES)}

    def record(module: nn.Module, args: tuple[Tensor, ...]) -> None:
        sizes[names[module]] = tuple(args[0].shape[2:])

    handles = [module.register_forward_pre_hook(record) for module in names]
    was_training = net.training
    net.eval()
    try:
        net(example_input(net, input_size))
    except (RuntimeError, ValueError) as error:  # e.g. a max-pool left with fewer positions than its window
        size = spatial_size(net, input_size)
        reason = " ".join(str(error).split())
        raise InvalidArgument("input_size", f"the network cannot take inputs of size {size}: {reason}") from error
    finally:
        for handle in handles:
            handle.remove()
        net.train(was_training)
    return sizes


def check_input_size(net: CCNN, input_size: int | Sequence[int]) -> dict[str, tuple[int, ...]]:
    """:func:`conv_input_sizes`, refusing also a size at which a continuous kernel is no longer a convolution: a
    layer that saw two positions or more along an axis in training sees one, or its kernel of several taps there
    keeps one (ckconv then gives that tap the kernel's sum, a pointwise product).

    Raises:
        InvalidArgument: naming ``input_size`` and the layer.
    """
    sizes = conv_input_sizes(net, input_size)
    for name, size in sizes.items():
        layer = net.get_submodule(name)
        trained = getattr(layer, "input_size", None)
        if not layer.continuous or trained is None:
            continue
        taps_trained, taps = layer.kernel_size_for(trained), layer.kernel_size_for(size)
        for axis, (n, n_trained) in enumerate(zip(size, trained)):
            if n < 2 <= n_trained or taps[axis] == 1 < taps_trained[axis]:
                raise InvalidArgument(
                    "input_size",
                    f"input size {spatial_size(net, input_size)} is too coarse for layer {name}: it would see {n} "
                    f"position(s) and a kernel of {taps[axis]} tap(s) along axis {axis}, where it saw {n_trained} and "
                    f"{taps_trained[axis]} in training (one tap is no longer a convolution); use a larger size.",
                )
    return sizes


def _batchnorm_affine(module: nn.Module) -> tuple[Tensor, Tensor] | None:
    """(scale, shift) per channel of an eval-mode batch norm with running statistics, else ``None``."""
    if not isinstance(module, nn.modules.batchnorm._BatchNorm) or module.running_mean is None:
        return None
    assert module.running_var is not None
    scale = torch.rsqrt(module.running_var + module.eps)
    if module.weight is not None:
        scale = scale * module.weight
    shift = -module.running_mean * scale
    if module.bias is not None:
        shift = shift + module.bias
    return scale.detach(), shift.detach()


@torch.no_grad()
def _fold_batchnorms(net: CCNN) -> None:
    """Fold, in place, the eval-mode batch norms of a materialised CCNN into the FixedConv or readout beside them:
    after a convolution (the stem, ResNet blocks), before one (pre-norm S4 blocks: their norm feeds only the
    convolution), and the head's norm before the mean pool into the readout. Others (post-norm S4 blocks, layer
    norms, a paired readout) stay."""

    def fold_after(owner: nn.Module, conv_name: str, norm_name: str) -> None:
        layer, affine = getattr(owner, conv_name), _batchnorm_affine(getattr(owner, norm_name))
        if isinstance(layer, FixedConv) and affine is not None:
            setattr(owner, conv_name, layer.with_output_affine(*affine))
            setattr(owner, norm_name, nn.Identity())

    fold_after(net, "conv1", "norm1")
    for block in net.blocks:
        if isinstance(block, ResNetBlock):
            fold_after(block, "conv1", "norm1")
            fold_after(block, "conv2", "norm2")
        elif isinstance(block, S4Block) and block.prenorm:
            affine = _batchnorm_affine(block.norm)
            if isinstance(block.conv, FixedConv) and affine is not None:
                block.conv = block.conv.with_input_affine(*affine)
                block.norm = nn.Identity()
    affine = _batchnorm_affine(net.out_norm)
    readout = net.readout
    if affine is not None and isinstance(readout, PointwiseLinear) and readout.bias is not None:
        # mean(scale * h + shift) = scale * mean(h) + shift: W' = W diag(scale), b' = b + W shift.
        scale, shift = affine
        readout.bias.add_(torch.mv(readout.weight, shift))
        readout.weight.mul_(scale)
        net.out_norm = nn.Identity()


@torch.no_grad()
def materialize(
    net: CCNN,
    input_size: int | Sequence[int],
    *,
    fold_batchnorm: bool = True,
    use_fft: UseFFT | None = None,
) -> CCNN:
    """``net`` at one input size, with fixed kernels: a copy whose convolutions are
    :class:`ckconv.materialize.FixedConv` modules holding the kernels ``net`` samples for inputs of ``input_size``.

    The copy is in eval mode, shares no tensor with ``net``, needs no gradients and takes inputs of ``input_size``
    only (it refuses others). Its logits equal ``net.eval()``'s to float32 rounding.

    Args:
        net: a CCNN (trained or not); it is left as it was (its train/eval mode too).
        input_size: the spatial size of the inputs (an int: every axis).
        fold_batchnorm: fold eval-mode batch norms into the convolution or readout next to them where exact.
        use_fft: ``None``: every kernel applied by the path its layer would choose; ``False``: direct convolution
            everywhere (for exporters without FFT operators, e.g. ONNX); ``True``/``"auto"``: that rule instead.

    Raises:
        InvalidArgument: naming ``input_size``: not a size the network can take (see :func:`check_input_size`).
    """
    sizes = check_input_size(net, input_size)
    # Kernels and folded weights in the parameters' precision, also when called under autocast (an evaluation loop
    # with mixed precision): computed once, they cost nothing more in float32, and the FFT takes no half precision.
    with torch.autocast(device_type=next(net.parameters()).device.type, enabled=False):
        fixed = {name: materialize_conv(net.get_submodule(name), size, use_fft=use_fft) for name, size in sizes.items()}
        result = copy.deepcopy(net)
        for name, layer in fixed.items():
            parent, _, attribute = name.rpartition(".")
            setattr(result.get_submodule(parent) if parent else result, attribute, layer)
        result.eval().requires_grad_(False)
        if fold_batchnorm:
            _fold_batchnorms(result)
    return result


class MaterializedEvaluation:
    """Evaluate a network through its materialised copies, one per input size, each built at first use.

    For an evaluation loop (validation, test): the weights do not change during one, so the kernels need sampling
    once, not at every batch. Call :meth:`clear` whenever the weights may have changed (at the start of every
    evaluation); the copies are then built again from the weights in place. Not a ``nn.Module``: as an attribute
    of one, it adds nothing to its ``state_dict``.

    ``models.module.ClassificationModule`` evaluates through one (validation and test steps, never training), and
    clears it at the start and end of every evaluation epoch (Lightning runs callbacks' epoch-start hooks first, so
    a weight average swapped in there is what the copy is built from, at the first batch).

    Works under ``torch.inference_mode`` (Lightning's evaluation loops) and ``torch.no_grad``; the copies are plain
    eager modules (a network compiled in place, ``net.compile()``, is materialised from its own modules).

    Args:
        net: the network evaluated (not copied: its weights are read when a copy is built).
        fold_batchnorm: see :func:`materialize`.
    """

    def __init__(self, net: CCNN, *, fold_batchnorm: bool = True) -> None:
        self.net = net
        self.fold_batchnorm = fold_batchnorm
        self._copies: dict[tuple[int, ...], CCNN] = {}

    def __call__(self, x: Tensor) -> Tensor:
        """``net.eval()(x)`` through the copy for ``x``'s spatial size."""
        size = tuple(x.shape[x.dim() - self.net.data_dim :])
        if size not in self._copies:
            self._copies[size] = materialize(self.net, size, fold_batchnorm=self.fold_batchnorm)
        return self._copies[size](x)

    def clear(self) -> None:
        """Drop the copies (the weights changed, or the evaluation is over)."""
        self._copies.clear()
