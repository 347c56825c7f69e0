"""ckconv: continuous-kernel convolutions for 1D, 2D and 3D data (imports torch only)."""

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

__all__ = [
    "CONV_TYPES",
    "KERNEL_NETS",
    "CKConv",
    "Conv",
    "FlexConv",
    "GaussianMask",
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
