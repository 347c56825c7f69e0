"""Tests of ckconv.functional: direct and FFT convolution, the FFT size rule and the FFT/direct choice."""

from __future__ import annotations

import itertools
import math
import random

import pytest
import torch

import ckconv.functional as cf
from argcheck import InvalidArgument
from ckconv.functional import (
    FFT_CROSSOVER_TAPS,
    anchor_index,
    conv,
    direct_conv,
    fast_fft_size,
    fft_conv,
    kernel_positions,
    prefers_fft,
)


# ---------------------------------------------------------------------------------------------------------------
# Reference: y[t] = sum_j w[j] x[t + j - c] per dimension, zero outside the input, written as a loop over the taps
# ---------------------------------------------------------------------------------------------------------------
def reference_conv(x: torch.Tensor, weight: torch.Tensor, bias=None, *, causal=False, groups=1) -> torch.Tensor:
    spatial = x.shape[2:]
    ksize = weight.shape[2:]
    anchors = [anchor_index(k, causal) for k in ksize]
    y = x.new_zeros(x.shape[0], weight.shape[0], *spatial)
    for taps in itertools.product(*(range(k) for k in ksize)):
        out_slices, in_slices = [], []
        for j, c, n in zip(taps, anchors, spatial):
            offset = j - c  # output t reads input t + offset
            lo, hi = max(0, -offset), min(n, n - offset)
            if lo >= hi:
                break
            out_slices.append(slice(lo, hi))
            in_slices.append(slice(lo + offset, hi + offset))
        else:
            x_part = x[(slice(None), slice(None), *in_slices)]
            w_tap = weight[(slice(None), slice(None), *taps)]  # (C_out, C_in or 1)
            if groups == 1:
                contrib = torch.einsum("oi,bi...->bo...", w_tap, x_part)
            else:
                contrib = w_tap[:, 0].view(1, -1, *([1] * len(spatial))) * x_part
            y[(slice(None), slice(None), *out_slices)] += contrib
    if bias is not None:
        y = y + bias.view(1, -1, *([1] * len(spatial)))
    return y


def _random_cases(seed: int, count: int) -> list[tuple]:
    """(spatial, kernel, causal, depthwise) drawn with a fixed seed: sizes 1..9, kernels up to 2n - 1 per dimension."""
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        data_dim = rng.choice((1, 1, 2, 2, 3))
        spatial = tuple(rng.randint(1, 9 if data_dim < 3 else 5) for _ in range(data_dim))
        kernel = tuple(rng.randint(1, 2 * n - 1) if rng.random() < 0.7 else 2 * n - 1 for n in spatial)
        causal = data_dim == 1 and rng.random() < 0.5
        cases.append((spatial, kernel, causal, rng.random() < 0.5))
    return cases


HAND_PICKED = [
    # 1D: odd / even, causal / centred, kernel longer than the input (2n - 1 and more), size-1 input and kernel
    ((16,), (5,), False, False),
    ((16,), (4,), False, True),
    ((16,), (4,), True, False),
    ((16,), (7,), True, True),
    ((10,), (19,), False, False),
    ((10,), (19,), True, True),
    ((10,), (24,), False, True),
    ((1,), (1,), False, False),
    ((1,), (3,), True, False),
    ((7,), (1,), False, True),
    # 2D: square / non-square, odd / even, size-1 dimensions
    ((8, 8), (3, 3), False, False),
    ((8, 6), (4, 2), False, True),
    ((5, 7), (9, 13), False, False),
    ((1, 9), (1, 4), False, True),
    ((6, 1), (5, 1), False, False),
    # 3D
    ((4, 5, 3), (3, 2, 5), False, False),
    ((3, 3, 3), (5, 5, 5), False, True),
    ((2, 1, 4), (3, 1, 7), False, False),
]
CASES = HAND_PICKED + _random_cases(seed=1234, count=24)


def _operands(spatial, kernel, depthwise, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    c_in = 3
    c_out = c_in if depthwise else 2
    x = torch.randn(2, c_in, *spatial, generator=g, dtype=dtype)
    w = torch.randn(c_out, 1 if depthwise else c_in, *kernel, generator=g, dtype=dtype)
    b = torch.randn(c_out, generator=g, dtype=dtype)
    return x, w, b, (c_in if depthwise else 1)


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()


# ---------------------------------------------------------------------------------------------------------------
# Correctness against the reference
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("spatial", "kernel", "causal", "depthwise"), CASES)
def test_fft_and_direct_conv_match_the_loop_reference_in_float64(spatial, kernel, causal, depthwise):
    x, w, b, groups = _operands(spatial, kernel, depthwise)
    expected = reference_conv(x, w, b, causal=causal, groups=groups)
    direct = direct_conv(x, w, b, causal=causal, groups=groups)
    fft = fft_conv(x, w, b, causal=causal, groups=groups)
    assert direct.shape == fft.shape == (2, w.shape[0], *spatial)
    assert _rel_err(direct, expected) < 1e-12
    assert _rel_err(fft, expected) < 1e-6
    assert _rel_err(fft, direct) < 1e-6


@pytest.mark.parametrize(("spatial", "kernel", "causal", "depthwise"), CASES[::3])
def test_fft_conv_matches_direct_conv_in_float32_to_float32_rounding(spatial, kernel, causal, depthwise):
    x, w, b, groups = _operands(spatial, kernel, depthwise, dtype=torch.float32, seed=1)
    direct = direct_conv(x, w, b, causal=causal, groups=groups)
    fft = fft_conv(x, w, b, causal=causal, groups=groups)
    assert fft.dtype == torch.float32
    assert _rel_err(fft, direct) < 1e-4


def test_direct_conv_with_odd_centred_kernel_equals_torch_padding_same():
    x, w, b, _ = _operands((12,), (5,), depthwise=False)
    expected = torch.nn.functional.conv1d(x, w, b, padding="same")
    assert torch.allclose(direct_conv(x, w, b), expected, rtol=0, atol=1e-12)


def test_causal_conv_current_step_is_multiplied_by_the_last_tap():
    x = torch.zeros(1, 1, 6, dtype=torch.float64)
    x[..., 2] = 1.0
    w = torch.tensor([[[10.0, 20.0, 30.0]]], dtype=torch.float64)
    for impl in (direct_conv, fft_conv):
        y = impl(x, w, causal=True)[0, 0]
        # y[t] = w[0] x[t-2] + w[1] x[t-1] + w[2] x[t]: the impulse at 2 shows w[2], w[1], w[0] at t = 2, 3, 4.
        assert torch.allclose(y, torch.tensor([0.0, 0, 30, 20, 10, 0], dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("causal", [False, True])
def test_fft_conv_is_linear_not_circular(causal):
    n, k = 32, 9
    w = torch.ones(1, 1, k, dtype=torch.float64)
    last = torch.zeros(1, 1, n, dtype=torch.float64)
    last[..., -1] = 1.0
    first = torch.zeros(1, 1, n, dtype=torch.float64)
    first[..., 0] = 1.0
    c = anchor_index(k, causal)
    # An impulse at s reaches outputs t with 0 <= s - t + c <= k - 1, i.e. t in [s + c - k + 1, s + c].
    y_last = fft_conv(last, w, causal=causal)[0, 0]
    assert y_last[: n - 1 + c - (k - 1)].abs().max() < 1e-12
    assert torch.allclose(y_last[n - 1 + c - (k - 1) :], torch.ones(k - c, dtype=torch.float64), atol=1e-12)
    y_first = fft_conv(first, w, causal=causal)[0, 0]
    assert y_first[c + 1 :].abs().max() < 1e-12
    assert torch.allclose(y_first[: c + 1], torch.ones(c + 1, dtype=torch.float64), atol=1e-12)


def test_fft_conv_under_bfloat16_autocast_computes_in_float32():
    x, w, b, _ = _operands((40,), (31,), depthwise=False, dtype=torch.float32, seed=3)
    reference = fft_conv(x, w, b)
    x16, w16, b16 = x.bfloat16(), w.bfloat16(), b.bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = fft_conv(x16, w16, b16)
    assert y.dtype == torch.float32
    # The FFT ran in float32 on the bf16-rounded operands: equal to float32 maths on those operands ...
    exact = fft_conv(x16.float(), w16.float(), b16.float())
    assert _rel_err(y, exact) < 1e-5
    # ... and within bf16 input rounding (2^-8 relative per operand) of the full-precision result.
    assert _rel_err(y, reference) < 2e-2


@pytest.mark.parametrize("spatial", [(7,), (5, 6), (3, 4, 2)])
def test_zero_padded_places_the_input_at_its_start_in_zeros(spatial):
    torch.manual_seed(0)
    x = torch.randn(2, 3, *spatial)
    sizes = [n + 4 for n in spatial]
    starts = [1 + d for d in range(len(spatial))]
    expected = torch.zeros(2, 3, *sizes)
    expected[(slice(None), slice(None), *(slice(a, a + n) for a, n in zip(starts, spatial)))] = x
    assert torch.equal(cf._zero_padded(x, sizes, starts), expected)
    # Default start: the origin, as rfftn(x, s=sizes) pads.
    padding = [p for n, size in reversed(list(zip(spatial, sizes))) for p in (0, size - n)]
    assert torch.equal(cf._zero_padded(x, sizes), torch.nn.functional.pad(x, padding))


def test_zero_padded_overwrites_whatever_the_new_memory_held():
    x = torch.ones(4, 5, 6)
    for _ in range(3):  # fresh allocations may reuse freed memory full of non-zeros
        garbage = torch.full((4, 5, 16), 7.0)
        del garbage
        out = cf._zero_padded(x, [16], [3])
        assert out[..., :3].eq(0).all() and out[..., 9:].eq(0).all() and out[..., 3:9].eq(1).all()


# ---------------------------------------------------------------------------------------------------------------
# FFT sizes
# ---------------------------------------------------------------------------------------------------------------
def _is_5_smooth(m: int) -> bool:
    for p in (2, 3, 5):
        while m % p == 0:
            m //= p
    return m == 1


def test_fast_fft_size_is_the_smallest_5_smooth_multiple_of_4_then_8():
    for n in range(5, 3001):
        multiple = 4 if n <= 256 else 8
        expected = next(m for m in range(n, 4 * n) if m % multiple == 0 and _is_5_smooth(m))
        assert fast_fft_size(n) == expected, n
    assert [fast_fft_size(n) for n in range(1, 5)] == [1, 2, 4, 4]


def test_fast_fft_size_examples():
    # 1125 (odd) and 1600 would be the plain 5-smooth answers for 1107 and 1567; 1125 runs 2.6x slower than 1152.
    assert [fast_fft_size(n) for n in (1, 7, 11, 97, 257, 848, 1107, 1567)] == [1, 8, 12, 100, 288, 864, 1152, 1600]


# ---------------------------------------------------------------------------------------------------------------
# FFT or direct
# ---------------------------------------------------------------------------------------------------------------
def test_prefers_fft_forced_by_booleans():
    assert prefers_fft((3,), True) is True
    assert prefers_fft((1001,), False) is False


@pytest.mark.parametrize("data_dim", [1, 2, 3])
def test_prefers_fft_auto_switches_at_the_crossover_taps(data_dim, monkeypatch):
    taps = FFT_CROSSOVER_TAPS[data_dim]
    assert prefers_fft((taps,) + (1,) * (data_dim - 1), "auto") is True
    assert prefers_fft((taps - 1,) + (1,) * (data_dim - 1), "auto") is False
    monkeypatch.setitem(FFT_CROSSOVER_TAPS, data_dim, 7)
    assert prefers_fft((7,) + (1,) * (data_dim - 1), "auto") is True
    assert prefers_fft((6,) + (1,) * (data_dim - 1), "auto") is False


def test_prefers_fft_auto_never_takes_the_direct_path_for_2d_kernels_from_33x33():
    for k in range(33, 130):
        assert prefers_fft((k, k), "auto"), k
        assert prefers_fft((k, k + 1), "auto"), k


@pytest.mark.parametrize("bad", ["yes", None, 1, "fft"])
def test_prefers_fft_rejects_other_values(bad):
    with pytest.raises(InvalidArgument) as info:
        prefers_fft((3,), bad)
    assert info.value.argument == "use_fft"


def test_conv_dispatches_to_the_implementation_prefers_fft_picks(monkeypatch):
    calls = []
    monkeypatch.setattr(cf, "fft_conv", lambda *a, **k: calls.append("fft") or "fft")
    monkeypatch.setattr(cf, "direct_conv", lambda *a, **k: calls.append("direct") or "direct")
    x = torch.zeros(1, 1, 40, 40)
    assert cf.conv(x, torch.zeros(1, 1, 33, 33)) == "fft"
    assert cf.conv(x, torch.zeros(1, 1, 3, 3)) == "direct"
    assert cf.conv(x, torch.zeros(1, 1, 3, 3), use_fft=True) == "fft"
    assert cf.conv(x, torch.zeros(1, 1, 33, 33), use_fft=False) == "direct"
    assert calls == ["fft", "direct", "fft", "direct"]


def test_conv_gives_the_same_values_on_both_paths():
    x, w, b, _ = _operands((20,), (9,), depthwise=True)
    assert torch.allclose(conv(x, w, b, groups=3, use_fft=True), conv(x, w, b, groups=3, use_fft=False), atol=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# Argument checks and positions
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("impl", [direct_conv, fft_conv])
def test_convolutions_reject_bad_arguments_with_named_messages(impl):
    x = torch.zeros(1, 2, 8)
    with pytest.raises(InvalidArgument) as info:
        impl(torch.zeros(1, 2, 3, 3, 3, 3), torch.zeros(1, 2, 1, 1, 1, 1))
    assert info.value.argument == "data_dim"
    with pytest.raises(ValueError, match=r"causal=True needs data_dim=1"):
        impl(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 3, 3), causal=True)
    with pytest.raises(ValueError, match=r"input has 2 channels"):
        impl(x, torch.zeros(1, 3, 3))
    with pytest.raises(ValueError, match=r"1 spatial dimensions"):
        impl(torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 3))
    with pytest.raises(ValueError, match=r"groups must be 1 \(dense\) or in_channels=2"):
        impl(x, torch.zeros(2, 1, 3), groups=3)
    with pytest.raises(ValueError, match=r"bias must have shape \(1,\)"):
        impl(x, torch.zeros(1, 2, 3), torch.zeros(2))


def test_kernel_positions_span_minus_one_to_one_with_singleton_dims_at_zero():
    pos = kernel_positions((5, 1), dtype=torch.float64)
    assert pos.shape == (1, 2, 5, 1)
    assert torch.equal(pos[0, 0, :, 0], torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0], dtype=torch.float64))
    assert torch.equal(pos[0, 1], torch.zeros(5, 1, dtype=torch.float64))
    assert torch.equal(kernel_positions((1,), causal=True), torch.ones(1, 1, 1))  # a causal kernel's anchor: +1
    assert torch.equal(kernel_positions((5,), causal=True), kernel_positions((5,)))
    with pytest.raises(ValueError, match=r"kernel_size entries must be positive"):
        kernel_positions((3, 0))
    with pytest.raises(InvalidArgument) as info:
        kernel_positions((3, 3, 3, 3))
    assert info.value.argument == "data_dim"


def test_anchor_index_follows_the_alignment_convention():
    assert [anchor_index(k, False) for k in (1, 2, 3, 4, 5)] == [0, 0, 1, 1, 2]
    assert [anchor_index(k, True) for k in (1, 2, 3, 4, 5)] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_input_spreads_to_every_position_on_the_fft_path_only(bad):
    # As fft_conv's docstring says: the direct path keeps it to the windows that hold it, also when causal.
    x = torch.randn(1, 2, 16, dtype=torch.float64)
    x[0, 0, 10] = bad
    weight = torch.randn(3, 2, 5, dtype=torch.float64)
    direct, fft = direct_conv(x, weight, causal=True), fft_conv(x, weight, causal=True)
    assert torch.isfinite(direct[..., :10]).all() and not torch.isfinite(direct[..., 10:15]).any()
    assert torch.isfinite(direct[..., 15:]).all()
    assert torch.isnan(fft).all()
