"""MLP kernel net with a configurable normalisation and nonlinearity."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from argcheck import InvalidArgument
from ckconv.kernels.base import KernelNet


def torch_module_class(argument: str, name: str) -> type[nn.Module]:
    """Looks up the ``torch.nn`` module class called ``name``; if there is none, an error names ``argument``."""
    cls = getattr(nn, name, None) if isinstance(name, str) else None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise InvalidArgument(
            argument,
            f"{argument} must name a torch.nn module class (e.g. 'Identity', 'LayerNorm', 'GELU', 'ReLU'), "
            f"got {name!r}.",
        )
    return cls


class MLP(KernelNet):
    """Multi-layer perceptron: ``num_layers`` blocks ``Linear -> norm -> nonlinearity`` (the first from
    d to H, the others H to H), then ``Linear(H->C)``.

    Linears keep the torch default initialisation; the output bias starts at 0.

    Args:
        norm: Name of a ``torch.nn`` normalisation class built as ``cls(H)``, e.g. "Identity",
            "LayerNorm", "BatchNorm1d". A batch norm normalises over the kernel's positions and, as every batch
            norm does, updates its running statistics in each training-mode forward and uses them in eval mode:
            the one case in which a layer's forward writes buffers and its train and eval kernels differ.
        nonlinearity: Name of a ``torch.nn`` activation class built as ``cls()``, e.g. "GELU", "ReLU",
            "SiLU".
        Other args: see :class:`~ckconv.kernels.base.KernelNet`.
    """

    def __init__(
        self, data_dim: int, out_channels: int, *, norm: str = "Identity", nonlinearity: str = "GELU", **kwargs: Any
    ) -> None:
        super().__init__(data_dim, out_channels, **kwargs)
        hidden_channels, num_layers, bias = self.hidden_channels, self.num_layers, self.bias
        norm_cls = torch_module_class("norm", norm)
        act_cls = torch_module_class("nonlinearity", nonlinearity)
        self.norm = norm
        self.nonlinearity = nonlinearity
        H = hidden_channels
        layers: list[nn.Module] = []
        for i in range(num_layers):
            layers.append(nn.Linear(data_dim if i == 0 else H, H, bias=bias))
            try:
                layers.append(norm_cls(H))
            except TypeError as err:
                raise InvalidArgument("norm", f"norm={norm!r} cannot be built as {norm}({H}): {err}") from err
            try:
                layers.append(act_cls())
            except TypeError as err:
                message = f"nonlinearity={nonlinearity!r} cannot be built without arguments: {err}"
                raise InvalidArgument("nonlinearity", message) from err
        self.hidden_layers = nn.Sequential(*layers)
        self.output_layer = nn.Linear(H, out_channels, bias=bias)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        for module in self.hidden_layers:
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        self.output_layer.reset_parameters()
        if self.output_layer.bias is not None:
            nn.init.zeros_(self.output_layer.bias)

    def forward_flat(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.hidden_layers(x))  # (P, d) -> (P, C)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, norm={self.norm!r}, nonlinearity={self.nonlinearity!r}"
