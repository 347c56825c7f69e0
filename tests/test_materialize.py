"""Materialised networks (fixed kernels at one input size) compute what the continuous ones compute in eval mode."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from argcheck import accepted_arguments
from ckconv import CONV_TYPES, InvalidArgument
from ckconv.functional import prefers_fft
from ckconv.materialize import FixedConv, materialize_conv
from models.ccnn import CCNN
from models.materialize import MaterializedEvaluation, example_input, materialize
from training.cli import presets

SIZES = {1: (37,), 2: (12, 11), 3: (7, 6, 5)}
RELATIVE = 1e-5  # the largest difference allowed, relative to the largest logit


def make_layer(conv_type: str, data_dim: int, causal: bool, use_fft: bool | str, channels: int = 3) -> nn.Module:
    """One layer of each kind, built with as few keywords as possible (the one place tests here build layers)."""
    cls = CONV_TYPES[conv_type]
    options = {"input_size": SIZES[data_dim], "kernel_size": 9} if cls.continuous else {"kernel_size": 5}
    return cls(channels, 4, data_dim, causal=causal, use_fft=use_fft, **options, **mask_options(conv_type))


def mask_options(conv_type: str) -> dict:
    # A mask wide enough to keep several of the 9 taps (the default 0.075 keeps one, a zero kernel at init).
    takes_mask = "mask_options" in accepted_arguments(CONV_TYPES[conv_type])
    return {"mask_options": {"init_value": 0.5}} if takes_mask else {}


def make_network(data_dim: int, causal: bool, conv_type: str, block_type: str = "S4", **network: object) -> CCNN:
    """A small CCNN with batch norms whose statistics are not the identity (the one place tests build networks)."""
    options: dict = {"causal": causal, **mask_options(conv_type)}
    if not CONV_TYPES[conv_type].continuous:
        options["kernel_size"] = 5
    net = CCNN(
        2, 5, data_dim, SIZES[data_dim], hidden_channels=6, num_blocks=2, conv_type=conv_type,
        conv_options=options, block_type=block_type, **network,
    )  # fmt: skip
    randomise_norms(net)
    return net.eval()


@torch.no_grad()
def randomise_norms(net: nn.Module) -> None:
    generator = torch.Generator().manual_seed(1)
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            for tensor, low, high in (
                (module.running_mean, -1, 1),
                (module.running_var, 0.3, 3),
                (module.weight, 0.5, 2),
            ):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * (high - low) + low)
            module.bias.copy_(torch.randn(module.bias.shape, generator=generator))


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    assert expected.abs().max() > 0, "a zero reference proves nothing"
    return ((actual - expected).abs().max() / expected.abs().max()).item()


def cases_1d_2d_3d() -> list[tuple[int, bool]]:
    return [(1, False), (1, True), (2, False), (3, False)]


@pytest.mark.parametrize("conv_type", list(CONV_TYPES))
@pytest.mark.parametrize(("data_dim", "causal"), cases_1d_2d_3d())
@pytest.mark.parametrize("use_fft", [True, False])
def test_a_materialised_layer_computes_the_layers_output_on_the_layers_own_path(conv_type, data_dim, causal, use_fft):
    torch.manual_seed(0)
    layer = make_layer(conv_type, data_dim, causal, use_fft).eval()
    x = torch.randn(2, 3, *SIZES[data_dim])
    fixed = materialize_conv(layer, SIZES[data_dim])
    assert fixed.use_fft == prefers_fft(fixed.kernel_size, use_fft)
    with torch.no_grad():
        assert relative_error(fixed(x), layer(x)) <= RELATIVE


@pytest.mark.parametrize(("data_dim", "causal"), cases_1d_2d_3d())
def test_materialising_picks_fft_or_direct_by_the_layers_rule_for_the_cropped_kernel(data_dim, causal):
    layer = make_layer("SeparableFlexConv", data_dim, causal, "auto")
    fixed = materialize_conv(layer, SIZES[data_dim])
    assert fixed.kernel_size == tuple(layer.sample_kernel(SIZES[data_dim]).shape[2:])
    assert fixed.use_fft == prefers_fft(fixed.kernel_size, "auto")
    assert materialize_conv(layer, SIZES[data_dim], use_fft=False).use_fft is False


@pytest.mark.parametrize("conv_type", ["SeparableFlexConv", "FlexConv", "CKConv", "SeparableConv"])
@pytest.mark.parametrize(("data_dim", "causal"), cases_1d_2d_3d())
@pytest.mark.parametrize("block_type", ["S4", "default"])
def test_a_materialised_network_gives_the_networks_logits(conv_type, data_dim, causal, block_type):
    torch.manual_seed(0)
    net = make_network(data_dim, causal, conv_type, block_type)
    x = torch.randn(3, 2, *SIZES[data_dim])
    with torch.no_grad():
        expected = net(x)
        for fold in (True, False):
            for use_fft in (None, True, False):
                fixed = materialize(net, SIZES[data_dim], fold_batchnorm=fold, use_fft=use_fft)
                assert relative_error(fixed(x), expected) <= RELATIVE, (fold, use_fft)


def test_a_materialised_network_has_no_kernel_net_no_mask_and_folds_its_batch_norms():
    net = make_network(1, False, "SeparableFlexConv")
    fixed = materialize(net, SIZES[1])
    names = {type(m).__name__ for m in fixed.modules()}
    assert not names & {"MAGNet", "GaussianMask", "SeparableFlexConv", "BatchNorm1d"}
    assert sum(isinstance(m, FixedConv) for m in fixed.modules()) == 3  # stem + one per block
    assert not any(p.requires_grad for p in fixed.parameters())
    # Post-norm S4 blocks keep their norm (it feeds the next block's convolution and the shortcut alike).
    post = materialize(make_network(1, False, "SeparableFlexConv", prenorm=False), SIZES[1])
    assert sum(isinstance(m, nn.BatchNorm1d) for m in post.modules()) == 2


def test_materialising_leaves_the_network_unchanged_and_shares_no_tensor_with_it():
    net = make_network(2, False, "SeparableFlexConv").train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    fixed = materialize(net, SIZES[2])
    assert net.training and all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    pointers = {t.data_ptr() for t in net.state_dict().values()}
    assert not pointers & {t.data_ptr() for t in fixed.state_dict().values() if t.numel()}


def test_a_resolution_change_is_a_second_call():
    net = make_network(1, True, "SeparableFlexConv")
    longer = (2 * SIZES[1][0],)
    x = torch.randn(2, 2, *longer)
    with torch.no_grad():
        assert relative_error(materialize(net, longer)(x), net(x)) <= RELATIVE
        with pytest.raises(ValueError):
            materialize(net, SIZES[1])(x)  # the kernels of another size are not these


@pytest.mark.parametrize("size", [0, (4, 4), -3, 1.5])
def test_a_size_the_network_cannot_take_is_refused_naming_input_size(size):
    with pytest.raises(InvalidArgument) as error:
        materialize(make_network(1, False, "SeparableFlexConv"), size)
    assert error.value.argument == "input_size"


def test_a_size_too_small_for_the_pools_or_the_kernels_is_refused():
    pooled = make_network(1, False, "SeparableFlexConv", downsampling=[0])
    with pytest.raises(InvalidArgument):
        materialize(pooled, 1)
    with pytest.raises(InvalidArgument):  # one position, where the kernel had 37 taps: no longer a convolution
        materialize(make_network(1, False, "CKConv"), 1)


def test_token_and_two_class_networks_materialise():
    for paired in (False, True):
        net = CCNN(1, 2, 1, 20, hidden_channels=6, num_blocks=1, vocab_size=11, paired=paired, conv_options={})
        randomise_norms(net)
        net.eval()
        x = torch.randint(0, 11, example_input(net, 20, batch_size=4).shape)
        with torch.no_grad():
            assert relative_error(materialize(net, 20)(x), net(x)) <= RELATIVE


def test_materialised_evaluation_reuses_one_copy_per_size_until_cleared():
    net = make_network(1, True, "SeparableFlexConv")
    evaluation = MaterializedEvaluation(net)
    x, longer = torch.randn(4, 2, *SIZES[1]), torch.randn(4, 2, 2 * SIZES[1][0])
    with torch.no_grad():
        assert relative_error(evaluation(x), net(x)) <= RELATIVE
        assert relative_error(evaluation(longer), net(longer)) <= RELATIVE
        copies = dict(evaluation._copies)
        evaluation(x)
        assert evaluation._copies[SIZES[1]] is copies[SIZES[1]]
        net.conv1.channel_mixer.weight.mul_(2)  # a weight change between evaluations ...
        evaluation.clear()
        assert relative_error(evaluation(x), net(x)) <= RELATIVE  # ... is seen after clear()
    assert "_copies" not in dict(net.named_children())


def test_materialised_evaluation_works_under_mixed_precision():
    net = make_network(1, True, "SeparableFlexConv")
    x = torch.randn(2, 2, *SIZES[1])
    with torch.no_grad():
        expected = net(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = MaterializedEvaluation(net)(x)
    assert relative_error(logits.float(), expected) <= 0.05  # bfloat16 keeps 8 bits of mantissa


def test_materialised_evaluation_works_in_lightnings_inference_mode():
    net = make_network(2, False, "SeparableFlexConv")
    x = torch.randn(2, 2, *SIZES[2])
    with torch.inference_mode():
        assert relative_error(MaterializedEvaluation(net)(x), net(x)) <= RELATIVE


def preset_networks() -> list[str]:
    return [name for name in presets() if name.endswith(("ccnn_4_140", "ccnn_2_16"))]


@pytest.mark.slow
@pytest.mark.parametrize("preset", preset_networks())
def test_every_presets_network_shape_materialises_to_its_logits(preset):
    """Each preset's input shape, dimension, causality, kernel size and kernel net (the ccnn_6_380 presets share
    their task's shape), at width 8 with one block to stay fast on a CPU."""
    from bench.network import build_case, random_batch

    torch.manual_seed(0)
    task, variant = preset.split("/")
    module, meta = build_case(task, variant, ["net.no_hidden=8", "net.no_blocks=1"])
    net = module.net
    randomise_norms(net)
    net.eval()
    x, _ = random_batch(meta, 2, torch.device("cpu"))
    with torch.no_grad():
        assert relative_error(materialize(net, meta.size)(x), net(x)) <= RELATIVE
