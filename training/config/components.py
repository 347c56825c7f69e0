"""The objects a run builds from its flags, and how they nest: which class each is, and what the code passes them.

A flag's ``feeds="<component>.<argument>"`` (``training.config.schema``) names an argument of a component's class.
A component is either one class or chosen from a registry by a flag (``conv.type`` picks a layer of
``ckconv.CONV_TYPES``); a nested component reaches its class through one argument of its parent (the kernel net's
arguments are the conv layer's ``kernel_options``), and exists only where the parent's class takes that argument (a
discrete ``Conv`` takes no ``kernel_options``: its runs build no kernel net). ``supplied`` are the arguments the code
passes itself (the data's shape, the layer's own settings), so that no flag feeds them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Component:
    """One constructor call of a run.

    Attributes:
        name: how flags name it in ``feeds``.
        target: ``"module:Class"``, or with ``selected_by`` a registry ``"module:DICT"`` of names to classes.
        selected_by: the flag whose value is the registry name.
        within: ``(parent component, its argument)`` that carries this component's arguments.
        supplied: arguments the code (or the parent) passes, which no flag feeds.
        third_party: a class of another library: its other arguments need no flag.
    """

    name: str
    target: str
    selected_by: str | None = None
    within: tuple[str, str] | None = None
    supplied: tuple[str, ...] = ()
    third_party: bool = False


# The network's arguments that the dataset's metadata gives (DataMeta's field -> CCNN's argument).
DATA_ARGUMENTS = {
    "in_channels": "in_channels",
    "num_classes": "num_classes",
    "data_dim": "data_dim",
    "size": "input_size",
    "vocab_size": "vocab_size",
    "paired": "paired",
    "grid": "input_grid",
}

COMPONENTS: dict[str, Component] = {
    component.name: component
    for component in (
        Component(
            "network",
            "models.ccnn:CCNN",
            supplied=tuple(DATA_ARGUMENTS.values()),
        ),
        Component(
            "conv",
            "ckconv.conv:CONV_TYPES",
            selected_by="conv.type",
            within=("network", "conv_options"),
            supplied=("in_channels", "out_channels", "data_dim", "input_size", "input_grid", "separable"),
        ),
        Component(
            "kernel",
            "ckconv.kernels:KERNEL_NETS",
            selected_by="kernel.type",
            within=("conv", "kernel_options"),
            supplied=("data_dim", "out_channels", "causal", "max_frequency"),
        ),
        Component(
            "mask",
            "ckconv.mask:GaussianMask",
            within=("conv", "mask_options"),
            supplied=("data_dim", "causal", "max_frequency"),
        ),
        Component(
            "data",
            "datamodules:DATAMODULES",
            selected_by="dataset.name",
            supplied=("batch_size", "test_batch_size"),
        ),
        Component(
            "module",
            "models.module:ClassificationModule",
            supplied=("net", "num_classes", "optimizer", "scheduler", "input_grid"),
        ),
        Component("optimizer", "models.optim:OptimizerSettings"),
        Component("schedule", "models.schedule:SCHEDULES", selected_by="scheduler.name"),
        Component("ema", "training.callbacks.ema:EMAWeights"),
        Component("trainer", "pytorch_lightning:Trainer", third_party=True),
        Component("early_stopping", "pytorch_lightning.callbacks:EarlyStopping", third_party=True),
    )
}
