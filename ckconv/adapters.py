"""What ckconv needs of torch that torch offers only privately, in one place.

Checked on torch 2.13.0 and 2.14.1; tests/test_adapters.py pins the behaviour relied on, so that an upgrade that
changes it fails there, not in a run.
"""

from __future__ import annotations

from torch import Tensor


def version_counter(tensor: Tensor) -> int:
    """The count of in-place writes to ``tensor`` (``Tensor._version``; torch has no public accessor). A mask's host
    copy of its width is valid while this count is unchanged (``ckconv.mask.HostCopy``)."""
    return tensor._version
