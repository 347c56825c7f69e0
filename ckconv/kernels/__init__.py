"""Kernel networks: continuous relative positions ``(B, d, *size)`` -> kernel values ``(B, C, *size)``."""

from __future__ import annotations

from typing import Any

from argcheck import InvalidArgument, accepted_arguments, check_choice
from ckconv.kernels.base import KernelNet
from ckconv.kernels.magnet import MAGNet
from ckconv.kernels.mfn import FourierNet, GaborNet, MFNBase
from ckconv.kernels.mlp import MLP
from ckconv.kernels.siren import SIREN

# Names selectable as ``kernel.type`` on the command line.
KERNEL_NETS: dict[str, type[KernelNet]] = {
    "MAGNet": MAGNet,
    "GaborNet": GaborNet,
    "FourierNet": FourierNet,
    "SIREN": SIREN,
    "MLP": MLP,
}


def build_kernel_net(name: str, **kwargs: Any) -> KernelNet:
    """Builds the kernel net registered as ``name`` with the constructor keyword arguments ``kwargs``.

    Args:
        name: One of the keys of :data:`KERNEL_NETS`.
        **kwargs: Constructor arguments, e.g. ``data_dim``, ``out_channels``, ``hidden_channels``.

    Returns:
        The constructed kernel net.

    Raises:
        InvalidArgument: If ``name`` is not registered, or a constructor argument is invalid.
    """
    check_choice("name", name, tuple(KERNEL_NETS))
    accepted = accepted_arguments(KERNEL_NETS[name])
    for key in kwargs:
        if key not in accepted:
            raise InvalidArgument(key, f"{key} is not an argument of the {name} kernel net (it takes {accepted}).")
    return KERNEL_NETS[name](**kwargs)


__all__ = [
    "KERNEL_NETS",
    "MLP",
    "SIREN",
    "FourierNet",
    "GaborNet",
    "KernelNet",
    "MAGNet",
    "MFNBase",
    "build_kernel_net",
]
