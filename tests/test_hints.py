"""Tests of the optimizer hints (ckconv.hints): per-parameter hints and the parameter groups built from them."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
from torch import nn

from ckconv import FlexConv, OptimHint, SeparableFlexConv, param_groups, parameter_hints
from ckconv.hints import count_parameters

MASK = OptimHint(group="mask", weight_decay=False)
NO_DECAY = OptimHint(weight_decay=False)
DECAY = OptimHint()


def small_model(learn_mean: bool = True) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        SeparableFlexConv(
            2, 4, 1, input_size=16, kernel_options={"hidden_channels": 8}, mask_options={"learn_mean": learn_mean}
        ),
        nn.BatchNorm1d(4),
        nn.LayerNorm(16),
        nn.Conv1d(4, 3, 1),
    )


def test_mask_width_and_mean_are_in_the_mask_group_without_weight_decay():
    hints = parameter_hints(small_model())
    assert hints["0.mask.width"] == MASK
    assert hints["0.mask.mean"] == MASK


def test_fixed_mask_mean_is_a_buffer_and_gets_no_hint():
    hints = parameter_hints(small_model(learn_mean=False))
    assert "0.mask.mean" not in hints
    assert hints["0.mask.width"] == MASK


def test_biases_and_norm_parameters_get_no_weight_decay_and_weights_do():
    hints = parameter_hints(small_model())
    for name in ("1.weight", "1.bias", "2.weight", "2.bias", "3.bias", "0.bias", "0.channel_mixer.bias"):
        assert hints[name] == NO_DECAY, name
    for name in ("3.weight", "0.channel_mixer.weight", "0.kernel_net.output_layer.weight"):
        assert hints[name] == DECAY, name


def test_frozen_parameters_get_no_hint():
    model = small_model()
    model[3].weight.requires_grad_(False)
    hints = parameter_hints(model)
    assert "3.weight" not in hints
    assert "3.bias" in hints


def test_param_groups_scale_the_mask_lr_and_cover_every_trainable_parameter_once():
    model = small_model()
    model[3].bias.requires_grad_(False)
    groups = param_groups(model, lr=0.1, weight_decay=0.01, lr_scales={"mask": 0.1})
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {"default", "default/no_decay", "mask/no_decay"}

    mask = by_name["mask/no_decay"]
    assert mask["lr"] == pytest.approx(0.01)
    assert mask["weight_decay"] == 0.0
    assert {id(p) for p in mask["params"]} == {id(model[0].mask.width), id(model[0].mask.mean)}
    assert by_name["default"]["lr"] == 0.1 and by_name["default"]["weight_decay"] == 0.01
    assert by_name["default/no_decay"]["lr"] == 0.1 and by_name["default/no_decay"]["weight_decay"] == 0.0
    assert id(model[1].weight) in {id(p) for p in by_name["default/no_decay"]["params"]}

    grouped = [id(p) for g in groups for p in g["params"]]
    trainable = [id(p) for p in model.parameters() if p.requires_grad]
    assert len(grouped) == len(set(grouped))
    assert sorted(grouped) == sorted(trainable)
    assert sum(p.numel() for g in groups for p in g["params"]) == count_parameters(model.parameters())


def test_optimizer_step_applies_the_group_learning_rates_and_decay():
    model = FlexConv(1, 1, 1, input_size=8, kernel_options={"hidden_channels": 4}).double()
    optimizer = torch.optim.AdamW(param_groups(model, lr=0.1, weight_decay=0.5, lr_scales={"mask": 0.1}))
    width = model.mask.width.detach().clone()
    weight = model.kernel_net.output_layer.weight.detach().clone()
    bias = model.bias.detach().clone()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    model.mask.width.grad = torch.ones_like(model.mask.width)
    optimizer.step()
    # First AdamW step moves a parameter with gradient g by lr * sign(g) (up to eps); decay multiplies by 1 - lr * wd.
    assert torch.allclose(model.mask.width, width - 0.01, atol=1e-6)
    assert torch.allclose(model.kernel_net.output_layer.weight, weight * (1 - 0.1 * 0.5), atol=1e-12)
    assert torch.equal(model.bias, bias)


def test_missing_lr_scales_default_to_one():
    groups = param_groups(small_model(), lr=0.3)
    assert all(g["lr"] == 0.3 and g["lr_scale"] == 1.0 and g["weight_decay"] == 0.0 for g in groups)


def test_module_declared_hints_win_over_the_defaults():
    class Scaled(nn.Module):
        optim_hints: ClassVar[dict[str, OptimHint]] = {"scale": OptimHint(group="scales", weight_decay=True)}

        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(3))  # 1-D: would get no decay by default
            self.other = nn.Parameter(torch.ones(3))

    hints = parameter_hints(Scaled())
    assert hints == {"scale": OptimHint(group="scales", weight_decay=True), "other": NO_DECAY}
