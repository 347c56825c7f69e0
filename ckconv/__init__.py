"""ckconv: continuous-kernel convolutions for 1D, 2D and 3D data (imports torch only).

Errors: a bad constructor argument raises :class:`InvalidArgument` (a ``ValueError``) whose ``argument`` is the keyword
of the signature that was called.

State outside parameters: forward passes write no parameters or buffers (but the running statistics of an MLP kernel
net with a batch norm, in training mode), and one attribute outside them, a cache that is never saved:
- ``GaussianMask.host_copy``: the mask's width and mean as Python floats, for the crop rule (reading them from a GPU
  is a device synchronisation, once per layer). Valid while the same width and mean tensors are in place with
  unchanged version counters; a crop after a change reads them again. ``ckconv.mask.refresh_mask_widths`` renews
  it for every mask of a network in one transfer (the training module calls it before each batch), so that a
  training step reads no device value. Writes that bump no version counter are not seen: through ``param.data``,
  ``torch.nn.utils.vector_to_parameters``, and fused optimizer steps (``torch.optim.Adam(..., fused=True)`` and
  the other ``fused=True`` optimizers). Change mask widths with ``torch.no_grad()`` and in-place ops, or call
  ``refresh_mask_widths`` after such writes (in a loop of your own with a fused optimizer: after every step).
Sampled kernels are not cached: every forward pass samples them anew. At a fixed input size,
``materialize_conv(layer, input_size)`` gives a :class:`FixedConv` that holds the kernel instead (for inference and
export); :class:`StreamingConv` feeds a causal one a chunk at a time, keeping state between calls.
"""

from argcheck import InvalidArgument
from ckconv.conv import (
    CONV_TYPES,
    CKConv,
    Conv,
    FlexConv,
    SeparableCKConv,
    SeparableConv,
    SeparableFlexConv,
)
from ckconv.functional import conv, direct_conv, fft_conv, gaussian_mask, kernel_positions
from ckconv.hints import OptimHint, param_groups, parameter_hints
from ckconv.kernels import KERNEL_NETS, build_kernel_net
from ckconv.linear import PointwiseLinear
from ckconv.mask import GaussianMask
from ckconv.materialize import FixedConv, materialize_conv
from ckconv.streaming import StreamingConv, StreamingMaxPool

__all__ = [
    "CONV_TYPES",
    "KERNEL_NETS",
    "CKConv",
    "Conv",
    "FixedConv",
    "FlexConv",
    "GaussianMask",
    "InvalidArgument",
    "OptimHint",
    "PointwiseLinear",
    "SeparableCKConv",
    "SeparableConv",
    "SeparableFlexConv",
    "StreamingConv",
    "StreamingMaxPool",
    "build_kernel_net",
    "conv",
    "direct_conv",
    "fft_conv",
    "gaussian_mask",
    "kernel_positions",
    "materialize_conv",
    "param_groups",
    "parameter_hints",
]
