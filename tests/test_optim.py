"""Optimizer groups from parameter hints, checked optimizer settings and the original's LnLoss penalty (the
learning-rate schedules are tested in test_schedule.py)."""

from __future__ import annotations

import pytest
import torch

from argcheck import InvalidArgument
from ckconv import SeparableFlexConv
from models.ccnn import CCNN
from models.optim import OptimizerSettings, build_optimizer, ln_penalty

SMALL_CONV = {"kernel_options": {"hidden_channels": 8}}


def small_net() -> CCNN:
    torch.manual_seed(0)
    return CCNN(1, 10, 1, (16,), hidden_channels=8, num_blocks=2, conv_options=SMALL_CONV)


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
    with pytest.raises(InvalidArgument) as info:
        build_optimizer(small_net(), "Adamm", lr=0.01)
    assert info.value.argument == "name" and "'Adamm'" in str(info.value)


@pytest.mark.parametrize(
    ("settings", "argument"),
    [
        ({"name": "Adamm"}, "name"),
        ({"name": "Optimizer"}, "name"),
        ({"name": "lr_scheduler"}, "name"),
        ({"lr": float("nan")}, "lr"),
        ({"lr": float("inf")}, "lr"),
        ({"lr": 0.0}, "lr"),
        ({"lr": -1.0}, "lr"),
        ({"lr": "0.1"}, "lr"),
        ({"weight_decay": -0.1}, "weight_decay"),
        ({"name": "Rprop", "weight_decay": 0.1}, "weight_decay"),
        ({"mask_lr_ratio": float("nan")}, "mask_lr_ratio"),
        ({"mask_lr_ratio": -1.0}, "mask_lr_ratio"),
        ({"name": "AdamW", "momentum": 0.9}, "momentum"),  # AdamW takes no momentum: it would be ignored
        ({"name": "SGD", "momentum": -1.0}, "momentum"),
        ({"name": "SGD", "momentum": 1.0}, "momentum"),
        ({"name": "RMSprop", "momentum": 0.9, "nesterov": True}, "nesterov"),
        ({"name": "SGD", "nesterov": True}, "nesterov"),  # torch's SGD needs a momentum for Nesterov
        ({"nesterov": "yes"}, "nesterov"),
        ({"weight_decay_type": "l2"}, "weight_decay_type"),
    ],
)
def test_bad_settings_are_refused_on_construction_naming_the_setting(settings, argument):
    with pytest.raises(InvalidArgument) as info:
        OptimizerSettings(**settings)
    assert info.value.argument == argument


@pytest.mark.parametrize(("weight_decay_type", "decay", "penalty"), [("decoupled", 0.05, 0.0), ("ln_loss", 0.0, 0.05)])
def test_weight_decay_type_sends_the_decay_to_the_optimizer_or_the_penalty(weight_decay_type, decay, penalty):
    settings = OptimizerSettings("AdamW", lr=0.01, weight_decay=0.05, weight_decay_type=weight_decay_type)
    assert (settings.weight_decay, settings.optimizer_decay, settings.penalty_weight) == (0.05, decay, penalty)
    assert {g["weight_decay"] for g in settings.build(small_net()).param_groups} == {0.0, decay}


def test_an_optimizer_without_weight_decay_takes_the_ln_loss_penalty():
    # Rprop has no decay of its own, which ln_loss does not ask of it.
    settings = OptimizerSettings("Rprop", lr=0.01, weight_decay=0.1, weight_decay_type="ln_loss")
    assert settings.penalty_weight == 0.1
    assert isinstance(settings.build(small_net()), torch.optim.Rprop)


def test_momentum_reaches_every_optimizer_that_takes_one_and_unset_keeps_its_default():
    rmsprop = OptimizerSettings("RMSprop", lr=0.01, momentum=0.5).build(small_net())
    assert rmsprop.defaults["momentum"] == 0.5  # was silently dropped for every optimizer but SGD
    assert OptimizerSettings("SGD", lr=0.01).build(small_net()).defaults["momentum"] == 0.0


def test_settings_build_the_optimizer_they_describe():
    settings = OptimizerSettings("RMSprop", lr=0.03, weight_decay=0.01, mask_lr_ratio=0.5)
    optimizer = settings.build(small_net())
    assert isinstance(optimizer, torch.optim.RMSprop) and optimizer.defaults["lr"] == 0.03
    assert {g["name"]: (g["lr"], g["weight_decay"]) for g in optimizer.param_groups} == {
        "default": (0.03, 0.01),
        "default/no_decay": (0.03, 0.0),
        "mask/no_decay": (0.015, 0.0),
    }


def test_ln_penalty_is_the_sum_of_unsquared_norms_plus_the_sampled_kernels():
    net = small_net()
    with torch.no_grad():
        expected = sum(p.norm() for n, p in net.named_parameters() if "kernel_net" not in n)
        for layer in net.modules():
            if isinstance(layer, SeparableFlexConv):
                expected = expected + layer.sample_kernel(layer.input_size).norm()
        assert ln_penalty(net).item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize(
    ("name", "settings"),
    [
        ("AdamW", {"weight_decay": 0.05, "mask_lr_ratio": 0.1}),
        ("Adam", {}),
        ("SGD", {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
        ("Adagrad", {}),
    ],
)
def test_optimizers_with_a_fused_kernel_use_it_and_update_as_the_plain_loop_does(name, settings):
    """Ten steps of the built optimizer (fused) against torch's single-tensor loop, in float64, on the same
    gradients: the same weights and state to rounding."""
    fused_net, loop_net = small_net().double(), small_net().double()
    fused = build_optimizer(fused_net, name, lr=0.01, **settings)
    name_of = {id(p): n for n, p in fused_net.named_parameters()}
    twin = dict(loop_net.named_parameters())
    groups = [  # the same groups (learning rates, decays) over the other network's parameters
        {key: value for key, value in group.items() if key not in ("params", "fused", "foreach")}
        | {"params": [twin[name_of[id(p)]] for p in group["params"]]}
        for group in fused.param_groups
    ]
    loop = type(fused)(groups, foreach=False, fused=False)
    assert fused.defaults["fused"] is True and all(group["fused"] for group in fused.param_groups)
    torch.manual_seed(1)
    for _ in range(10):
        loop.zero_grad()
        loop_net(torch.randn(4, 1, 16, dtype=torch.float64)).logsumexp(-1).sum().backward()
        # The same gradients: Adam would magnify two backward passes' rounding noise on a bias before a BatchNorm
        # (its gradient is 0 but for rounding) into steps of the learning rate's size.
        for name_, parameter in fused_net.named_parameters():
            parameter.grad = twin[name_].grad.clone()
        loop.step()
        fused.step()
    for a, b in zip(fused_net.parameters(), loop_net.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    for a, b in zip(fused.state.values(), loop.state.values(), strict=True):
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-12, atol=1e-14, check_dtype=False, check_device=False)


def test_optimizers_without_a_fused_kernel_are_built_as_they_are():
    optimizer = build_optimizer(small_net(), "RMSprop", lr=0.01)
    assert "fused" not in optimizer.defaults
