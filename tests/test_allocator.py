"""training.run.allocator: freed activations stay in the process, so the next step's tensors do not page-fault."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

glibc_linux = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None, reason="glibc only"
)

# Page faults of 20 "steps" that each hold activations of 4 and 8 MiB and then free them all, as a training step does,
# in a fresh interpreter, after a warm-up (glibc settles on where blocks live within the first few rounds). Mixed sizes
# matter: glibc's adaptive threshold keeps a single repeated size, the mix makes it hand memory back every step.
PROBE = textwrap.dedent(
    """
    import resource
    import torch
    from training.run.allocator import keep_freed_memory
    applied = keep_freed_memory()
    def step():
        activations = [torch.empty(n << 18).fill_(1.0) for n in (4, 8, 4, 8, 4, 8)]
        del activations
    for _ in range(10):
        step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        step()
    print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def _probe(**env: str) -> tuple[str, int]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    environment |= {"PYTHONPATH": str(Path(__file__).resolve().parents[1]), **env}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, env=environment
    ).stdout.split()
    return out[0], int(out[1])


@glibc_linux
def test_freed_large_tensors_are_reused_without_page_faults():
    applied, faults = _probe()
    assert applied == "True"
    # 20 x 36 MiB = 184k pages if every activation were a fresh mapping; reused memory faults (almost) never.
    assert faults < 1000, faults
    # glibc's default depends on its adaptive threshold's history (measured: 0 or 81k faults, run to run; 17k per
    # sMNIST training step). The probe's sensitivity is shown below, with mmap forced for every activation.


@glibc_linux
def test_user_allocator_settings_are_left_alone():
    applied, faults = _probe(MALLOC_MMAP_THRESHOLD_="131072")
    assert applied == "False"
    assert faults > 20_000, faults  # every activation mmapped and faulted in again, as the user asked


def test_is_idempotent_and_reports_the_same_answer():
    from training.run.allocator import keep_freed_memory

    assert keep_freed_memory() == keep_freed_memory()
