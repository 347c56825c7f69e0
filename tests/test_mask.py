"""Tests of FlexConv's Gaussian mask (ckconv.mask, ckconv.functional.gaussian_mask) and its cropping rule."""

from __future__ import annotations

import math

import pytest
import torch

from argcheck import InvalidArgument
from ckconv.functional import (
    MASK_EPS,
    anchor_index,
    crop_slices,
    cropped_size,
    direct_conv,
    gaussian_mask,
    kernel_positions,
)
from ckconv.mask import GaussianMask


# ---------------------------------------------------------------------------------------------------------------
# The mask's values and gradient
# ---------------------------------------------------------------------------------------------------------------
def test_gaussian_mask_equals_the_formula_on_the_grid():
    pos = kernel_positions((7, 5), dtype=torch.float64)
    mean = torch.tensor([0.2, -0.1], dtype=torch.float64)
    width = torch.tensor([0.3, 0.5], dtype=torch.float64)
    mask = gaussian_mask(pos, mean, width)
    assert mask.shape == (1, 1, 7, 5)
    for i, xi in enumerate(torch.linspace(-1, 1, 7, dtype=torch.float64).tolist()):
        for j, yj in enumerate(torch.linspace(-1, 1, 5, dtype=torch.float64).tolist()):
            z = (xi - 0.2) ** 2 / (0.3**2 + 1e-8) + (yj + 0.1) ** 2 / (0.5**2 + 1e-8)
            assert mask[0, 0, i, j].item() == pytest.approx(math.exp(-0.5 * z), rel=1e-12)


def test_gaussian_mask_module_uses_the_anchor_as_mean():
    pos = kernel_positions((9,), dtype=torch.float64)
    causal = GaussianMask(1, init_value=0.4, causal=True)
    centred = GaussianMask(1, init_value=0.4)
    assert causal.mean.tolist() == [1.0]
    assert centred.mean.tolist() == [0.0]
    grid = pos[0, 0]
    assert torch.allclose(causal(pos)[0, 0], torch.exp(-0.5 * (grid - 1) ** 2 / (0.4**2 + MASK_EPS)), rtol=1e-6)
    assert torch.allclose(centred(pos)[0, 0], torch.exp(-0.5 * grid**2 / (0.4**2 + MASK_EPS)), rtol=1e-6)
    assert causal(pos)[0, 0, -1] == 1.0
    assert centred(pos)[0, 0, 4] == 1.0


def test_gaussian_mask_gradient_wrt_width_is_finite_at_zero_width():
    pos = kernel_positions((11,), dtype=torch.float64)
    width = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    mask = gaussian_mask(pos, torch.tensor([0.05], dtype=torch.float64), width)
    mask.sum().backward()
    assert torch.isfinite(mask).all()
    assert torch.isfinite(width.grad).all()


def test_gaussian_mask_gradient_wrt_width_matches_the_analytic_derivative():
    pos = kernel_positions((9,), dtype=torch.float64)
    width = torch.tensor([0.3], dtype=torch.float64, requires_grad=True)
    mask = gaussian_mask(pos, torch.zeros(1, dtype=torch.float64), width)
    mask.sum().backward()
    x2 = pos[0, 0] ** 2
    s2 = 0.3**2 + MASK_EPS
    # d/dw exp(-x^2 / (2 (w^2 + eps))) = exp(...) * x^2 w / (w^2 + eps)^2
    expected = (torch.exp(-0.5 * x2 / s2) * x2 * 0.3 / s2**2).sum()
    assert width.grad.item() == pytest.approx(expected.item(), rel=1e-10)


# ---------------------------------------------------------------------------------------------------------------
# Cropping
# ---------------------------------------------------------------------------------------------------------------
def test_cropping_at_init_keeps_the_original_tap_counts():
    # sMNIST: causal, 784 taps; CIFAR-10: centred, 33 x 33 (ccnn_original.md section 2).
    assert GaussianMask(1, init_value=0.075, causal=True, threshold=0.1).cropped_kernel_size((784,)) == (65,)
    assert GaussianMask(2, init_value=0.075, threshold=0.1).cropped_kernel_size((33, 33)) == (5, 5)


def test_cropping_is_off_without_dynamic_cropping():
    mask = GaussianMask(2, init_value=0.075, dynamic_cropping=False)
    assert mask.cropped_kernel_size((33, 17)) == (33, 17)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kernel_size", [9, 10, 33, 64, 101])
def test_cropped_size_grows_with_the_width(kernel_size, causal):
    mean = 1.0 if causal else 0.0
    sizes = [cropped_size(kernel_size, mean, w, 0.1, causal) for w in (0.01, 0.05, 0.1, 0.2, 0.3, 0.6, 1.0)]
    assert sizes == sorted(sizes)
    assert sizes[0] < sizes[-1] == kernel_size
    assert all(1 <= s <= kernel_size for s in sizes)
    if not causal:
        assert all(s % 2 == kernel_size % 2 for s in sizes)  # parity kept, so the anchor stays a tap


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kernel_size", [9, 10, 33, 64])
@pytest.mark.parametrize("width", [0.05, 0.12, 0.3])
def test_cropping_drops_only_taps_below_the_threshold(kernel_size, causal, width):
    mask = GaussianMask(1, init_value=width, causal=causal, threshold=0.1)
    pos = kernel_positions((kernel_size,), dtype=torch.float64)
    values = mask.double()(pos)[0, 0]
    (kept,) = mask.cropped_kernel_size((kernel_size,))
    (sl,) = crop_slices((kernel_size,), (kept,), causal)
    dropped = torch.ones(kernel_size, dtype=torch.bool)
    dropped[sl] = False
    assert (values[dropped] < 0.1).all()
    assert (values[~dropped] >= 0.1).sum() == (values >= 0.1).sum()


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("kernel_size", "kept"), [(9, 3), (9, 5), (10, 2), (10, 6), (33, 5), (64, 12), (7, 7)])
def test_crop_keeps_the_anchor_aligned(kernel_size, kept, causal):
    if causal:
        kept = kept - 1 if kept % 2 == 0 and kept > 2 else kept  # any size works causally; vary parity too
    (sl,) = crop_slices((kernel_size,), (kept,), causal)
    assert sl.stop - sl.start == kept
    assert sl.start + anchor_index(kept, causal) == anchor_index(kernel_size, causal)
    # Cropping equals zeroing the taps outside the crop: the convolution output is unchanged.
    g = torch.Generator().manual_seed(kernel_size)
    x = torch.randn(1, 1, 20, generator=g, dtype=torch.float64)
    w = torch.randn(1, 1, kernel_size, generator=g, dtype=torch.float64)
    zeroed = torch.zeros_like(w)
    zeroed[..., sl] = w[..., sl]
    assert torch.allclose(
        direct_conv(x, w[..., sl], causal=causal), direct_conv(x, zeroed, causal=causal), rtol=0, atol=1e-12
    )


@pytest.mark.parametrize("kernel_size", [9, 10, 33, 34])
def test_centred_crop_positions_are_symmetric_about_zero(kernel_size):
    pos = kernel_positions((kernel_size,), dtype=torch.float64)[0, 0]
    kept = cropped_size(kernel_size, 0.0, 0.2, 0.1, causal=False)
    (sl,) = crop_slices((kernel_size,), (kept,), causal=False)
    assert kept < kernel_size
    assert torch.allclose(pos[sl], -pos[sl].flip(0), atol=1e-12)


def test_causal_crop_keeps_the_most_recent_taps():
    (sl,) = crop_slices((784,), (65,), causal=True)
    assert (sl.start, sl.stop) == (719, 784)


# ---------------------------------------------------------------------------------------------------------------
# Construction
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"data_dim": 4}, "data_dim"),
        ({"data_dim": 2, "causal": True}, "causal"),
        ({"init_value": 0.0}, "init_value"),
        ({"init_value": float("inf")}, "init_value"),
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": 1.0}, "threshold"),
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": None}, "threshold"),
        # (0, 1) whether or not the mask crops: a threshold of 0 or 1 means nothing either way
        ({"threshold": 0.0, "dynamic_cropping": False}, "threshold"),
        ({"dynamic_cropping": "yes"}, "dynamic_cropping"),
        ({"learn_mean": 1}, "learn_mean"),
    ],
)
def test_gaussian_mask_refuses_bad_arguments_naming_them(kwargs, argument):
    with pytest.raises(InvalidArgument) as info:
        GaussianMask(**{"data_dim": 1, **kwargs})
    assert info.value.argument == argument


def test_gaussian_mask_learn_mean_makes_the_mean_a_parameter():
    assert dict(GaussianMask(2).named_parameters()).keys() == {"width"}
    learned = GaussianMask(2, learn_mean=True)
    assert dict(learned.named_parameters()).keys() == {"width", "mean"}
    assert learned.width.tolist() == pytest.approx([0.075, 0.075])
