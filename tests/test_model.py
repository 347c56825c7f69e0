"""The CCNN network: the paper's parameter counts, blocks, token inputs and output shapes."""

from __future__ import annotations

import pytest
import torch

from datamodules import DataMeta
from models.ccnn import CCNN, block_widths
from tests.conftest import compose
from training.build import build_network

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
    size = (12, 10, 6)[:data_dim]
    net = CCNN(
        2,
        5,
        data_dim,
        size,
        hidden_channels=8,
        num_blocks=2,
        block_type=block_type,
        conv_options={"kernel_hidden_channels": 8},
    )
    logits = net(torch.randn(3, 2, *size))
    assert logits.shape == (3, 5)
    assert torch.isfinite(logits).all()


def test_two_classes_give_one_logit():
    net = CCNN(1, 2, 1, (16,), hidden_channels=8, num_blocks=1, conv_options={"kernel_hidden_channels": 8})
    assert net(torch.randn(4, 1, 16)).shape == (4,)


def test_batch_of_one_keeps_its_batch_dimension():
    net = CCNN(1, 10, 2, (8, 8), hidden_channels=8, num_blocks=1, conv_options={"kernel_hidden_channels": 8}).eval()
    assert net(torch.randn(1, 1, 8, 8)).shape == (1, 10)


def test_token_inputs_use_a_learned_embedding_or_the_float_token_id():
    tokens = torch.randint(0, 20, (2, 32))
    learned = CCNN(
        1, 10, 1, (32,), hidden_channels=8, num_blocks=1, vocab_size=20, conv_options={"kernel_hidden_channels": 8}
    )
    as_float = CCNN(
        1,
        10,
        1,
        (32,),
        hidden_channels=8,
        num_blocks=1,
        vocab_size=20,
        embedding="float",
        conv_options={"kernel_hidden_channels": 8},
    )
    assert learned.embedding is not None and learned.embedding.num_embeddings == 20
    assert as_float.embedding is None and as_float.conv1.in_channels == 1
    assert learned(tokens).shape == as_float(tokens).shape == (2, 10)


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
        conv_options={"kernel_hidden_channels": 8},
    ).eval()
    pair = torch.randint(0, 10, (3, 2, 16))
    swapped = pair.flip(1)
    assert net(pair).shape == (3,)
    assert not torch.allclose(net(pair), net(swapped))  # u - v makes the comparison directional
    with pytest.raises(ValueError, match=r"\(B, 2, L\)"):
        net(pair[:, 0])


def test_block_width_factors_and_downsampling_change_the_architecture():
    assert block_widths(16, 3, [(1.0, 1), (2.0, 2)]) == [16, 32, 32]
    with pytest.raises(ValueError, match="no_blocks"):
        block_widths(16, 3, [(1.0, 1)])
    net = CCNN(
        1,
        10,
        1,
        (32,),
        hidden_channels=8,
        num_blocks=2,
        block_width_factors=[(1.0, 1), (2.0, 1)],
        downsampling=[0],
        conv_options={"kernel_hidden_channels": 8},
    )
    assert net.out_channels == 16
    assert net.blocks[2].conv.input_size == (16,)  # the block after the pool samples kernels for length 16
    assert net(torch.randn(2, 1, 32)).shape == (2, 10)


def test_prenorm_and_postnorm_blocks_differ_and_both_train():
    torch.manual_seed(0)
    x = torch.randn(4, 1, 16)
    for prenorm in (True, False):
        net = CCNN(
            1, 3, 1, (16,), hidden_channels=8, num_blocks=1, prenorm=prenorm, conv_options={"kernel_hidden_channels": 8}
        )
        net(x).sum().backward()
        assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
