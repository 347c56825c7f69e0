"""The CCNN network: the paper's parameter counts, blocks, token inputs and output shapes."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from argcheck import InvalidArgument
from ckconv import SeparableFlexConv
from datamodules import DataMeta
from models.blocks import S4Block
from models.ccnn import CCNN, block_widths
from training.build import build_network
from training.config.compose import compose

# Conv-layer options of a small kernel net.
SMALL_CONV = {"kernel_options": {"hidden_channels": 8}}

PAPER_1D = [
    "conv.causal=True",
    "conv.use_fft=True",
    "kernel.omega_0=2976.49",
    "mask.init_value=0.075",
    "net.dropout_type=Dropout2d",
]
PAPER_2D = ["kernel.size=33", "conv.use_fft=False", "mask.init_value=0.075"]


@pytest.mark.parametrize(
    ("meta", "overrides", "expected"),
    [
        (DataMeta(1, 1, 10, (784,)), [*PAPER_1D, "net.no_hidden=140", "net.no_blocks=4"], 198_769),
        (
            DataMeta(1, 1, 10, (784,)),
            [*PAPER_1D, "net.no_hidden=380", "net.no_blocks=6", "kernel.no_hidden=64"],
            1_993_091,
        ),
        (DataMeta(2, 3, 10, (32, 32)), [*PAPER_2D, "net.no_hidden=140", "net.no_blocks=4"], 201_042),
        (
            DataMeta(2, 3, 10, (32, 32)),
            [*PAPER_2D, "net.no_hidden=380", "net.no_blocks=6", "kernel.no_hidden=64"],
            1_999_366,
        ),
    ],
    ids=["smnist_4_140", "smnist_6_380", "cifar10_4_140", "cifar10_6_380"],
)
def test_paper_sizes_have_the_original_parameter_counts(meta, overrides, expected):
    net = build_network(compose(overrides), meta)
    assert sum(p.numel() for p in net.parameters()) == expected


@pytest.mark.parametrize("data_dim", [1, 2, 3])
@pytest.mark.parametrize("block_type", ["S4", "default"])
def test_network_outputs_logits_for_any_dimension(data_dim, block_type):
    torch.manual_seed(0)
    size = (12, 10, 6)[:data_dim]
    net = CCNN(
        2,
        5,
        data_dim,
        size,
        hidden_channels=8,
        num_blocks=2,
        block_type=block_type,
        conv_options=SMALL_CONV,
    ).double()
    net.eval()
    x = torch.randn(3, 2, *size, dtype=torch.float64)
    logits = net(x)
    assert logits.shape == (3, 5)
    assert torch.isfinite(logits).all()
    # In eval mode every sample is classified on its own: the batch gives each sample's own logits, and different
    # inputs give different logits (small at initialisation, hence relative comparisons).
    alone = torch.cat([net(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(logits, alone, rtol=1e-9, atol=1e-15)
    assert not torch.allclose(logits[0], logits[1], rtol=1e-2, atol=0.0)


def test_two_classes_give_one_logit():
    net = CCNN(1, 2, 1, (16,), hidden_channels=8, num_blocks=1, conv_options=SMALL_CONV)
    assert net(torch.randn(4, 1, 16)).shape == (4,)


def test_batch_of_one_keeps_its_batch_dimension():
    net = CCNN(1, 10, 2, (8, 8), hidden_channels=8, num_blocks=1, conv_options=SMALL_CONV).eval()
    assert net(torch.randn(1, 1, 8, 8)).shape == (1, 10)


def test_token_inputs_use_a_learned_embedding_or_the_float_token_id():
    tokens = torch.randint(0, 20, (2, 32), generator=torch.Generator().manual_seed(0))
    small = {"hidden_channels": 8, "num_blocks": 1, "conv_options": SMALL_CONV}
    torch.manual_seed(0)
    learned = CCNN(1, 10, 1, (32,), vocab_size=20, **small).eval()
    torch.manual_seed(0)
    as_float = CCNN(1, 10, 1, (32,), vocab_size=20, embedding="float", **small).eval()
    assert learned.embedding is not None and learned.embedding.num_embeddings == 20
    assert as_float.embedding is None and as_float.conv1.in_channels == 1

    # The learned embedding feeds its (B, E, L) vectors to a signal network with E input channels ...
    signal = CCNN(8, 10, 1, (32,), **small).eval()
    signal.load_state_dict({k: v for k, v in learned.state_dict().items() if not k.startswith("embedding.")})
    embedded = learned.embedding(tokens).transpose(1, 2)
    assert torch.equal(learned(tokens), signal(embedded))
    # ... and "float" feeds the token ids as one float channel (the same seed gives the signal network's weights).
    torch.manual_seed(0)
    one_channel = CCNN(1, 10, 1, (32,), **small).eval()
    assert torch.equal(as_float(tokens), one_channel(tokens.unsqueeze(1).float()))


def test_paired_inputs_share_one_encoder_and_are_order_sensitive():
    torch.manual_seed(0)
    net = CCNN(
        1,
        2,
        1,
        (16,),
        hidden_channels=8,
        num_blocks=1,
        vocab_size=10,
        paired=True,
        conv_options=SMALL_CONV,
    ).eval()
    pair = torch.randint(0, 10, (3, 2, 16), generator=torch.Generator().manual_seed(0))
    swapped = pair.flip(1)
    u, v = net.encode(pair[:, 0]), net.encode(pair[:, 1])
    assert torch.equal(net(pair), net.readout(torch.cat([u, v, u * v, u - v], dim=-1)).squeeze(-1))
    assert not torch.allclose(net(pair), net(swapped))  # u - v makes the comparison directional
    with pytest.raises(ValueError, match=r"\(B, 2, L\)"):
        net(pair[:, 0])


def test_block_width_factors_and_downsampling_change_the_architecture():
    assert block_widths(16, 3, [(1.0, 1), (2.0, 2)]) == [16, 32, 32]
    assert block_widths(16, 2, []) == [16, 16]
    with pytest.raises(InvalidArgument) as info:
        block_widths(16, 3, [(1.0, 1)])  # one block of three
    assert info.value.argument == "block_width_factors"
    net = CCNN(
        1,
        10,
        1,
        (32,),
        hidden_channels=8,
        num_blocks=2,
        block_width_factors=[(1.0, 1), (2.0, 1)],
        downsampling=[0],
        conv_options=SMALL_CONV,
    )
    assert net.out_channels == 16
    assert [type(b).__name__ for b in net.blocks] == ["S4Block", "MaxPool1d", "S4Block"]
    assert (net.blocks[0].conv.out_channels, net.blocks[2].conv.out_channels) == (8, 16)
    assert net.blocks[0].conv.input_size == (32,)
    assert net.blocks[2].conv.input_size == (16,)  # the block after the pool samples kernels for length 16
    assert net(torch.randn(2, 1, 32)).shape == (2, 10)


def test_prenorm_and_postnorm_s4_blocks_follow_their_formulas_and_differ():
    torch.manual_seed(0)
    make_conv = partial(SeparableFlexConv, data_dim=1, input_size=(16,), kernel_options={"hidden_channels": 8})
    pre = S4Block(8, 8, make_conv, 1, prenorm=True).eval()
    post = S4Block(8, 8, make_conv, 1, prenorm=False).eval()
    with torch.no_grad():  # a norm far from the identity, so that where it sits matters
        for tensor in (pre.norm.running_mean, pre.norm.weight, pre.norm.bias):
            tensor.uniform_(-1.0, 1.0)
        pre.norm.running_var.uniform_(0.5, 2.0)
    post.load_state_dict(pre.state_dict())
    x = torch.randn(4, 8, 16)

    def branch(block: S4Block, h: torch.Tensor) -> torch.Tensor:  # dropout is 0: an identity
        return block.act(block.linear(block.act(block.conv(h))))

    with torch.no_grad():
        y_pre, y_post = pre(x), post(x)
        assert torch.equal(y_pre, branch(pre, pre.norm(x)) + x)  # norm inside the branch, shortcut un-normalised
        assert torch.equal(y_post, post.norm(branch(post, x) + x))  # norm after the residual sum
    assert (y_pre - y_post).abs().max() > 0.1


@pytest.mark.parametrize("prenorm", [True, False])
def test_prenorm_and_postnorm_networks_train_every_parameter(prenorm):
    torch.manual_seed(0)
    x = torch.randn(4, 1, 16)
    net = CCNN(1, 3, 1, (16,), hidden_channels=8, num_blocks=1, prenorm=prenorm, conv_options=SMALL_CONV)
    assert isinstance(net.out_norm, torch.nn.BatchNorm1d) == prenorm  # pre-norm blocks leave the sum un-normalised
    net(x).logsumexp(-1).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().max() > 0, name
