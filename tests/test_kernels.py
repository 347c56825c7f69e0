"""Tests of the kernel networks in ckconv.kernels."""

from __future__ import annotations

import math

import pytest
import torch

from argcheck import InvalidArgument, accepted_arguments
from ckconv.kernels import (
    KERNEL_NETS,
    MLP,
    SIREN,
    FourierNet,
    GaborNet,
    KernelNet,
    MAGNet,
    build_kernel_net,
)


def grid(*size: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Positions (1, d, *size) on a linspace(-1, 1) grid."""
    axes = [torch.linspace(-1.0, 1.0, n, dtype=dtype) for n in size]
    return torch.stack(torch.meshgrid(*axes, indexing="ij")).unsqueeze(0)


def num_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def magnet_param_formula(d: int, H: int, L: int, C: int) -> int:
    return (L + 1) * (3 * d * H + H) + L * (H * H + H) + H * C + C


# ---------------------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("name", sorted(KERNEL_NETS))
@pytest.mark.parametrize("size", [(7,), (4, 6), (3, 2, 5)])
def test_every_kernel_net_maps_positions_to_kernel_of_same_size(name: str, size: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    net = KERNEL_NETS[name](data_dim=len(size), out_channels=3, hidden_channels=8, num_layers=2)
    out = net(grid(*size))
    assert out.shape == (1, 3, *size)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert out.abs().sum() > 0

    out64 = net.double()(grid(*size, dtype=torch.float64))
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out64.float(), out, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(KERNEL_NETS))
def test_kernel_value_depends_only_on_its_own_position(name: str) -> None:
    # Each position is processed independently: evaluating a sub-grid gives the same values.
    torch.manual_seed(0)
    net = KERNEL_NETS[name](data_dim=2, out_channels=2, hidden_channels=8, num_layers=2)
    positions = grid(5, 6)
    full = net(positions)
    part = net(positions[:, :, 1:4, 2:5].contiguous())
    torch.testing.assert_close(part, full[:, :, 1:4, 2:5])


# ------------------------------------------------------------------------------------ MAGNet structure


@pytest.mark.parametrize(("d", "H", "L", "C"), [(1, 32, 3, 1), (1, 4, 1, 5), (2, 16, 2, 3), (3, 8, 4, 7)])
def test_magnet_parameter_count_matches_formula(d: int, H: int, L: int, C: int) -> None:
    net = MAGNet(data_dim=d, out_channels=C, hidden_channels=H, num_layers=L)
    assert num_params(net) == magnet_param_formula(d, H, L, C)


def test_magnet_default_1d_parameter_count() -> None:
    # 4 filters x (gamma 32 + mu 32 + W 32 + b 32) + 3 x (32*32 + 32) + (32 + 1) = 512 + 3168 + 33.
    net = MAGNet(data_dim=1, out_channels=1, hidden_channels=32, num_layers=3)
    assert magnet_param_formula(1, 32, 3, 1) == 3713
    assert num_params(net) == 3713


def test_magnet_without_bias_drops_every_linear_bias() -> None:
    d, H, L, C = 2, 8, 2, 3
    net = MAGNet(data_dim=d, out_channels=C, hidden_channels=H, num_layers=L, bias=False)
    assert num_params(net) == magnet_param_formula(d, H, L, C) - (L + 1) * H - L * H - C


def test_gabornet_has_one_gamma_per_unit() -> None:
    d, H, L, C = 3, 8, 2, 4
    net = GaborNet(data_dim=d, out_channels=C, hidden_channels=H, num_layers=L)
    assert all(f.gamma.shape == (H, 1) for f in net.filters)
    assert num_params(net) == magnet_param_formula(d, H, L, C) - (L + 1) * H * (d - 1)


def test_every_net_exposes_its_final_linear_as_output_layer() -> None:
    for cls in KERNEL_NETS.values():
        net = cls(data_dim=2, out_channels=5, hidden_channels=6, num_layers=2)
        assert isinstance(net.output_layer, torch.nn.Linear)
        assert net.output_layer.out_features == 5
        # Scaling the output weight (Chang init) scales the kernel minus its output bias.
        positions = grid(3, 4)
        before = net(positions) - net.output_layer.bias.view(1, -1, 1, 1)
        with torch.no_grad():
            net.output_layer.weight.mul_(0.5)
        after = net(positions) - net.output_layer.bias.view(1, -1, 1, 1)
        torch.testing.assert_close(after, 0.5 * before)


# ------------------------------------------------------------------------------- MAGNet forward values


@torch.no_grad()
def magnet_reference(net: MAGNet, positions: torch.Tensor) -> torch.Tensor:
    """The MAGNet recursion written out with Python loops, in float64."""
    d = net.data_dim
    H = net.hidden_channels
    size = positions.shape[2:]
    flat = positions.reshape(d, -1).double()
    P = flat.shape[1]

    def gabor(i: int, p: int) -> list[float]:
        filt = net.filters[i]
        gamma = filt.gamma.double()
        mu = filt.mu.double()
        W = filt.linear.weight.double()
        b = filt.linear.bias.double()
        values = []
        for j in range(H):
            exponent = 0.0
            phase = float(b[j])
            for k in range(d):
                x = float(flat[k, p])
                exponent += (float(gamma[j, k]) * (x - float(mu[j, k]))) ** 2
                phase += float(W[j, k]) * x
            values.append(math.exp(-0.5 * exponent) * math.sin(phase))
        return values

    def linear(layer: torch.nn.Linear, h: list[float]) -> list[float]:
        W = layer.weight.double()
        b = layer.bias.double()
        return [float(b[o]) + sum(float(W[o, j]) * h[j] for j in range(len(h))) for o in range(W.shape[0])]

    out = torch.zeros(net.out_channels, P, dtype=torch.float64)
    for p in range(P):
        h = gabor(0, p)
        for i in range(1, net.num_layers + 1):
            g = gabor(i, p)
            a = linear(net.hidden_layers[i - 1], h)
            h = [g[j] * a[j] for j in range(H)]
        out[:, p] = torch.tensor(linear(net.output_layer, h), dtype=torch.float64)
    return out.reshape(1, net.out_channels, *size)


@pytest.mark.parametrize(("d", "size"), [(1, (5,)), (2, (3, 4))])
def test_magnet_forward_matches_loop_reference(d: int, size: tuple[int, ...]) -> None:
    torch.manual_seed(1)
    net = MAGNet(data_dim=d, out_channels=2, hidden_channels=3, num_layers=2, omega_0=2.0)
    with torch.no_grad():  # make every bias matter
        for filt in net.filters:
            filt.linear.bias.uniform_(-1.0, 1.0)
        net.output_layer.bias.uniform_(-1.0, 1.0)
    net = net.double()
    positions = grid(*size, dtype=torch.float64)
    torch.testing.assert_close(net(positions), magnet_reference(net, positions), rtol=1e-10, atol=1e-12)


# -------------------------------------------------------------------------------------- initialisation


def test_magnet_init_biases() -> None:
    net = MAGNet(data_dim=2, out_channels=3, hidden_channels=16, num_layers=3)
    for layer in net.hidden_layers:
        assert torch.equal(layer.bias, torch.ones(16))
    assert torch.equal(net.output_layer.bias, torch.zeros(3))
    for filt in net.filters:
        assert torch.equal(filt.linear.bias, torch.zeros(16))


@pytest.mark.parametrize(("alpha", "beta"), [(6.0, 1.0), (4.0, 2.0)])
def test_magnet_gamma_mean_follows_gamma_distribution(alpha: float, beta: float) -> None:
    torch.manual_seed(0)
    H = 4096
    net = MAGNet(data_dim=2, out_channels=1, hidden_channels=H, num_layers=2, alpha=alpha, beta=beta)
    for i, filt in enumerate(net.filters):
        expected = alpha / (i + 1) / beta
        assert (filt.gamma > 0).all()
        assert abs(filt.gamma.mean().item() - expected) < 0.05 * expected


def test_gabornet_gamma_uses_alpha_over_layer_count_in_every_filter() -> None:
    torch.manual_seed(0)
    net = GaborNet(data_dim=1, out_channels=1, hidden_channels=4096, num_layers=3, alpha=8.0, beta=1.0)
    for filt in net.filters:
        assert abs(filt.gamma.mean().item() - 2.0) < 0.1


def test_magnet_frequencies_scale_with_gamma_and_omega_0() -> None:
    torch.manual_seed(0)
    d, omega_0 = 2, 3.0
    net = MAGNet(data_dim=d, out_channels=1, hidden_channels=64, num_layers=2, omega_0=omega_0)
    for filt in net.filters:
        base = filt.linear.weight / (2 * math.pi * omega_0 * filt.gamma)
        assert base.abs().max() <= 1 / math.sqrt(d) + 1e-6
        assert base.abs().max() > 0.5 / math.sqrt(d)


@pytest.mark.parametrize("cls", [MAGNet, GaborNet])
@pytest.mark.parametrize(
    ("causal", "s", "low", "high"),
    [(False, 1.0, -1.0, 1.0), (False, 0.3, -0.3, 0.3), (True, 0.3, 0.7, 1.0), (True, 1.0, -1.0, 1.0)],
)
def test_gabor_centres_lie_in_init_range(cls: type[KernelNet], causal: bool, s: float, low: float, high: float) -> None:
    torch.manual_seed(0)
    net = cls(data_dim=2, out_channels=1, hidden_channels=512, num_layers=2, causal=causal, init_spatial_value=s)
    for filt in net.filters:
        assert filt.mu.min() >= low and filt.mu.max() <= high
        # The samples fill the range rather than sitting in a corner of it.
        assert filt.mu.min() < low + 0.05 * (high - low) and filt.mu.max() > high - 0.05 * (high - low)


@pytest.mark.parametrize("name", sorted(KERNEL_NETS))
def test_seeded_construction_is_deterministic(name: str) -> None:
    torch.manual_seed(123)
    a = KERNEL_NETS[name](data_dim=2, out_channels=2, hidden_channels=8)
    torch.manual_seed(123)
    b = KERNEL_NETS[name](data_dim=2, out_channels=2, hidden_channels=8)
    torch.manual_seed(124)
    c = KERNEL_NETS[name](data_dim=2, out_channels=2, hidden_channels=8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_siren_init_bounds() -> None:
    torch.manual_seed(0)
    d, H, omega_0 = 2, 256, 10.0
    net = SIREN(data_dim=d, out_channels=2, hidden_channels=H, num_layers=3, omega_0=omega_0)
    first, *hidden = net.hidden_layers
    assert len(hidden) == 2
    assert first.weight.abs().max() <= 1 / d
    assert first.weight.abs().max() > 0.9 / d
    bound = math.sqrt(6 / H) / omega_0
    for layer in [*hidden, net.output_layer]:
        assert layer.weight.abs().max() <= bound
        assert layer.weight.abs().max() > 0.9 * bound
    assert torch.equal(net.output_layer.bias, torch.zeros(2))


def test_siren_applies_sine_of_omega_0_times_each_layer() -> None:
    torch.manual_seed(0)
    net = SIREN(data_dim=1, out_channels=1, hidden_channels=4, num_layers=2, omega_0=5.0)
    x = grid(6)
    h = x[0].T  # (P, 1)
    for layer in net.hidden_layers:
        h = torch.sin(5.0 * layer(h))
    expected = net.output_layer(h).T.unsqueeze(0)
    torch.testing.assert_close(net(x), expected)


def test_fourier_net_weights_scale_with_omega_0_over_sqrt_layers() -> None:
    torch.manual_seed(0)
    d, L, omega_0 = 1, 3, 8.0
    net = FourierNet(data_dim=d, out_channels=1, hidden_channels=512, num_layers=L, omega_0=omega_0)
    bound = omega_0 / math.sqrt(L + 1) / math.sqrt(d)
    for filt in net.filters:
        assert filt.linear.weight.abs().max() <= bound
        assert filt.linear.weight.abs().max() > 0.9 * bound


def test_mlp_builds_named_norm_and_nonlinearity() -> None:
    net = MLP(data_dim=1, out_channels=2, hidden_channels=8, num_layers=2, norm="LayerNorm", nonlinearity="ReLU")
    kinds = [type(m).__name__ for m in net.hidden_layers]
    assert kinds == ["Linear", "LayerNorm", "ReLU", "Linear", "LayerNorm", "ReLU"]
    # With ReLU, every hidden activation is non-negative.
    h = net.hidden_layers(grid(9)[0].T)
    assert (h >= 0).all() and (h > 0).any()


# -------------------------------------------------------------------------------------------- gradients


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("MAGNet", {}),
        ("GaborNet", {}),
        ("FourierNet", {}),
        ("SIREN", {}),
        ("MLP", {}),
        ("MLP", {"norm": "LayerNorm", "nonlinearity": "SiLU"}),
    ],
)
def test_gradients_reach_every_parameter(name: str, extra: dict[str, str]) -> None:
    torch.manual_seed(0)
    net = build_kernel_net(name, data_dim=2, out_channels=3, hidden_channels=8, num_layers=2, **extra)
    out = net(grid(5, 4))
    (out**2).sum().backward()
    for pname, param in net.named_parameters():
        assert param.grad is not None, pname
        assert torch.isfinite(param.grad).all(), pname
        assert param.grad.abs().max() > 0, pname


# ------------------------------------------------------------------------------------------- arguments

BASE_ARGUMENTS = ("data_dim", "out_channels", "hidden_channels", "num_layers", "bias")


@pytest.mark.parametrize("cls", list(KERNEL_NETS.values()))
@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"data_dim": 4}, "data_dim"),
        ({"data_dim": 0}, "data_dim"),
        ({"data_dim": 1.0}, "data_dim"),
        ({"out_channels": 0}, "out_channels"),
        ({"hidden_channels": -1}, "hidden_channels"),
        ({"hidden_channels": 8.0}, "hidden_channels"),
        ({"num_layers": 0}, "num_layers"),
        ({"num_layers": True}, "num_layers"),
        ({"bias": "False"}, "bias"),
    ],
)
def test_bad_arguments_raise_invalid_argument_naming_them(cls: type[KernelNet], kwargs: dict, argument: str) -> None:
    args = {"data_dim": 2, "out_channels": 1, **kwargs}
    with pytest.raises(InvalidArgument) as info:
        cls(**args)
    assert info.value.argument == argument


# The arguments each kernel net reads besides those of KernelNet (item 3 of the signatures' contract).
OWN_ARGUMENTS = {
    MLP: {"norm", "nonlinearity"},
    SIREN: {"omega_0"},
    FourierNet: {"omega_0", "max_frequency"},
    MAGNet: {"omega_0", "max_frequency", "causal", "init_spatial_value", "alpha", "beta"},
    GaborNet: {"omega_0", "max_frequency", "causal", "init_spatial_value", "alpha", "beta"},
}


@pytest.mark.parametrize("name", sorted(KERNEL_NETS))
def test_a_kernel_net_accepts_the_base_arguments_and_only_those_it_reads(name: str) -> None:
    cls = KERNEL_NETS[name]
    assert set(accepted_arguments(cls)) == set(BASE_ARGUMENTS) | OWN_ARGUMENTS[cls]
    # The sinusoidal nets' own frequency scale starts at 10, the layers' former kernel_omega_0 default.
    if "omega_0" in accepted_arguments(cls):
        assert cls(data_dim=1, out_channels=1, hidden_channels=4, num_layers=1).omega_0 == 10.0


@pytest.mark.parametrize("name", sorted(KERNEL_NETS))
def test_build_kernel_net_refuses_an_argument_the_net_does_not_read_naming_it(name: str) -> None:
    refused = {"omega_0": 2.0, "causal": True, "init_spatial_value": 0.5, "norm": "LayerNorm", "foo": 1}
    for key, value in refused.items():
        if key in accepted_arguments(KERNEL_NETS[name]):
            continue
        with pytest.raises(InvalidArgument) as info:
            build_kernel_net(name, data_dim=1, out_channels=1, **{key: value})
        assert info.value.argument == key


@pytest.mark.parametrize("name", [name for name, cls in KERNEL_NETS.items() if "omega_0" in accepted_arguments(cls)])
@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), True, "10"])
def test_omega_0_must_be_a_positive_number(name: str, bad: object) -> None:
    with pytest.raises(InvalidArgument) as info:
        KERNEL_NETS[name](data_dim=1, out_channels=1, omega_0=bad)
    assert info.value.argument == "omega_0"


@pytest.mark.parametrize("cls", [MAGNet, GaborNet])
@pytest.mark.parametrize("argument", ["alpha", "beta", "init_spatial_value"])
@pytest.mark.parametrize("bad", [0.0, -2.0, float("inf"), True])
def test_bad_gamma_and_spatial_arguments_raise_naming_them(cls: type[KernelNet], argument: str, bad: object) -> None:
    with pytest.raises(InvalidArgument) as info:
        cls(data_dim=1, out_channels=1, **{argument: bad})
    assert info.value.argument == argument


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"norm": "NoSuchNorm"}, "norm"),
        ({"nonlinearity": "Sigmoidish"}, "nonlinearity"),
        ({"nonlinearity": "Linear"}, "nonlinearity"),
        ({"norm": "functional"}, "norm"),
    ],
)
def test_mlp_rejects_unknown_module_names(kwargs: dict[str, str], argument: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        MLP(data_dim=1, out_channels=1, **kwargs)
    assert info.value.argument == argument


@pytest.mark.parametrize("name", sorted(KERNEL_NETS))
@pytest.mark.parametrize("shape", [(1, 2, 5), (1, 3, 4, 4), (2, 4, 4), (1, 2, 4, 4, 4)])
def test_forward_rejects_positions_of_wrong_shape(name: str, shape: tuple[int, ...]) -> None:
    net = KERNEL_NETS[name](data_dim=2, out_channels=1, hidden_channels=4, num_layers=1)
    with pytest.raises(ValueError, match="positions"):
        net(torch.zeros(shape))


# -------------------------------------------------------------------------------------------- registry


def test_registry_names_each_kernel_net_by_its_class() -> None:
    assert KERNEL_NETS
    for name, cls in KERNEL_NETS.items():
        assert issubclass(cls, KernelNet) and cls.__name__ == name


# Values for every argument some kernel net reads beyond KernelNet's; each net is given those it accepts.
OPTIONAL_VALUES = {
    "omega_0": 7.0,
    "causal": True,
    "init_spatial_value": 0.5,
    "alpha": 5.0,
    "beta": 2.0,
    "max_frequency": 30.0,
    "norm": "LayerNorm",
    "nonlinearity": "SiLU",
}


@pytest.mark.parametrize("name", sorted(KERNEL_NETS))
def test_build_kernel_net_builds_every_entry_with_the_arguments_it_accepts(name: str) -> None:
    accepted = accepted_arguments(KERNEL_NETS[name])
    assert set(accepted) - set(BASE_ARGUMENTS) <= set(OPTIONAL_VALUES)
    own = {key: value for key, value in OPTIONAL_VALUES.items() if key in accepted}
    torch.manual_seed(0)
    net = build_kernel_net(name, data_dim=1, out_channels=4, hidden_channels=8, num_layers=2, bias=False, **own)
    torch.manual_seed(0)
    direct = KERNEL_NETS[name](data_dim=1, out_channels=4, hidden_channels=8, num_layers=2, bias=False, **own)
    assert type(net) is KERNEL_NETS[name]
    assert (net.out_channels, net.data_dim, net.hidden_channels, net.num_layers) == (4, 1, 8, 2)
    assert all(module.bias is None for module in net.modules() if isinstance(module, torch.nn.Linear))
    for key, value in own.items():
        if key != "max_frequency":  # stored per axis
            assert getattr(net, key) == value, key
    out = net(grid(11))
    assert out.shape == (1, 4, 11) and out.abs().sum() > 0
    assert torch.equal(out, direct(grid(11)))


def test_build_kernel_net_rejects_unknown_name_naming_it() -> None:
    with pytest.raises(InvalidArgument) as info:
        build_kernel_net("Gabbor", data_dim=1, out_channels=1)
    assert info.value.argument == "name" and "Gabbor" in str(info.value)
