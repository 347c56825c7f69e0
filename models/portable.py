"""A CCNN in a portable file: its weights as safetensors, its constructor arguments as JSON in the file's header.

:func:`load_portable` rebuilds the network with plain ``CCNN(**arguments)`` and loads the weights: it needs torch,
``safetensors`` and this repository's ``models`` and ``ckconv`` packages, and neither Lightning nor Hydra. The
header's metadata (a ``str -> str`` map every safetensors reader returns) holds:

- ``format``: ``"ccnn-safetensors"``; ``format_version``: ``"1"``;
- ``ccnn_arguments``: the JSON object of the keyword arguments of :class:`models.ccnn.CCNN` (the network's own
  names, not the command line's flags);
- anything else the writer adds (``training.export`` adds ``config``, the run's flags as JSON, and ``resolution``).

Example::

    from models.portable import load_portable
    net = load_portable("mnist1d.safetensors")  # a CCNN in eval mode
    logits = net(x)
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from models.ccnn import CCNN

FORMAT = "ccnn-safetensors"
FORMAT_VERSION = "1"

__all__ = ["load_portable", "read_metadata", "save_portable"]


def _safetensors_torch() -> Any:
    try:
        import safetensors.torch
    except ImportError as error:
        raise ImportError(
            "reading or writing a portable CCNN needs the safetensors package: pip install 'ccnn[export]' (or "
            "pip install safetensors)."
        ) from error
    return safetensors.torch


def save_portable(
    net: CCNN, arguments: Mapping[str, Any], path: str | os.PathLike, metadata: Mapping[str, str] | None = None
) -> None:
    """Write ``net``'s weights and the arguments it was built with to ``path`` (safetensors).

    Args:
        net: the network.
        arguments: the keyword arguments of ``CCNN`` that built ``net`` (JSON-serialisable).
        path: the file to write (overwritten).
        metadata: further ``str -> str`` entries for the header.

    Raises:
        TypeError: ``arguments`` cannot be written as JSON.
    """
    header = {
        **(metadata or {}),
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "ccnn_arguments": json.dumps(dict(arguments), sort_keys=True),
    }
    # safetensors refuses views that share memory or are not contiguous: give it plain copies.
    state = {key: value.detach().contiguous().clone() for key, value in net.state_dict().items()}
    _safetensors_torch().save_file(state, os.fspath(path), metadata=header)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The header metadata of the safetensors file ``path`` (without reading its tensors).

    Raises:
        ValueError: ``path`` is not a portable CCNN file (another safetensors file, or none).
    """
    from safetensors import safe_open

    _safetensors_torch()  # the install hint, if missing
    try:
        with safe_open(os.fspath(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as error:  # safetensors raises its own SafetensorError for files it cannot parse
        raise ValueError(f"{path} is not a safetensors file ({error}).") from error
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path} is a safetensors file but not a portable CCNN (no format={FORMAT!r} in its header).")
    return dict(metadata)


def load_portable(path: str | os.PathLike, map_location: str = "cpu") -> CCNN:
    """The CCNN stored in ``path`` by :func:`save_portable` (``python -m training.export ... --format safetensors``),
    in eval mode, with its weights.

    Args:
        path: a ``.safetensors`` file written by :func:`save_portable`.
        map_location: the device to load the weights to.

    Raises:
        ValueError: ``path`` is not such a file, or a newer format version.
        ImportError: the safetensors package is missing.
    """
    metadata = read_metadata(path)
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path} has format_version {metadata.get('format_version')!r}; this code reads 1.")
    net = CCNN(**json.loads(metadata["ccnn_arguments"]))
    state = _safetensors_torch().load_file(os.fspath(path), device=map_location)
    net.load_state_dict(state, strict=True)
    return net.to(map_location).eval()
