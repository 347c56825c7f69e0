"""Band-limited kernel nets (``kernel_bandlimit``, ckconv.bandlimit): the kernel's spectrum stays below the
training grid's Nyquist frequency, nothing changes when the option is off, and a network with it gives (nearly) the
same logits for a band-limited input sampled twice as densely."""

from __future__ import annotations

import math

import pytest
import torch

from argcheck import InvalidArgument, accepted_arguments
from ckconv import CKConv, FlexConv, SeparableFlexConv
from ckconv.bandlimit import ENVELOPE_STDS, band_scale, grid_nyquist
from ckconv.functional import kernel_positions
from ckconv.kernels import KERNEL_NETS, MAGNet
from ckconv.kernels.mfn import FourierFilter, GaborFilter
from models.ccnn import CCNN
from training.build import build_datamodule, build_network
from training.config.checks import ConfigError
from training.config.compose import compose

# The kernel nets whose spectrum follows from their parameters: those that take a bound on it.
MFN_NETS = sorted(name for name, net in KERNEL_NETS.items() if "max_frequency" in accepted_arguments(net))
GABOR_NETS = sorted(name for name in MFN_NETS if "alpha" in accepted_arguments(KERNEL_NETS[name]))
UNBOUNDED_NETS = sorted(set(KERNEL_NETS) - set(MFN_NETS))


def spectrum_above(kernel_net: torch.nn.Module, taps: int, samples: int = 8193) -> float:
    """Fraction of the energy of the kernel net's output, sampled densely over [-1, 1], above the Nyquist frequency
    of ``taps`` taps over the same interval ((taps - 1) / 4 cycles per unit of position)."""
    positions = kernel_positions((samples,), dtype=torch.float64)
    with torch.no_grad():
        values = kernel_net(positions)[0]  # (C, samples)
    window = torch.hann_window(samples, periodic=False, dtype=torch.float64)  # no leakage from the cut at +-1
    power = torch.fft.rfft(values * window, dim=-1).abs().square()
    cycles_per_unit = torch.arange(power.shape[-1], dtype=torch.float64) / 2.0  # the interval is 2 units long
    return float(power[:, cycles_per_unit > (taps - 1) / 4].sum() / power.sum())


def layer(kernel_type: str, bandlimit: float | None, taps: int = 33, data_dim: int = 1, omega_0: float = 50.0):
    """A separable CKConv of ``kernel_type`` (with ``omega_0`` where the net takes one) and the bound ``bandlimit``."""
    torch.manual_seed(0)
    takes_omega_0 = "omega_0" in accepted_arguments(KERNEL_NETS[kernel_type])
    return CKConv(
        4,
        4,
        data_dim,
        kernel_size=taps,
        kernel_type=kernel_type,
        kernel_options={"omega_0": omega_0} if takes_omega_0 else {},
        kernel_bandlimit=bandlimit,
        separable=True,
    ).double()


# ---------------------------------------------------------------------------------------------- the bound
def test_grid_nyquist_is_pi_times_half_the_steps_and_infinite_for_one_tap():
    assert grid_nyquist(33) == pytest.approx(16 * math.pi)  # step 2/32: pi / step
    assert grid_nyquist(2) == pytest.approx(math.pi / 2)
    assert grid_nyquist(1) == math.inf


@pytest.mark.parametrize("kernel_type", MFN_NETS)
def test_bandlimited_kernel_net_has_no_energy_above_the_training_nyquist_frequency(kernel_type):
    omega_0 = 200.0 if kernel_type == "FourierNet" else 50.0  # FourierNet's default scaling stays low otherwise
    free = spectrum_above(layer(kernel_type, None, omega_0=omega_0).kernel_net, 33)
    bounded = spectrum_above(layer(kernel_type, 1.0, omega_0=omega_0).kernel_net, 33)
    # Measured: MAGNet/GaborNet 70% of the energy above it unbounded, 2e-7 bounded (a Gaussian envelope's spectrum
    # has tails: beyond the 2 standard deviations counted, 2.3% of each filter's spectrum, summed over four filters
    # whose products spread it further, is below the bound after all).
    assert free > 0.05
    assert bounded < 1e-5


@pytest.mark.parametrize("kernel_type", GABOR_NETS)
@pytest.mark.parametrize("data_dim", [1, 2])
def test_every_gabor_filter_keeps_within_its_share_whatever_the_parameters(kernel_type, data_dim):
    torch.manual_seed(1)
    max_frequency = (20.0, 7.0)[:data_dim]
    net = KERNEL_NETS[kernel_type](
        data_dim, 3, hidden_channels=16, num_layers=3, omega_0=30.0, max_frequency=max_frequency
    )
    with torch.no_grad():  # as after training steps that pushed the frequencies up
        net.filters[1].linear.weight.mul_(40.0)
        net.filters[2].gamma.mul_(25.0)
    total = torch.zeros(data_dim, dtype=torch.float64)
    for gabor in net.filters:
        weight, gamma = gabor.frequencies()
        highest = (weight.abs() + ENVELOPE_STDS * gamma.abs()).amax(dim=0)  # (d,)
        assert torch.all(highest <= torch.tensor(max_frequency) / 4 * (1 + 1e-6))
        total += highest.double()
    assert torch.all(total <= torch.tensor(max_frequency, dtype=torch.float64) * (1 + 1e-6))


def test_a_filter_within_its_share_is_left_exactly_as_it_is():
    torch.manual_seed(0)
    gabor = GaborFilter(2, 8, omega_0=0.1, alpha=6.0, beta=1.0, band_limit=(1e6, 1e6))
    weight, gamma = gabor.frequencies()
    assert torch.equal(weight, gabor.linear.weight) and torch.equal(gamma, gabor.gamma)
    fourier = FourierFilter(1, 8, scale=1.0, band_limit=(1e6,))
    assert torch.equal(fourier.frequencies(), fourier.linear.weight)


def test_a_filter_over_its_share_is_dilated_as_a_whole_along_that_axis_only():
    gabor = GaborFilter(2, 3, omega_0=1.0, alpha=6.0, beta=1.0, band_limit=(10.0, 100.0))
    with torch.no_grad():
        gabor.linear.weight.copy_(torch.tensor([[4.0, 1.0], [-16.0, 2.0], [2.0, 3.0]]))
        gabor.gamma.copy_(torch.tensor([[1.0, 1.0], [2.0, 1.0], [0.5, 1.0]]))
    weight, gamma = gabor.frequencies()
    # Axis 0: highest unit |-16| + 2 * 2 = 20 > 10, so every unit is halved; axis 1 (highest 5 <= 100) is untouched.
    assert torch.equal(weight, torch.tensor([[2.0, 1.0], [-8.0, 2.0], [1.0, 3.0]]))
    assert torch.equal(gamma, torch.tensor([[0.5, 1.0], [1.0, 1.0], [0.25, 1.0]]))


def test_band_scale_sends_finite_gradients_along_an_unbounded_axis():
    extent = torch.tensor([[3.0, 50.0], [1.0, 80.0]], requires_grad=True)
    scale = band_scale(extent, torch.tensor([2.0, math.inf]))
    assert torch.equal(scale, torch.tensor([2.0 / 3.0, 1.0]))
    scale.sum().backward()
    assert torch.isfinite(extent.grad).all()
    assert extent.grad[:, 1].abs().sum() == 0  # no bound along axis 1: nothing depends on its extents


def test_a_single_tap_axis_is_not_bounded_and_training_gradients_stay_finite():
    conv = layer("MAGNet", 1.0, taps=(1, 9), data_dim=2)
    assert conv.kernel_net.max_frequency == (math.inf, 1.0 * grid_nyquist(9))
    x = torch.randn(2, 4, 5, 12, dtype=torch.float64)
    conv(x).square().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in conv.parameters() if p.grad is not None)


# ---------------------------------------------------------------------------------------------- off changes nothing
@pytest.mark.parametrize("cls", [CKConv, FlexConv, SeparableFlexConv])
@pytest.mark.parametrize("kernel_type", MFN_NETS)
def test_the_bound_draws_the_same_initial_parameters_and_saves_no_extra_state(cls, kernel_type):
    def make(**extra):
        torch.manual_seed(3)
        # omega_0 100: frequencies above the 40-tap grid's Nyquist frequency, which the bound then lowers
        options = {"omega_0": 100.0}
        return cls(3, 3, 1, input_size=(40,), kernel_type=kernel_type, kernel_options=options, **extra).double()

    plain, off, on = make(), make(kernel_bandlimit=None), make(kernel_bandlimit=1.0)
    x = torch.randn(2, 3, 40, dtype=torch.float64)
    assert torch.equal(plain(x), off(x))
    state, bounded = plain.state_dict(), on.state_dict()
    assert state.keys() == bounded.keys()  # a checkpoint has the same tensors with the bound on
    # The same random draws; only the Chang scaling of the output layer follows the crop of the widened mask.
    scaled = "kernel_net.output_layer.weight"
    assert all(torch.equal(value, bounded[key]) for key, value in state.items() if key != scaled)
    taps = [m.mask.cropped_kernel_size((40,))[0] if m.mask is not None else 40 for m in (plain, on)]
    torch.testing.assert_close(bounded[scaled], state[scaled] * math.sqrt(taps[0] / taps[1]), rtol=1e-6, atol=0)
    assert not torch.equal(plain(x), on(x))  # another function: the bound is applied


def test_layers_and_kernel_nets_say_when_they_are_band_limited():
    conv = layer("GaborNet", 0.5)
    assert "kernel_bandlimit=0.5" in repr(conv)
    assert "band_limit=" in repr(conv.kernel_net.filters[0])
    assert conv.kernel_net.max_frequency == pytest.approx((0.5 * 16 * math.pi,))  # no mask: all of the bound
    assert "band_limit" not in repr(layer("GaborNet", None))


# ---------------------------------------------------------------------------------------------- the mask's share
def test_a_masked_layer_gives_half_of_the_bound_to_its_mask_and_half_to_its_kernel_net():
    torch.manual_seed(0)
    narrow = {"mask_options": {"init_value": 0.01}}
    conv = FlexConv(2, 2, 2, input_size=(33, 17), kernel_options={"num_layers": 3}, kernel_bandlimit=1.0, **narrow)
    nyquist = (16 * math.pi, 8 * math.pi)  # of 33 and 17 taps over [-1, 1]
    assert conv.max_frequency == pytest.approx(nyquist)
    assert conv.kernel_net.max_frequency == pytest.approx(tuple(f / 2 for f in nyquist))
    assert conv.kernel_net.filter_band_limit() == pytest.approx(tuple(f / 8 for f in nyquist))  # 4 filters
    assert conv.mask.min_widths == pytest.approx(tuple(ENVELOPE_STDS / (f / 2) for f in nyquist))
    assert conv.mask.min_widths[0] / (2 / 32) == pytest.approx(4 / math.pi)  # 1.27 taps of the training grid
    applied = torch.sqrt(0.01**2 + torch.tensor(conv.mask.min_widths) ** 2).float()
    torch.testing.assert_close(conv.mask.applied_width(), applied)
    # The crop follows the width applied (0.080 and 0.160): 0.01 alone would keep one tap per axis.
    assert conv.mask.cropped_kernel_size((33, 17)) == (5, 5)
    unbounded = FlexConv(2, 2, 2, input_size=(33, 17), **narrow)
    assert unbounded.mask.cropped_kernel_size((33, 17)) == (1, 1) and unbounded.mask.min_width is None
    unmasked = CKConv(2, 2, 2, input_size=(33, 17), kernel_bandlimit=1.0)
    assert unmasked.kernel_net.max_frequency == pytest.approx(nyquist)  # no mask: the kernel net has it all


def test_a_narrow_mask_is_band_limited_with_its_layer():
    """The sampled kernel of a FlexConv (kernel net times mask) whose mask has shrunk to a fraction of a tap: without
    the bound its energy spreads over all frequencies, with it the mask's width applied keeps it in the band."""

    def above(bandlimit):
        torch.manual_seed(0)
        slow = {"omega_0": 1.0}
        conv = FlexConv(1, 1, 1, input_size=(33,), kernel_options=slow, kernel_bandlimit=bandlimit).double()
        with torch.no_grad():
            conv.mask.width.fill_(0.004)
        conv.mask.dynamic_cropping = False  # the whole grid: the spectrum of the function, not of a crop
        positions = kernel_positions((8193,), dtype=torch.float64)
        with torch.no_grad():
            values = (conv.kernel_net(positions) * conv.mask(positions))[0]
        power = torch.fft.rfft(values, dim=-1).abs().square()
        cycles_per_unit = torch.arange(power.shape[-1], dtype=torch.float64) / 2.0
        return float(power[:, cycles_per_unit > 8].sum() / power.sum())

    assert above(None) > 0.5
    assert above(1.0) < 1e-3


# ---------------------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("value", [0, 0.0, -0.5, 1.5, True, "half", math.nan])
def test_bandlimit_outside_zero_one_is_refused_by_name(value):
    with pytest.raises(InvalidArgument) as error:
        layer("MAGNet", value)
    assert error.value.argument == "kernel_bandlimit"


def test_a_bandlimit_of_one_is_the_whole_band():
    assert layer("MAGNet", 1).kernel_net.max_frequency == pytest.approx((grid_nyquist(33),))


@pytest.mark.parametrize("kernel_type", UNBOUNDED_NETS)
def test_bandlimit_needs_a_kernel_net_that_takes_max_frequency(kernel_type):
    # Read from the signature: a net that takes no max_frequency cannot be bounded (SIREN and MLP today).
    assert "max_frequency" not in accepted_arguments(KERNEL_NETS[kernel_type])
    with pytest.raises(InvalidArgument) as error:
        layer(kernel_type, 1.0)
    assert error.value.argument == "kernel_bandlimit"
    assert layer(kernel_type, None).kernel_bandlimit is None  # unbounded, it builds


def test_every_net_that_takes_max_frequency_is_bounded_by_the_layer():
    assert MFN_NETS and UNBOUNDED_NETS
    for kernel_type in MFN_NETS:
        assert layer(kernel_type, 0.5).kernel_net.max_frequency == pytest.approx((0.5 * grid_nyquist(33),))
        assert layer(kernel_type, None).kernel_net.max_frequency is None


@pytest.mark.parametrize("max_frequency", [(1.0, 0.0), (1.0, -2.0), (1.0, 2.0, 3.0), 0.0])
def test_max_frequency_of_a_kernel_net_must_be_positive_per_axis(max_frequency):
    with pytest.raises(InvalidArgument) as error:
        MAGNet(2, 3, max_frequency=max_frequency)
    assert error.value.argument == "max_frequency"


def test_max_frequency_is_set_by_the_layer_not_by_kernel_options():
    with pytest.raises(InvalidArgument) as error:
        CKConv(1, 1, 1, kernel_size=9, kernel_options={"max_frequency": 10.0})
    assert error.value.argument == "kernel_options.max_frequency"


def mnist1d_network(*overrides: str) -> CCNN:
    cfg = compose(["net.no_hidden=8", "net.no_blocks=1", "kernel.no_hidden=8", *overrides])
    return build_network(cfg, build_datamodule(cfg).meta)


@pytest.mark.parametrize("value", ["2.0", "0"])
def test_the_flag_names_itself_in_the_error(value):
    with pytest.raises(ConfigError) as error:
        mnist1d_network(f"kernel.bandlimit={value}")
    assert error.value.flag == "kernel.bandlimit"


def test_the_flag_reaches_every_conv_layer_of_the_network():
    layers = [m for m in mnist1d_network("kernel.bandlimit=0.5").modules() if isinstance(m, CKConv)]
    assert layers and all(m.kernel_bandlimit == 0.5 for m in layers)
    assert all(m.kernel_net.max_frequency == pytest.approx((0.25 * grid_nyquist(40),)) for m in layers)  # masked


# ---------------------------------------------------------------------------------------------- a network at 2x
def band_limited_input(m: int, data_dim: int) -> torch.Tensor:
    """Two channels of a smooth, band-limited pattern (3 cycles under a Gaussian window that vanishes at the
    borders) sampled at ``m`` pixel centres ``(i + 1/2) / m`` per axis of the same extent."""
    t = (torch.arange(m, dtype=torch.float64) + 0.5) / m
    x = torch.exp(-(((t - 0.5) / 0.15) ** 2)) * torch.cos(2 * math.pi * 3 * t)
    if data_dim == 1:
        return torch.stack([x, x.flip(0)]).unsqueeze(0)  # (1, 2, m)
    image = x.view(m, 1) * x.view(1, m)
    return torch.stack([image, image.T.flip(0)]).unsqueeze(0)  # (1, 2, m, m)


def relative_logit_change(bandlimit: float | None, data_dim: int, n: int, seed: int, crop: bool = True) -> float:
    torch.manual_seed(seed)
    options = {
        "kernel_options": {"omega_0": 10.0},
        "kernel_bandlimit": bandlimit,
        "mask_options": {"init_value": 0.3, "dynamic_cropping": crop},
    }
    net = CCNN(2, 10, data_dim, (n,) * data_dim, hidden_channels=16, num_blocks=2, conv_options=options)
    net = net.double().eval()
    with torch.no_grad():
        once, twice = net(band_limited_input(n, data_dim)), net(band_limited_input(2 * n, data_dim))
    return float((twice - once).abs().max() / once.abs().max())


@pytest.mark.parametrize(
    ("data_dim", "crop", "tolerance"), [(1, True, 0.08), (2, True, 0.03), (1, False, 0.02), (2, False, 0.02)]
)
def test_a_network_bounded_or_not_gives_nearly_the_same_logits_at_twice_the_resolution(data_dim, crop, tolerance):
    """The CCNN's default layer (centred SeparableFlexConv, MAGNet kernels), trained size 33 (per axis), evaluated on
    the same band-limited pattern sampled at 33 and at 66 points; each kernel at 66 is the band-limited interpolation
    of its 33 training taps (``ckconv.conv.CKConv.sample_kernel``).

    Measured over seeds 0-5, the largest logit change relative to the largest logit, with the mask's dynamic crop /
    without it: bounded (``kernel_bandlimit=1.0``) 0.8% / 0.07% in 1D, 0.5% / 0.17% in 2D; unbounded 5.2% / 1.3% in
    1D, 1.4% / 1.4% in 2D. What remains is what the GELUs between the layers add (harmonics of the pattern above the
    33-point grid's Nyquist frequency alias at 33 and not at 66), the crop's cut and the quadrature error of each sum
    over taps. When the layers sampled their kernel nets at the 66 positions instead, the unbounded logits moved by
    14-135% (same seeds): the kernel nets' frequencies above the training grid's Nyquist frequency, folded at 33, were
    sampled as they are at 66.
    """
    bounded = [relative_logit_change(1.0, data_dim, 33, seed, crop) for seed in range(3)]
    free = [relative_logit_change(None, data_dim, 33, seed, crop) for seed in range(3)]
    assert max(bounded) < tolerance / 4, bounded
    assert max(free) < tolerance, free
