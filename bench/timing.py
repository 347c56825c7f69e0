"""Timing, peak-memory and table helpers shared by the benchmarks (layers and networks).

Timings are medians over repeats after warm-up. Peak memory is what the torch allocator hands out during one call
beyond what was already allocated, in MiB: ``torch.cuda.max_memory_allocated`` on GPU; on CPU the peak of the running
sum of the allocation and free events that ``torch.profiler`` records (not the process RSS).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch.profiler import ProfilerActivity, profile

from training.run.allocator import keep_freed_memory


class RepeatPolicy(Protocol):
    """How long to measure: about ``target_s`` seconds, between ``min_repeats`` and ``max_repeats`` calls."""

    target_s: float
    min_repeats: int
    max_repeats: int


# ---------------------------------------------------------------------------------------------------------------
# Timing and memory
# ---------------------------------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _once(fn: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence the C++ profiler's log lines (written straight to file descriptor 2)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_memory_mib(fn: Callable[[], object], device: torch.device) -> float:
    """Peak bytes the torch allocator hands out during ``fn()`` beyond what was allocated before, in MiB."""
    if device.type == "cuda":
        _sync(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        _sync(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    current = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        if str(event.device_type()).endswith("CPU"):
            current += event.nbytes()
            peak = max(peak, current)
    return peak / 2**20


@dataclass
class Measurement:
    ms: float | None  # median; None when skipped
    mem_mib: float | None = None
    repeats: int = 0

    @property
    def skipped(self) -> bool:
        return self.ms is None


def measure_pair(
    fn_a: Callable[[], object], fn_b: Callable[[], object], device: torch.device, cfg: RepeatPolicy
) -> tuple[Measurement, Measurement, float]:
    """Time two functions in alternation (a, b, a, b, ...) so that load from other processes hits both alike.

    Returns both measurements and the median of the per-pair ratios ``time_b / time_a``.
    """
    mem_a, mem_b = peak_memory_mib(fn_a, device), peak_memory_mib(fn_b, device)  # also warm-ups
    first = _once(fn_a, device) + _once(fn_b, device)
    repeats = int(min(cfg.max_repeats, max(cfg.min_repeats, cfg.target_s // max(first, 1e-6))))
    pairs = [(_once(fn_a, device), _once(fn_b, device)) for _ in range(repeats)]
    a = Measurement(ms=1e3 * statistics.median(p[0] for p in pairs), mem_mib=mem_a, repeats=repeats)
    b = Measurement(ms=1e3 * statistics.median(p[1] for p in pairs), mem_mib=mem_b, repeats=repeats)
    return a, b, statistics.median(p[1] / p[0] for p in pairs)


def measure(fn: Callable[[], object], device: torch.device, cfg: RepeatPolicy, memory: bool = True) -> Measurement:
    """Warm up, then time ``fn`` ``min_repeats..max_repeats`` times (about ``cfg.target_s`` in all); median ms."""
    mem = peak_memory_mib(fn, device) if memory else None  # doubles as the first warm-up
    first = _once(fn, device)  # second warm-up, and an estimate of the cost
    repeats = int(min(cfg.max_repeats, max(cfg.min_repeats, cfg.target_s // max(first, 1e-6))))
    times = [_once(fn, device) for _ in range(repeats)]
    return Measurement(ms=1e3 * statistics.median(times), mem_mib=mem, repeats=repeats)


# ---------------------------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[object]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def column(self, name: str) -> list[object]:
        i = self.columns.index(name)
        return [row[i] for row in self.rows]


def _fmt(value: object) -> str:
    if value is None:
        return "skipped"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def render(table: Table, markdown: bool) -> str:
    cells = [[_fmt(v) for v in row] for row in table.rows]
    lines: list[str] = []
    if markdown:
        lines.append(f"#### {table.title}\n")
        lines.append("| " + " | ".join(table.columns) + " |")
        lines.append("|" + "|".join("---" for _ in table.columns) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in cells]
    else:
        widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(table.columns)]
        lines.append(table.title)
        lines.append("  ".join(c.rjust(w) for c, w in zip(table.columns, widths)))
        lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    if table.notes:
        lines.append("")
        lines += [f"{'' if markdown else '  '}{note}" for note in table.notes]
    return "\n".join(lines) + "\n"


def machine_description(device: torch.device) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
        with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
        name += f", {torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs visible"
    return f"{name}; torch {torch.__version__}; Python {platform.python_version()}"


def apply_setup_flags(args: argparse.Namespace) -> None:
    """Set up the process as ``main.py`` does for training, unless the flags (``bench.cli``) say otherwise."""
    torch.set_num_threads(args.threads)
    if not args.glibc_default_malloc:
        keep_freed_memory()
