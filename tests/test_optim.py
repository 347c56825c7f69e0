"""Optimizer groups from parameter hints, learning-rate schedules and the original's LnLoss penalty."""

from __future__ import annotations

import math

import pytest
import torch

from ckconv import SeparableFlexConv
from models.ccnn import CCNN
from models.optim import build_optimizer, ln_penalty, lr_multiplier


def small_net() -> CCNN:
    torch.manual_seed(0)
    return CCNN(1, 10, 1, (16,), hidden_channels=8, num_blocks=2, conv_options={"kernel_hidden_channels": 8})


def test_mask_group_gets_lr_times_ratio_and_no_weight_decay():
    net = small_net()
    optimizer = build_optimizer(net, "AdamW", lr=0.02, weight_decay=0.05, mask_lr_ratio=0.1)
    by_param = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    widths = [m.mask.width for m in net.modules() if isinstance(m, SeparableFlexConv)]
    assert len(widths) == 3
    for width in widths:
        assert by_param[id(width)]["lr"] == pytest.approx(0.002)
        assert by_param[id(width)]["weight_decay"] == 0.0
    bn = net.norm1
    assert by_param[id(bn.weight)]["weight_decay"] == 0.0 and by_param[id(bn.bias)]["weight_decay"] == 0.0
    assert by_param[id(net.blocks[0].linear.weight)]["weight_decay"] == 0.05
    assert by_param[id(net.blocks[0].linear.bias)]["weight_decay"] == 0.0
    # Every trainable parameter is in exactly one group.
    listed = [id(p) for g in optimizer.param_groups for p in g["params"]]
    assert sorted(listed) == sorted(id(p) for p in net.parameters())


def test_mask_lr_ratio_changes_the_mask_update_size():
    deltas = []
    for ratio in (1.0, 0.01):
        net = small_net()
        optimizer = build_optimizer(net, "SGD", lr=0.1, mask_lr_ratio=ratio)
        width = net.conv1.mask.width
        before = width.detach().clone()
        net(torch.randn(4, 1, 16)).logsumexp(-1).sum().backward()
        optimizer.step()
        deltas.append((width.detach() - before).abs().item())
    # float32 resolves a 1e-5 step on a width of 0.2 to about 1e-3 relative error.
    assert deltas[0] > 0 and deltas[1] == pytest.approx(deltas[0] * 0.01, rel=2e-3)


def test_any_torch_optimizer_by_name_and_unknown_names_are_refused():
    assert isinstance(build_optimizer(small_net(), "RMSprop", lr=0.01), torch.optim.RMSprop)
    sgd = build_optimizer(small_net(), "SGD", lr=0.01, momentum=0.9, nesterov=True)
    assert sgd.defaults["momentum"] == 0.9 and sgd.defaults["nesterov"] is True
    with pytest.raises(ValueError, match=r"optimizer\.name"):
        build_optimizer(small_net(), "Adamm", lr=0.01)


def test_warmup_then_cosine_decays_to_zero():
    m = lr_multiplier("cosine", total_steps=110, warmup_steps=10)
    assert [m(s) for s in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    assert m(9) == pytest.approx(1.0) and m(10) == pytest.approx(1.0)
    assert m(60) == pytest.approx(0.5)
    assert m(110) == pytest.approx(0.0, abs=1e-12)


def test_multistep_exponential_and_constant_schedules():
    multistep = lr_multiplier("multistep", total_steps=100, steps_per_epoch=10, decay_epochs=3, factor=0.5)
    assert [multistep(s) for s in (0, 29, 30, 60)] == pytest.approx([1.0, 1.0, 0.5, 0.25])
    exponential = lr_multiplier("exponential", total_steps=100, steps_per_epoch=10, factor=0.9)
    assert exponential(20) == pytest.approx(0.81) and exponential(5) == pytest.approx(0.9**0.5)
    constant = lr_multiplier("", total_steps=100, warmup_steps=4)
    assert [constant(s) for s in (0, 3, 50)] == pytest.approx([0.25, 1.0, 1.0])
    with pytest.raises(ValueError):
        lr_multiplier("plateau", total_steps=10)


def test_ln_penalty_is_the_sum_of_unsquared_norms_plus_the_sampled_kernels():
    net = small_net()
    expected = sum(p.norm() for n, p in net.named_parameters() if "kernel_net" not in n)
    for layer in net.modules():
        if isinstance(layer, SeparableFlexConv):
            expected = expected + layer.sample_kernel(layer.input_size).norm()
    assert ln_penalty(net).item() == pytest.approx(float(expected), rel=1e-6)
    assert math.isfinite(ln_penalty(net).item())
