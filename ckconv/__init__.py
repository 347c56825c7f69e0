"""ckconv: continuous-kernel convolutions for 1D, 2D and 3D data (imports torch only).

Errors: a bad constructor argument raises :class:`InvalidArgument` (a ``ValueError``) whose ``argument`` is the keyword
of the signature that was called.

State outside parameters: forward passes write no parameters or buffers. Two caches live outside them; neither is
saved and both follow the parameters they were computed from:
- ``GaussianMask.host_copy``: the mask's width and mean on the host, for the crop rule (reading them on a GPU is a
  device synchronisation). Valid while the same width and mean tensors are in place with unchanged version counters;
  ``ckconv.mask.refresh_mask_widths`` renews it for every mask of a network in one transfer.
- ``CKConv._kernel_cache`` (with ``cache_eval_kernels=True``, outside autograd only): the last sampled kernel, keyed
  on the input size and the parameters' identities and version counters.
"""

from ckconv.conv import (
    CONV_TYPES,
    CKConv,
    Conv,
    FlexConv,
    SeparableCKConv,
    SeparableConv,
    SeparableFlexConv,
)
from ckconv.errors import InvalidArgument
from ckconv.functional import conv, direct_conv, fft_conv, gaussian_mask, kernel_positions
from ckconv.hints import OptimHint, param_groups, parameter_hints
from ckconv.kernels import KERNEL_NETS, build_kernel_net
from ckconv.linear import PointwiseLinear
from ckconv.mask import GaussianMask

__all__ = [
    "CONV_TYPES",
    "KERNEL_NETS",
    "CKConv",
    "Conv",
    "FlexConv",
    "GaussianMask",
    "InvalidArgument",
    "OptimHint",
    "PointwiseLinear",
    "SeparableCKConv",
    "SeparableConv",
    "SeparableFlexConv",
    "build_kernel_net",
    "conv",
    "direct_conv",
    "fft_conv",
    "gaussian_mask",
    "kernel_positions",
    "param_groups",
    "parameter_hints",
]
