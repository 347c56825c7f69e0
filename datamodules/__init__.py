"""One LightningDataModule per data source; ``dataset.name`` selects one from :data:`DATAMODULES`.

Modules are imported on first use, so that choosing MNIST-1D never imports the audio or image stacks; the package
itself imports neither torch nor Lightning (``datamodules.base`` does, 6 s), so that a tool of this room
(``python -m datamodules.prepare``) checks its command line, and handles Ctrl-C, before they load.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from argcheck import check_choice

if TYPE_CHECKING:
    from datamodules.base import CCNNDataModule, DataError, DataMeta

# What the package re-exports from datamodules.base, imported on first access (PEP 562).
_FROM_BASE = ("CCNNDataModule", "DataError", "DataMeta")

# dataset.name -> "module:Class"
DATAMODULES: dict[str, str] = {
    "MNIST1D": "datamodules.mnist1d:MNIST1DDataModule",
    "MNIST": "datamodules.mnist:MNISTDataModule",
    "CIFAR10": "datamodules.cifar:CIFAR10DataModule",
    "CIFAR100": "datamodules.cifar:CIFAR100DataModule",
    "STL10": "datamodules.stl10:STL10DataModule",
    "SpeechCommands": "datamodules.speech_commands:SpeechCommandsDataModule",
    "ListOps": "datamodules.listops:ListOpsDataModule",
    "IMDB": "datamodules.text:IMDBDataModule",
    "AAN": "datamodules.retrieval:AANDataModule",
    "PathFinder": "datamodules.pathfinder:PathFinderDataModule",
    "Blobs3D": "datamodules.blobs:Blobs3DDataModule",
    "Blobs2D": "datamodules.blobs:Blobs2DDataModule",
    "OrganMNIST3D": "datamodules.medmnist3d:OrganMNIST3DDataModule",
    "NoduleMNIST3D": "datamodules.medmnist3d:NoduleMNIST3DDataModule",
    "AdrenalMNIST3D": "datamodules.medmnist3d:AdrenalMNIST3DDataModule",
    "FractureMNIST3D": "datamodules.medmnist3d:FractureMNIST3DDataModule",
    "VesselMNIST3D": "datamodules.medmnist3d:VesselMNIST3DDataModule",
    "SynapseMNIST3D": "datamodules.medmnist3d:SynapseMNIST3DDataModule",
}


def datamodule_class(name: str) -> type[CCNNDataModule]:
    """The datamodule class registered as ``name``."""
    check_choice("name", name, tuple(DATAMODULES))
    module_name, class_name = DATAMODULES[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def __getattr__(name: str) -> Any:
    if name in _FROM_BASE:
        return getattr(importlib.import_module("datamodules.base"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DATAMODULES", "CCNNDataModule", "DataError", "DataMeta", "datamodule_class"]
