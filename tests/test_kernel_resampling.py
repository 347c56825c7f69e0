"""A continuous kernel on a grid other than the training grid: the band-limited function its training taps determine,
low-passed to a coarser grid's Nyquist frequency before it is sampled there (``ckconv.conv.CKConv.sample_kernel``,
``ckconv.functional.bandlimited_resampling``), and signals resampled the same way (``ckconv.functional.resample``).
References are plain loops and FFTs in float64."""

from __future__ import annotations

import math

import pytest
import torch

from ckconv import CKConv, FlexConv
from ckconv.functional import bandlimited_resampling, kernel_positions, resample


def build(cls, in_channels, out_channels, data_dim, input_size, **kwargs):
    torch.manual_seed(0)
    return cls(in_channels, out_channels, data_dim, input_size=input_size, **kwargs).double()


def dtft(taps: torch.Tensor, step: float, frequencies: torch.Tensor) -> torch.Tensor:
    """The spectrum ``sum_i k_i exp(-j w x_i)`` of taps on ``linspace(-1, 1)`` at ``frequencies`` (rad / unit)."""
    positions = torch.linspace(-1, 1, taps.shape[-1], dtype=torch.float64)
    assert math.isclose(positions[1] - positions[0], step)
    phases = torch.exp(-1j * frequencies[:, None] * positions[None, :])
    return phases @ taps.to(torch.complex128)


def sinc_loop(values: list[float], source: list[float], target: list[float], h0: float, h1: float) -> list[float]:
    """The resampled kernel by its definition, one tap at a time: ``(h1 / H) sum_i v_i sinc((y - x_i) / H)``."""
    coarser = max(h0, h1)
    out = []
    for y in target:
        total = 0.0
        for v, x in zip(values, source):
            u = (y - x) / coarser
            total += v * (1.0 if u == 0 else math.sin(math.pi * u) / (math.pi * u))
        out.append(total * h1 / coarser)
    return out


def test_a_kernel_on_half_the_taps_is_the_training_kernel_low_passed_and_decimated_with_nothing_folded():
    """Trained with 65 taps (step 1/32), sampled for an input of half the size: 33 taps (step 1/16). An unbounded
    kernel net with a large omega_0 puts much of its energy between the two Nyquist frequencies (16 pi and 32 pi)."""
    layer = build(CKConv, 1, 1, 1, (64,), kernel_size=65, kernel_options={"omega_0": 300.0})
    dense = layer.sample_kernel((64,))[0, 0]  # the training taps
    coarse = layer.sample_kernel((32,))[0, 0]
    assert coarse.shape == (33,)

    # The reference: an ideal low-pass by FFT (zero-padded 16 times: its periodic wrap is negligible), then every
    # other tap, times the step ratio 2.
    n = 65 * 16
    spectrum = torch.fft.fft(torch.nn.functional.pad(dense, (0, n - 65)))
    bins = torch.fft.fftfreq(n, dtype=torch.float64).abs()  # cycles per training tap; the coarse Nyquist is 1/4
    keep = torch.where(bins < 0.25, 1.0, torch.where(bins == 0.25, 0.5, 0.0))
    low_passed = torch.fft.ifft(spectrum * keep).real[:65]
    reference = 2 * low_passed[::2]
    assert torch.linalg.norm(coarse - reference) / torch.linalg.norm(reference) < 0.01

    # Nothing above the coarse Nyquist frequency is folded in: on the coarse band the coarse kernel's spectrum is the
    # training kernel's, within 1% of the energy (0.5% measured), and the training kernel has a third or more of its
    # energy above it. The band stops at 90% of the Nyquist frequency: at its edge the spectra differ by the ripple of
    # the low-passed kernel's truncation to the layer's extent (4% of the energy with the edge counted).
    band = torch.linspace(-0.9 * 16 * math.pi, 0.9 * 16 * math.pi, 401, dtype=torch.float64)
    whole = torch.linspace(-32 * math.pi, 32 * math.pi, 801, dtype=torch.float64)
    above = (dtft(dense, 1 / 32, whole).abs() ** 2)[whole.abs() > 16 * math.pi].sum() * 2
    assert above / (dtft(dense, 1 / 32, whole).abs() ** 2).sum() / 2 > 0.3
    expected = dtft(dense, 1 / 32, band)
    error = (dtft(coarse, 1 / 16, band) - expected).abs().pow(2).sum() / expected.abs().pow(2).sum()
    assert error < 0.01
    # Sampling the kernel net at the 33 coarse positions (what the layer did before) folds that energy in.
    positions = kernel_positions((33,), dtype=torch.float64)
    point_sampled = 2 * layer.kernel_net(positions)[0, 0].detach()
    folded = (dtft(point_sampled, 1 / 16, band) - expected).abs().pow(2).sum() / expected.abs().pow(2).sum()
    assert folded > 0.2  # 67% measured


@pytest.mark.parametrize("seed", range(4))
def test_resampled_kernels_match_the_sinc_sum_tap_by_tap_on_random_grids(seed):
    """Random training and new sizes, finer and coarser, with and without the mask's crop; 1D and 2D."""
    generator = torch.Generator().manual_seed(seed)
    data_dim = 1 + seed % 2
    trained = tuple(int(v) for v in torch.randint(5, 24, (data_dim,), generator=generator))
    new = tuple(int(v) for v in torch.randint(3, 48, (data_dim,), generator=generator))
    cls = FlexConv if seed < 2 else CKConv
    options = {"mask_options": {"init_value": 0.4}} if cls is FlexConv else {}
    layer = build(cls, 1, 1, data_dim, trained, kernel_options={"omega_0": 40.0}, **options)
    training = layer.sample_kernel(trained)[0, 0]
    kernel = layer.sample_kernel(new)[0, 0]
    taps, kept = layer.kernel_size_for(new), tuple(kernel.shape)
    kept_trained = tuple(training.shape)
    expected = training
    for axis in range(data_dim):
        k, s = layer.kernel_size[axis], taps[axis]
        if s == k:
            continue
        grid_k = [-1 + 2 * i / (k - 1) for i in range(k)]
        grid_s = [-1 + 2 * j / (s - 1) for j in range(s)] if s > 1 else [0.0]
        first_k, first_s = (k - kept_trained[axis]) // 2, (s - kept[axis]) // 2
        source, target = grid_k[first_k : first_k + kept_trained[axis]], grid_s[first_s : first_s + kept[axis]]
        moved = expected.movedim(axis, -1)
        rows = [
            sinc_loop(row.tolist(), source, target, 2 / (k - 1), 2 / (s - 1)) if s > 1 else [sum(row.tolist())]
            for row in moved.reshape(-1, moved.shape[-1])
        ]
        expected = torch.tensor(rows, dtype=torch.float64).reshape(*moved.shape[:-1], -1).movedim(-1, axis)
    torch.testing.assert_close(kernel, expected, rtol=1e-9, atol=1e-12)


def test_a_finer_grid_keeps_the_training_taps_and_interpolates_between_them():
    layer = build(FlexConv, 2, 2, 1, (33,), mask_options={"init_value": 0.3, "dynamic_cropping": False})
    training, finer = layer.sample_kernel((33,)), layer.sample_kernel((66,))
    assert finer.shape[-1] == 65
    torch.testing.assert_close(2 * finer[..., ::2], training, rtol=1e-12, atol=1e-14)  # the step ratio is 1/2


def test_bandlimited_resampling_is_the_identity_on_the_same_grid_and_sums_to_one_on_a_finer_one():
    grid = torch.linspace(-1, 1, 9, dtype=torch.float64)
    torch.testing.assert_close(bandlimited_resampling(grid, grid, 0.25, 0.25), torch.eye(9, dtype=torch.float64))
    finer = torch.linspace(-0.5, 0.5, 5, dtype=torch.float64)  # inside the source grid: the sinc tails mostly kept
    matrix = bandlimited_resampling(torch.linspace(-4, 4, 129, dtype=torch.float64), finer, 1 / 16, 1 / 32)
    torch.testing.assert_close(matrix.sum(1), torch.ones(5, dtype=torch.float64), rtol=0, atol=0.02)


def test_resample_keeps_what_the_coarser_grid_holds_and_removes_what_it_cannot():
    """A sum of two sinusoids on 256 cell centres: 8 cycles (below the Nyquist frequency of 64 samples, 32 cycles)
    and 48 cycles (above it, below 256's). Resampled to 64 samples, the first is kept and the second is gone: no
    alias of it at 64 - 48 = 16 cycles. Away from the ends, where the band-limited interpolation misses the samples
    beyond the signal."""
    t = (torch.arange(256, dtype=torch.float64) + 0.5) / 256
    s = (torch.arange(64, dtype=torch.float64) + 0.5) / 64
    low, high = (lambda u: torch.sin(2 * math.pi * 8 * u)), (lambda u: torch.sin(2 * math.pi * 48 * u))
    out = resample((low(t) + high(t)).view(1, 1, 256), (64,))[0, 0]
    middle = slice(16, 48)
    assert (out - low(s))[middle].abs().max() < 0.02
    spectrum = torch.fft.rfft(out - low(s)).abs()
    assert spectrum[16] < 0.02 * torch.fft.rfft(low(s)).abs()[8]
