"""The private attributes of other libraries that the project reads, each through one adapter: what it relies on,
pinned, so that an upgrade that changes it fails here rather than in a run."""

from __future__ import annotations

import torch

from ckconv.adapters import version_counter
from datamodules.adapters import speech_commands_sha256
from datamodules.speech_commands import URL


def test_a_tensors_version_counter_counts_its_in_place_writes_and_nothing_else():
    width = torch.nn.Parameter(torch.ones(3))
    start = version_counter(width)
    _ = width * 2  # a read
    assert version_counter(width) == start
    with torch.no_grad():
        width.mul_(0.5)  # how an optimizer step writes
    assert version_counter(width) == start + 1


def test_torchaudio_records_the_published_checksum_of_speech_commands():
    assert speech_commands_sha256(URL) == "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58"
