"""Tests of the convolution layers in ckconv.conv (CKConv, FlexConv, separable variants, discrete baselines)."""

from __future__ import annotations

import dataclasses
import importlib
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch.func import functional_call

from ckconv import (
    CONV_TYPES,
    CKConv,
    Conv,
    FlexConv,
    InvalidArgument,
    PointwiseLinear,
    SeparableCKConv,
    SeparableConv,
    SeparableFlexConv,
)
from ckconv.conv import resampled_size, resolve_kernel_size
from ckconv.functional import anchor_index, cropped_size, kernel_positions
from ckconv.mask import GaussianMask

# `import ckconv.conv as m` would give the function ckconv.conv (re-exported from functional), not the module.
conv_module = importlib.import_module("ckconv.conv")
REPO = Path(__file__).resolve().parent.parent
SMALL_KERNEL = {"hidden_channels": 8, "num_layers": 2}


def build(cls, in_channels, out_channels, data_dim, spatial, *, seed=0, dtype=torch.float64, **kwargs):
    """A layer of ``cls`` for inputs of size ``spatial``: CK layers sample a 'same' kernel, Conv layers use 5 taps."""
    torch.manual_seed(seed)
    if issubclass(cls, Conv):
        kwargs.setdefault("kernel_size", 5)
    else:
        kwargs.setdefault("input_size", spatial)
        kwargs["kernel_options"] = {**SMALL_KERNEL, **kwargs.get("kernel_options", {})}
    return cls(in_channels, out_channels, data_dim, **kwargs).to(dtype)


def kernel_shape(layer, spatial) -> tuple[int, ...]:
    if isinstance(layer, Conv):
        return tuple(layer.weight.shape[2:])
    return tuple(layer.sample_kernel(spatial).shape[2:])


def randn(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ---------------------------------------------------------------------------------------------------------------
# Public API and registry
# ---------------------------------------------------------------------------------------------------------------
def test_public_api_exports_every_layer_and_the_registry_names_them():
    assert {
        "CKConv": CKConv,
        "SeparableCKConv": SeparableCKConv,
        "FlexConv": FlexConv,
        "SeparableFlexConv": SeparableFlexConv,
        "Conv": Conv,
        "SeparableConv": SeparableConv,
    } == CONV_TYPES


@pytest.mark.parametrize("data_dim", [1, 2, 3])
@pytest.mark.parametrize("name", sorted(CONV_TYPES))
def test_every_registered_conv_builds_and_runs_forward_and_backward(name, data_dim):
    spatial = (6, 5, 4)[:data_dim]
    layer = build(CONV_TYPES[name], 2, 3, data_dim, spatial, dtype=torch.float32)
    x = randn(2, 2, *spatial, dtype=torch.float32).requires_grad_(True)
    y = layer(x)
    assert y.shape == (2, 3, *spatial)
    assert torch.isfinite(y).all() and y.abs().sum() > 0
    (y * randn(*y.shape, seed=1, dtype=torch.float32)).sum().backward()
    assert x.grad.abs().sum() > 0
    for pname, p in layer.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("use_fft", [True, False])
@pytest.mark.parametrize("name", sorted(CONV_TYPES))
def test_an_empty_batch_or_grid_gives_an_empty_output_and_integers_are_refused_on_both_paths(name, use_fft):
    # The FFT could not plan an empty batch and the separable mixer could not reshape it, while an empty grid failed
    # on the direct path only; an integer input was converted by the FFT path and refused by the direct one.
    layer = build(CONV_TYPES[name], 2, 3, 1, (12,), dtype=torch.float32, use_fft=use_fft)
    assert layer(torch.randn(0, 2, 12)).shape == (0, 3, 12)
    assert layer(torch.randn(2, 2, 0)).shape == (2, 3, 0)
    with pytest.raises(ValueError, match=rf"^{name} expects a floating-point input, got torch.int64\.$"):
        layer(torch.ones(1, 2, 12, dtype=torch.int64))


@pytest.mark.parametrize("name", sorted(CONV_TYPES))
def test_layer_matches_the_functional_convolution_of_its_kernel(name):
    spatial = (12,)
    layer = build(CONV_TYPES[name], 2, 3, 1, spatial)
    with torch.no_grad():  # biases start at zero: make them count (the separable layers fold theirs into the mixer's)
        for module in (layer, getattr(layer, "channel_mixer", None)):
            if module is not None and module.bias is not None:
                module.bias.normal_()
    x = randn(2, 2, 12)
    kernel = layer.weight if isinstance(layer, Conv) else layer.sample_kernel(spatial)
    separable = layer.separable
    expected = torch.nn.functional.conv1d(
        torch.nn.functional.pad(x, _same_pads(kernel.shape[-1])), kernel, layer.bias, groups=2 if separable else 1
    )
    if separable:
        expected = torch.einsum("oi,bit->bot", layer.channel_mixer.weight, expected) + layer.channel_mixer.bias.view(
            1, -1, 1
        )
    assert torch.allclose(layer(x), expected, atol=1e-12)


def _same_pads(k: int) -> list[int]:
    c = anchor_index(k, causal=False)
    return [c, k - 1 - c]


# ---------------------------------------------------------------------------------------------------------------
# Causality and translation equivariance
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("use_fft", [False, True])
@pytest.mark.parametrize("cls", [CKConv, FlexConv, SeparableFlexConv, Conv])
def test_causal_layer_output_at_t_ignores_inputs_after_t(cls, use_fft):
    n = 24
    layer = build(cls, 2, 3, 1, (n,), causal=True, use_fft=use_fft)
    x = randn(2, 2, n)
    y = layer(x)
    for t in (0, 5, 17, n - 2):
        x2 = x.clone()
        x2[..., t + 1 :] = randn(2, 2, n - t - 1, seed=t + 10) * 100
        y2 = layer(x2)
        if use_fft:
            # The FFT mixes all positions in floating point: later inputs change y[:t+1] by rounding only.
            assert torch.allclose(y2[..., : t + 1], y[..., : t + 1], rtol=0, atol=1e-10)
        else:
            assert torch.equal(y2[..., : t + 1], y[..., : t + 1])
        assert not torch.allclose(y2[..., t + 1 :], y[..., t + 1 :])


def _shift(x: torch.Tensor, shifts: tuple[int, ...]) -> torch.Tensor:
    """Shift the spatial dimensions right by ``shifts``, zero-filling (no wrap)."""
    out = torch.zeros_like(x)
    src = tuple(slice(0, n - s) for n, s in zip(x.shape[2:], shifts))
    dst = tuple(slice(s, n) for n, s in zip(x.shape[2:], shifts))
    out[(..., *dst)] = x[(..., *src)]
    return out


@pytest.mark.parametrize(("spatial", "shifts"), [((40,), (3,)), ((21, 19), (2, 3))])
@pytest.mark.parametrize("cls", [CKConv, FlexConv, SeparableFlexConv, Conv])
def test_centred_layer_is_translation_equivariant_away_from_borders(cls, spatial, shifts):
    kwargs = {"kernel_size": 7} if cls is CKConv else {}
    layer = build(cls, 2, 2, len(spatial), spatial, **kwargs)
    x = randn(1, 2, *spatial)
    y, y_shifted = layer(x), layer(_shift(x, shifts))
    # y_shifted[t] reads the shifted input at t + j - c; it equals y[t - s] where all those reads fall on shifted
    # content (t - c >= s) inside the input (t + k - 1 - c < n).
    ks = kernel_shape(layer, spatial)
    out_region, ref_region = [], []
    for n, s, k in zip(spatial, shifts, ks):
        c = anchor_index(k, causal=False)
        lo, hi = s + c, n - (k - 1 - c)
        assert hi - lo >= 5
        out_region.append(slice(lo, hi))
        ref_region.append(slice(lo - s, hi - s))
    assert torch.allclose(y_shifted[(..., *out_region)], y[(..., *ref_region)], rtol=0, atol=1e-10)
    assert not torch.allclose(y_shifted, y)


# ---------------------------------------------------------------------------------------------------------------
# Gradients
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("data_dim", [1, 2, 3])
@pytest.mark.parametrize("cls", [FlexConv, SeparableFlexConv])
def test_gradients_reach_every_kernel_net_parameter_and_the_mask_width(cls, data_dim):
    spatial = (9, 7, 5)[:data_dim]
    layer = build(cls, 2, 3, data_dim, spatial, mask_options={"init_value": 0.3})
    y = layer(randn(2, 2, *spatial))
    (y * randn(*y.shape, seed=1)).sum().backward()
    for name, p in layer.kernel_net.named_parameters():
        assert p.grad is not None and (p.grad != 0).any(), name
    assert (layer.mask.width.grad != 0).all()


@pytest.mark.slow
def test_gradcheck_of_separable_flexconv_wrt_input_and_mask_width():
    layer = build(
        SeparableFlexConv, 2, 2, 1, (8,), mask_options={"init_value": 0.3}, kernel_options={"hidden_channels": 4}
    )
    x = randn(1, 2, 8).requires_grad_(True)
    assert torch.autograd.gradcheck(layer, (x,))
    x = x.detach()
    width = layer.mask.width.detach().clone().requires_grad_(True)
    assert layer.mask.cropped_kernel_size((8,)) == (4,)  # the crop must not jump within gradcheck's eps

    def output_of_width(w: torch.Tensor) -> torch.Tensor:
        return functional_call(layer, {"mask.width": w}, (x,))

    assert torch.autograd.gradcheck(output_of_width, (width,))


# ---------------------------------------------------------------------------------------------------------------
# Initialisation and checkpoints
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(CONV_TYPES))
def test_load_state_dict_gives_bit_identical_outputs(name):
    cls = CONV_TYPES[name]
    a = build(cls, 2, 3, 1, (16,), seed=0, dtype=torch.float32)
    b = build(cls, 2, 3, 1, (16,), seed=1, dtype=torch.float32)
    x = randn(2, 2, 16, dtype=torch.float32)
    assert not torch.equal(a(x), b(x))
    b.load_state_dict(a.state_dict())
    assert torch.equal(a(x), b(x))
    b.eval()
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


@pytest.mark.slow
def test_state_dict_reloads_bit_identically_in_another_process(tmp_path):
    path = tmp_path / "layer.pt"
    code = textwrap.dedent(
        f"""
        import torch
        from ckconv import SeparableFlexConv
        torch.manual_seed(0)
        layer = SeparableFlexConv(2, 3, 1, input_size=64, causal=True, kernel_options={{"hidden_channels": 8}})
        x = torch.linspace(-1, 1, 2 * 2 * 64).reshape(2, 2, 64)
        torch.save({{"state": layer.state_dict(), "x": x, "y": layer(x).detach()}}, {str(path)!r})
        """
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)
    saved = torch.load(path)
    torch.manual_seed(1)
    layer = SeparableFlexConv(2, 3, 1, input_size=64, causal=True, kernel_options={"hidden_channels": 8})
    assert not torch.equal(layer(saved["x"]), saved["y"])
    layer.load_state_dict(saved["state"])
    assert torch.equal(layer(saved["x"]), saved["y"])


@pytest.mark.parametrize(
    ("cls", "kwargs", "fan_in"),
    [
        (SeparableFlexConv, {"data_dim": 1, "input_size": 784, "causal": True}, 65),
        (FlexConv, {"data_dim": 2, "input_size": 33}, 25 * 3),
        (CKConv, {"data_dim": 1, "kernel_size": 9}, 9 * 3),
        (SeparableCKConv, {"data_dim": 2, "kernel_size": (3, 4)}, 12),
    ],
)
def test_chang_init_scales_the_output_layer_once_by_sqrt_of_inverse_cropped_fan_in(cls, kwargs, fan_in):
    layers = {}
    for chang in (False, True):
        torch.manual_seed(0)
        layers[chang] = cls(3, 2, chang_initialize=chang, kernel_options={"hidden_channels": 8}, **kwargs)
    w_plain = layers[False].kernel_net.output_layer.weight
    w_chang = layers[True].kernel_net.output_layer.weight
    assert torch.equal(w_chang, w_plain * math.sqrt(1.0 / fan_in))
    # Nothing else differs, and neither forward nor reload repeats the scaling.
    for (name, p), q in zip(layers[False].state_dict().items(), layers[True].state_dict().values()):
        assert name == "kernel_net.output_layer.weight" or torch.equal(p, q), name
    spatial = (16,) * kwargs["data_dim"]
    layers[True](randn(1, 3, *spatial, dtype=torch.float32))
    assert torch.equal(layers[True].kernel_net.output_layer.weight, w_chang)
    torch.manual_seed(5)
    fresh = cls(3, 2, chang_initialize=True, kernel_options={"hidden_channels": 8}, **kwargs)
    fresh.load_state_dict(layers[True].state_dict())
    fresh(randn(1, 3, *spatial, dtype=torch.float32))
    assert torch.equal(fresh.kernel_net.output_layer.weight, w_chang)


CONTINUOUS = sorted(name for name, cls in CONV_TYPES.items() if cls.continuous)


@pytest.mark.parametrize("scale", [0.25, 4.0])
@pytest.mark.parametrize("name", CONTINUOUS)
def test_kernel_init_scale_scales_the_initial_kernel_exactly(name, scale):
    # A power of two scales without rounding, and every kernel net's output bias starts at 0: the sampled kernel is
    # exactly `scale` times that of the same layer built with kernel_init_scale=1 under the same seed.
    plain = build(CONV_TYPES[name], 2, 3, 1, (20,))
    scaled = build(CONV_TYPES[name], 2, 3, 1, (20,), kernel_init_scale=scale)
    reference = plain.sample_kernel((20,))
    assert reference.abs().sum() > 0
    assert torch.equal(scaled.sample_kernel((20,)), scale * reference)
    for (key, p), q in zip(plain.state_dict().items(), scaled.state_dict().values()):
        expected = scale * p if key == "kernel_net.output_layer.weight" else p
        assert torch.equal(q, expected), key


def test_flexconv_starts_the_gabor_centres_within_its_mask_unless_kernel_options_say_otherwise():
    layer = build(FlexConv, 1, 1, 1, (16,), mask_options={"init_value": 0.3})
    assert layer.kernel_net.init_spatial_value == pytest.approx(conv_module.MASK_TO_SPATIAL_INIT * 0.3, rel=1e-15)
    given = build(
        FlexConv, 1, 1, 1, (16,), mask_options={"init_value": 0.3}, kernel_options={"init_spatial_value": 2.0}
    )
    assert given.kernel_net.init_spatial_value == 2.0
    assert build(CKConv, 1, 1, 1, (16,)).kernel_net.init_spatial_value == 1.0  # no mask: the net's default
    # A kernel net without Gabor centres is not passed one.
    siren = build(FlexConv, 1, 1, 1, (16,), kernel_type="SIREN")
    assert not hasattr(siren.kernel_net, "init_spatial_value")
    assert siren.sample_kernel((16,)).abs().sum() > 0


# The only attributes a forward pass may write: the caches named under "State outside parameters" in the ckconv
# package docstring.
ALLOWED_CACHES = {(GaussianMask, "host_copy")}


def snapshot(value):
    """A comparable picture of an attribute's value: tensors by identity, version counter, dtype, shape and bytes;
    containers and dataclasses element by element; other objects by identity."""
    if isinstance(value, torch.Tensor):
        data = value.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
        return ("tensor", id(value), value._version, value.dtype, tuple(value.shape), bytes(data.numpy()))
    if isinstance(value, dict):
        return ("dict", tuple((key, snapshot(item)) for key, item in value.items()))
    if isinstance(value, list | tuple):
        return (type(value).__name__, tuple(snapshot(item) for item in value))
    if dataclasses.is_dataclass(value):
        return (type(value).__name__, tuple(snapshot(getattr(value, f.name)) for f in dataclasses.fields(value)))
    if value is None or isinstance(value, bool | int | float | str | torch.dtype):
        return value
    return ("object", type(value).__name__, id(value))


def module_state(model: torch.nn.Module) -> dict[tuple[str, type, str], object]:
    """Every attribute of every submodule, parameters and buffers included (children are visited themselves)."""
    return {
        (name, type(module), attribute): snapshot(value)
        for name, module in model.named_modules()
        for attribute, value in vars(module).items()
        if attribute != "_modules"
    }


def written_attributes(before: dict, after: dict) -> set[tuple[type, str]]:
    """(module class, attribute) of every attribute whose snapshot differs between ``before`` and ``after``."""
    changed = {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}
    return {(cls, attribute) for _, cls, attribute in changed}


def test_snapshot_sees_attributes_outside_the_state_dict():
    layer = build(SeparableFlexConv, 2, 3, 1, (20,), causal=True)
    before = module_state(layer)
    layer.note = "written"  # an attribute state_dict() does not see
    with torch.no_grad():
        layer.kernel_net.output_layer.bias.add_(0.0)  # an in-place write that leaves the values unchanged
    assert written_attributes(before, module_state(layer)) == {
        (SeparableFlexConv, "note"),
        (torch.nn.Linear, "_parameters"),
    }


@pytest.mark.parametrize("name", sorted(CONV_TYPES))
@pytest.mark.parametrize(("data_dim", "causal"), [(1, True), (2, False)])
def test_forward_writes_no_state(name, data_dim, causal):
    size = (20,) if data_dim == 1 else (9, 10)
    layer = build(CONV_TYPES[name], 2, 3, data_dim, size, causal=causal)
    x, other = randn(2, 2, *size), randn(2, 2, *(2 * n for n in size))
    layer(x)  # the first pass fills the mask's host copy; the passes below must write nothing else
    before = module_state(layer)
    layer(x).sum().backward()  # training mode, at the training size and at another one
    layer(other)
    layer.eval()
    with torch.no_grad():  # evaluation, twice at each size
        layer(x), layer(x), layer(other), layer(other)
    layer.train()
    layer.zero_grad(set_to_none=True)  # the backward's gradients are the optimizer's state, not the forward's
    assert written_attributes(before, module_state(layer)) <= ALLOWED_CACHES


def test_a_stack_of_layers_writes_no_state_but_the_named_caches():
    torch.manual_seed(0)
    stack = torch.nn.Sequential(
        SeparableFlexConv(1, 4, 1, input_size=24, kernel_options=SMALL_KERNEL),
        torch.nn.BatchNorm1d(4),
        FlexConv(4, 2, 1, input_size=24, kernel_options=SMALL_KERNEL),
    ).eval()
    with torch.no_grad():
        stack[0].mask.width.mul_(1.5)  # as an optimizer step would: the first forward renews this mask's host copy
    before = module_state(stack)
    with torch.no_grad():
        stack(randn(2, 1, 24, dtype=torch.float32))
    stack(randn(2, 1, 48, dtype=torch.float32))
    written = written_attributes(before, module_state(stack))
    assert written == ALLOWED_CACHES  # the snapshot sees the host copy being renewed, and nothing else changes


# ---------------------------------------------------------------------------------------------------------------
# Dynamic cropping inside the layers
# ---------------------------------------------------------------------------------------------------------------
def test_flexconv_crops_784_causal_taps_to_65_at_init():
    layer = build(SeparableFlexConv, 1, 1, 1, (784,), causal=True, dtype=torch.float32)
    assert layer.sample_kernel((784,)).shape == (1, 1, 65)
    assert layer(torch.randn(1, 1, 784)).shape == (1, 1, 784)


def test_flexconv_crops_33x33_centred_taps_to_5x5_at_init():
    layer = build(FlexConv, 3, 2, 2, (33, 33), dtype=torch.float32)
    assert layer.sample_kernel((33, 33)).shape == (2, 3, 5, 5)


@pytest.mark.parametrize(("kernel_size", "causal"), [(33, False), (32, False), (100, True)])
def test_sampled_kernel_follows_the_mask_width(kernel_size, causal):
    layer = build(FlexConv, 1, 1, 1, (kernel_size,), causal=causal)
    mean = 1.0 if causal else 0.0
    sizes = []
    for width in (0.075, 0.2, 0.5):
        with torch.no_grad():
            layer.mask.width.fill_(width)
        k = layer.sample_kernel((kernel_size,)).shape[-1]
        assert k == cropped_size(kernel_size, mean, width, 0.1, causal)
        sizes.append(k)
    assert sizes[0] < sizes[1] < sizes[2]


def test_cropped_kernel_equals_the_full_masked_kernel_on_the_kept_taps():
    n = 33
    cropped = build(FlexConv, 1, 1, 1, (n,))
    full = build(FlexConv, 1, 1, 1, (n,), mask_options={"dynamic_cropping": False})
    k_crop = cropped.sample_kernel((n,))[0, 0]
    k_full = full.sample_kernel((n,))[0, 0]
    c = k_crop.shape[-1]
    start = (n - c) // 2
    # Chang init differs (fan-in 5 vs 33, applied in float32 before .double()), so compare up to that factor.
    assert torch.allclose(k_crop * math.sqrt(c / n), k_full[start : start + c], rtol=1e-6, atol=0)
    assert k_full[:start].abs().max() < 0.1 * k_full.abs().max()


# ---------------------------------------------------------------------------------------------------------------
# Resolution: kernels resampled on a finer grid of the same extent
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("causal", [True, False])
def test_a_one_tap_flexconv_samples_its_kernel_net_at_the_masks_centre(causal):
    # A causal one-tap kernel sat at position 0, one unit from its mask's centre (+1): a kernel of about 0.
    layer = build(FlexConv, 1, 1, 1, (10,), kernel_size=1, causal=causal, bias=False)
    centre = torch.full((1, 1, 1), 1.0 if causal else 0.0, dtype=torch.float64)
    expected = layer.kernel_net(centre)  # times the mask there, 1
    assert not causal or expected.abs().item() > 1e-3  # (MAGNet's initial output at 0 is 0)
    assert torch.equal(layer.sample_kernel((10,)), expected.reshape(1, 1, 1))
    x = randn(2, 1, 10)
    assert torch.allclose(layer(x), x * expected.item(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("cls", [CKConv, FlexConv])
def test_a_kernel_resampled_to_one_tap_carries_its_sum_over_the_training_grid(cls, causal):
    # Its extent is under one sample spacing of the new grid. The rescaling by (k - 1) / (s - 1) has no spacing at
    # s = 1 and was skipped, so the tap held the kernel's value at one position: off by about a factor k.
    layer = build(cls, 2, 3, 1, (64,), kernel_size=33, causal=causal)
    length = 1 if causal else 2  # 16 steps * 2/64 = 0.5 -> 0 each side; causal: 32 steps * 1/64 -> 0
    assert layer.kernel_size_for((length,)) == (1,)
    kernel_sum = layer.sample_kernel((64,)).sum(-1)  # (3, 2): the training kernel over its 33 (or cropped) taps
    x = randn(4, 2, length)
    expected = torch.einsum("oi,bit->bot", kernel_sum, x) + layer.bias.view(1, 3, 1)
    assert torch.allclose(layer(x), expected, rtol=1e-12, atol=1e-12)


def test_a_kernel_collapsed_along_one_axis_is_summed_there_and_kept_along_the_other():
    # Resampled along an axis it is not collapsed on, the kernel follows tests/test_kernel_resampling.py.
    layer = build(FlexConv, 1, 1, 2, (32, 32), kernel_size=9, bias=False, mask_options={"init_value": 0.3})
    assert layer.kernel_size_for((2, 32)) == (1, 9)  # 4 steps * 2/32 -> 0 along the first axis; the training size
    assert layer.mask.cropped_kernel_size((9, 9)) == (5, 5)  # a crop of several taps along both axes
    training = layer.sample_kernel((32, 32))
    assert torch.equal(layer.sample_kernel((2, 32)), training.sum(2, keepdim=True))


def test_resolve_kernel_size_and_resampled_size_values():
    assert resolve_kernel_size("same", 65, 1) == (65,)
    assert resolve_kernel_size("full", (8, 5), 2) == (15, 9)
    assert resolve_kernel_size((3, 4), None, 2) == (3, 4)
    assert resolve_kernel_size(7, None, 3) == (7, 7, 7)
    assert resampled_size(65, 65, 65, False) == 65
    assert resampled_size(65, 65, 130, False) == 129  # middle tap kept at 0
    assert resampled_size(64, 64, 128, True) == 127  # 63 steps become 126
    assert resampled_size(64, 64, 128, False) == 127
    assert resampled_size(31, 32, 64, False) == 61
    assert resampled_size(33, 33, 17, False) == 17  # 16 steps * 17/33 = 8.2 -> 8 steps each side
    assert resampled_size(1, 10, 20, False) == 1
    # Samples from end to end (linspace): the step changes by (n - 1) / (n_train - 1), and a kernel as large as the
    # input ("same") stays as large as it at every size; by the cells' rule it would be 21, 9, 79 taps.
    assert resampled_size(40, 40, 20, False, "ends") == 20
    assert resampled_size(16, 16, 8, False, "ends") == 8
    assert resampled_size(40, 40, 80, False, "ends") == 80
    assert resampled_size(33, 33, 17, False, "ends") == 17  # 16 steps * 16/32 = 8 steps each side
    assert (resampled_size(40, 40, 20, False), resampled_size(16, 16, 8, False)) == (21, 9)


def test_a_dataset_sampled_from_end_to_end_gives_its_network_kernels_that_keep_its_step(tmp_path):
    from datamodules.mnist1d import MNIST1DDataModule
    from models.ccnn import CCNN

    meta = MNIST1DDataModule(data_dir=tmp_path).meta
    assert meta.grid == "ends"
    net = CCNN(meta.in_channels, meta.num_classes, meta.data_dim, meta.size, input_grid=meta.grid, num_blocks=1)
    layers = [m for m in net.modules() if isinstance(m, CKConv)]
    assert layers and all(layer.input_grid == "ends" for layer in layers)
    assert [layer.kernel_size_for((20,)) for layer in layers] == [(20,)] * len(layers)  # as many taps as samples


def _smooth_signal(n: int) -> torch.Tensor:
    u = torch.arange(n, dtype=torch.float64) / n
    return (torch.exp(-(((u - 0.5) / 0.15) ** 2)) * torch.cos(2 * math.pi * 3 * u)).view(1, 1, n)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("cls", [CKConv, FlexConv])
def test_kernel_at_twice_the_resolution_approximates_the_same_continuous_convolution(cls, causal):
    n = 65
    mask = (
        {"mask_options": {"init_value": 0.2}} if cls is FlexConv else {}
    )  # a wider window: more taps, smaller quadrature error
    layer = build(cls, 1, 1, 1, (n,), causal=causal, kernel_options={"omega_0": 1.0}, **mask)
    assert layer.kernel_size_for((2 * n,)) == (resampled_size(n, n, 2 * n, causal),)
    y_n = layer(_smooth_signal(n))
    y_2n = layer(_smooth_signal(2 * n))
    # Both outputs are Riemann sums of the same integral (kernel step h at n, h/2 with weights halved at 2n), so they
    # agree only up to the quadrature error of a kernel sampled with a few taps per oscillation and of the mask's
    # cut-off: a few percent here. Without the resampling (same taps at 2n) or the 1/2 rescaling they differ by O(1).
    err = (y_2n[..., ::2] - y_n).abs().max() / y_n.abs().max()
    assert err < 0.1


def test_resampled_kernel_interleaves_the_training_kernel_on_a_finer_grid():
    n = 33
    layer = build(CKConv, 2, 2, 1, (n,))
    k_n = layer.sample_kernel((n,))
    k_2n = layer.sample_kernel((2 * n,))
    assert k_2n.shape[-1] == 65
    # Every other tap of the finer grid is a tap of the training grid; values are scaled by the step ratio 1/2.
    assert torch.allclose(2 * k_2n[..., ::2], k_n, rtol=1e-9, atol=1e-12)


def test_kernel_at_the_training_size_is_the_masked_kernel_net_output_exactly():
    n = 33
    layer = build(FlexConv, 2, 3, 1, (n,))
    c = layer.mask.cropped_kernel_size((n,))[0]
    positions = kernel_positions((n,), dtype=torch.float64)[..., (n - c) // 2 : (n - c) // 2 + c]
    expected = (layer.kernel_net(positions) * layer.mask(positions)).reshape(3, 2, c)
    assert torch.equal(layer.sample_kernel((n,)), expected)


# ---------------------------------------------------------------------------------------------------------------
# Kernels are sampled at every forward pass (no cache)
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture
def captured_kernels(monkeypatch):
    kernels = []
    real_conv = conv_module.conv

    def recording_conv(x, weight, *args, **kwargs):
        kernels.append(weight)
        return real_conv(x, weight, *args, **kwargs)

    monkeypatch.setattr(conv_module, "conv", recording_conv)
    return kernels


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_every_forward_samples_its_kernel_anew(captured_kernels, mode):
    layer = build(SeparableFlexConv, 2, 3, 1, (20,))
    layer.train(mode == "train")
    x = randn(2, 2, 20)
    with torch.set_grad_enabled(mode == "train"):
        y1, y2 = layer(x), layer(x)
    assert captured_kernels[0] is not captured_kernels[1]
    assert torch.equal(captured_kernels[0], captured_kernels[1]) and torch.equal(y1, y2)


def test_a_write_through_param_data_changes_the_next_output():
    # Writes through `.data` bump no version counter; with kernels sampled at every call none can go stale.
    layer = build(SeparableFlexConv, 1, 1, 1, (20,)).eval()
    x = randn(1, 1, 20)
    with torch.no_grad():
        y_before = layer(x)
        layer.kernel_net.output_layer.weight.data.mul_(2.0)
        assert not torch.equal(layer(x), y_before)


def test_functional_call_with_fresh_parameters_gives_their_outputs():
    layer = build(SeparableFlexConv, 1, 1, 1, (20,)).eval()
    reference = build(SeparableFlexConv, 1, 1, 1, (20,)).eval()
    x = randn(1, 1, 20)
    with torch.no_grad():
        for width in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6):
            got = functional_call(layer, {"mask.width": torch.tensor([width], dtype=torch.float64)}, (x,))
            reference.mask.width.fill_(width)
            assert torch.equal(got, reference(x)), width


# ---------------------------------------------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------------------------------------------
def refused_argument(call, *args, **kwargs) -> str:
    """The argument that ``call(*args, **kwargs)`` names in the InvalidArgument it raises."""
    with pytest.raises(InvalidArgument) as info:
        call(*args, **kwargs)
    return info.value.argument


@pytest.mark.parametrize("cls", [CKConv, FlexConv, SeparableFlexConv, Conv])
def test_layers_refuse_bad_constructor_arguments_naming_them(cls):
    ck = not issubclass(cls, Conv)
    base = {"input_size": 16} if ck else {}
    assert refused_argument(cls, 1, 1, 4, **base) == "data_dim"
    assert refused_argument(cls, 1, 1, 2, causal=True, **base) == "causal"
    assert refused_argument(cls, 1, 1, 1, use_fft="yes", **base) == "use_fft"
    assert refused_argument(cls, 0, 1, 1, **base) == "in_channels"
    assert refused_argument(cls, 1, -2, 1, **base) == "out_channels"
    for bad in (0, -3, (3, 0), 2.5, True):
        assert refused_argument(cls, 1, 1, 2, kernel_size=bad) == "kernel_size", bad
    if ck:
        for bad in (0, -5):
            assert refused_argument(cls, 1, 1, 1, kernel_size=3, input_size=bad) == "input_size"
        assert refused_argument(cls, 1, 1, 1, kernel_size="same") == "input_size"  # "same" needs the input size
        assert refused_argument(cls, 1, 1, 1, kernel_size="large", input_size=16) == "kernel_size"
        assert refused_argument(cls, 1, 1, 1, kernel_type="Nope", input_size=16) == "kernel_type"
        for bad in (0.0, -1.0, float("inf")):
            assert refused_argument(cls, 1, 1, 1, kernel_init_scale=bad, input_size=16) == "kernel_init_scale"


@pytest.mark.parametrize("cls", [CKConv, FlexConv])
def test_kernel_options_errors_are_named_by_the_prefix(cls):
    def refused(kernel_options, **kwargs):
        return refused_argument(cls, 1, 1, 1, input_size=8, kernel_options=kernel_options, **kwargs)

    assert refused({"omega_0": 0.0}) == "kernel_options.omega_0"  # the net's own rule
    assert refused({"hidden_channels": 0}) == "kernel_options.hidden_channels"
    assert refused({"alpha": -1.0}) == "kernel_options.alpha"
    assert refused({"foo": 1}) == "kernel_options.foo"  # no argument of the net
    assert refused({"omega_0": 1.0}, kernel_type="MLP") == "kernel_options.omega_0"  # MLP takes no omega_0
    assert refused("alpha") == "kernel_options"
    for key in ("data_dim", "out_channels", "causal", "max_frequency"):  # set by the layer
        assert refused({key: 1}) == f"kernel_options.{key}"


def test_flexconv_refuses_bad_mask_options_named_by_the_prefix():
    def refused(mask_options):
        return refused_argument(FlexConv, 1, 1, 1, input_size=8, mask_options=mask_options)

    assert refused({"init_value": -0.1}) == "mask_options.init_value"
    for threshold in (0.0, 1.0):  # (0, 1), with or without dynamic cropping
        assert refused({"threshold": threshold}) == "mask_options.threshold"
        assert refused({"threshold": threshold, "dynamic_cropping": False}) == "mask_options.threshold"
    assert refused({"learn_mean": "yes"}) == "mask_options.learn_mean"
    assert refused({"width": 0.2}) == "mask_options.width"  # no argument of GaussianMask
    for key in ("data_dim", "causal", "max_frequency"):  # set by the layer
        assert refused({key: 1}) == f"mask_options.{key}"
    assert refused([0.2]) == "mask_options"


@pytest.mark.parametrize("name", sorted(CONV_TYPES))
def test_forward_rejects_inputs_with_wrong_channels_or_dimensions(name):
    layer = build(CONV_TYPES[name], 3, 2, 2, (8, 8), dtype=torch.float32)
    with pytest.raises(ValueError, match=r"expects input of shape \(B, 3, n, n\).*got \(1, 2, 8, 8\)"):
        layer(torch.zeros(1, 2, 8, 8))
    with pytest.raises(ValueError, match=r"in_channels=3, data_dim=2.*got \(1, 3, 8\)"):
        layer(torch.zeros(1, 3, 8))


# ---------------------------------------------------------------------------------------------------------------
# PointwiseLinear
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spatial", [(), (5,), (4, 3), (2, 3, 2)])
def test_pointwise_linear_mixes_channels_at_every_position(spatial):
    torch.manual_seed(0)
    layer = PointwiseLinear(3, 4, init="kaiming_uniform").double()
    x = randn(2, 3, *spatial)
    expected = torch.einsum("oi,bi...->bo...", layer.weight, x) + layer.bias.view(1, 4, *([1] * len(spatial)))
    assert torch.allclose(layer(x), expected, atol=1e-12)


@pytest.mark.parametrize("spatial", [(7,), (4, 3)])
def test_pointwise_linear_folds_an_input_offset_into_its_bias_exactly(spatial):
    torch.manual_seed(0)
    layer = PointwiseLinear(3, 4, init="kaiming_uniform").double()
    x = randn(2, 3, *spatial).requires_grad_()
    offset = randn(3).requires_grad_()
    ones = [1] * len(spatial)
    shifted = x + offset.view(1, 3, *ones)
    expected = torch.einsum("oi,bi...->bo...", layer.weight, shifted) + layer.bias.view(1, 4, *ones)
    out = layer(x, input_offset=offset)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    cotangent = torch.randn_like(out)
    inputs = [x, layer.weight, layer.bias, offset]
    for got, want in zip(torch.autograd.grad(out, inputs, cotangent), torch.autograd.grad(expected, inputs, cotangent)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_pointwise_linear_gives_a_cropped_strided_window_the_result_of_its_contiguous_copy():
    torch.manual_seed(0)
    layer = PointwiseLinear(3, 4).double()
    padded = randn(2, 3, 12)
    window = padded[..., 2:9]  # strided view, as the FFT convolution returns
    torch.testing.assert_close(layer(window), layer(window.contiguous()), rtol=0, atol=0)


def test_pointwise_linear_rejects_a_misshapen_offset():
    with pytest.raises(ValueError, match=r"input_offset must be \(3,\), got \(1, 3\)"):
        PointwiseLinear(3, 4)(torch.zeros(2, 3, 5), input_offset=torch.ones(1, 3))


def test_pointwise_linear_default_init_is_kaiming_normal_with_zero_bias():
    torch.manual_seed(0)
    layer = PointwiseLinear(400, 300)
    assert torch.equal(layer.bias, torch.zeros(300))
    assert layer.weight.std().item() == pytest.approx(math.sqrt(2 / 400), rel=0.02)
    assert refused_argument(PointwiseLinear, 2, 2, init="xavier") == "init"
    with pytest.raises(ValueError, match=r"expected input \(B, 2, \.\.\.\)"):
        PointwiseLinear(2, 2)(torch.zeros(1, 3, 4))
