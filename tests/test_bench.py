"""The layer benchmark: quick mode runs in-process and yields complete tables; the crossover picks the right value."""

from __future__ import annotations

import math

import pytest
import torch

from bench.layers import (
    SECTIONS,
    Config,
    conservative_crossover,
    crossover,
    kernels_1d,
    kernels_upto,
    render,
    run,
)
from ckconv.functional import FFT_CROSSOVER_TAPS, prefers_fft


@pytest.fixture(scope="module")
def quick_report():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        return run(quick=True, device="cpu", sections=SECTIONS)
    finally:
        torch.set_num_threads(threads)


def _table(report, prefix: str):
    matches = [t for t in report.tables if t.title.startswith(prefix)]
    assert len(matches) == 1, [t.title for t in report.tables]
    return matches[0]


def _positive(values) -> bool:
    return all(isinstance(v, float) and v > 0 and math.isfinite(v) for v in values)


def test_quick_layer_table(quick_report):
    cfg = Config.quick()
    table = _table(quick_report, "SeparableFlexConv")
    expected = len(cfg.mask_inits) * (len(cfg.layer_lengths_1d) + len(cfg.layer_sizes_2d) * len(cfg.layer_kernels_2d))
    assert len(table.rows) == expected
    assert table.column("input")[0] == f"{cfg.layer_lengths_1d[0]} causal"
    assert _positive(table.column("ms"))
    assert _positive(table.column("peak MiB"))
    assert set(table.column("path")) <= {"fft", "direct"}


def test_quick_conv_tables(quick_report):
    cfg = Config.quick()
    one = _table(quick_report, "1D depthwise")
    assert one.column("taps") == kernels_1d(cfg.lengths_1d[0])
    assert _positive(one.column("FFT ms"))
    assert all(v is None or v > 0 for v in one.column("direct ms"))
    two = _table(quick_report, "2D depthwise")
    assert two.column("taps") == [k * k for k in kernels_upto(cfg.kernels_2d, cfg.sizes_2d[0])]
    assert _positive(two.column("FFT ms"))
    assert set(quick_report.crossover) == {1, 2}
    text = render(two, markdown=True)
    assert text.count("\n| ") == len(two.rows) + 1  # header and one line per row


def test_quick_round_trip_table(quick_report):
    table = _table(quick_report, "1D FFT convolution")
    assert table.column("L") == list(Config.quick().lengths_1d)
    for name in ("fwd conv ms", "fwd round trip ms", "fwd ratio", "fwd+bwd conv ms", "fwd+bwd ratio"):
        assert _positive(table.column(name)), name


def test_kernel_lists():
    assert kernels_1d(784) == [3, 7, 15, 31, 63, 127, 255, 511, 784]
    assert kernels_1d(1024) == [3, 7, 15, 31, 63, 127, 255, 511, 1023, 1024]
    assert kernels_upto((3, 5, 33, 49), 32) == [3, 5, 32]


def test_crossover_on_synthetic_timings():
    # FFT flat at 10 ms, direct linear in taps: direct wins up to 63, FFT from 127 on.
    timings = [(k, 10.0, 0.1 * k) for k in (3, 7, 15, 31, 63, 127, 255)]
    assert crossover(timings) == 127
    # Order does not matter; a skipped (too slow) direct case counts as an FFT win.
    assert crossover([*reversed(timings), (511, 10.0, None)]) == 127
    # A noisy FFT win at a small kernel followed by a direct win does not count.
    assert crossover([(3, 1.0, 2.0), (7, 3.0, 2.0), (15, 3.0, 4.0), (31, 3.0, 8.0)]) == 15
    # FFT faster everywhere, or never faster.
    assert crossover([(3, 1.0, 2.0), (7, 1.0, 3.0)]) == 3
    assert crossover([(3, 5.0, 2.0), (7, 5.0, 3.0)]) is None
    assert conservative_crossover([127, 255, None, 63]) == 255
    assert conservative_crossover([None]) is None


def test_shipped_crossover_sends_large_2d_kernels_to_fft():
    assert prefers_fft((33, 33))
    assert prefers_fft((65, 65))
    assert not prefers_fft((3, 3))
    assert not prefers_fft((3,))
    assert set(FFT_CROSSOVER_TAPS) == {1, 2, 3}
