"""What the datamodules read from their libraries that those offer only privately, in one place.

Checked on torchaudio 2.11.0; tests/test_adapters.py pins the values relied on.
"""

from __future__ import annotations


def speech_commands_sha256(url: str) -> str:
    """torchaudio's record of the SHA-256 of the Speech Commands archive at ``url`` (its ``_CHECKSUMS``: the
    published archive's, which torchaudio checks its own downloads against)."""
    from torchaudio.datasets import speechcommands

    return speechcommands._CHECKSUMS[url]
