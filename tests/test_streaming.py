"""Streaming a causal 1D CCNN sample by sample (or chunk by chunk) gives the outputs of the whole-sequence forward."""

from __future__ import annotations

import pytest
import torch

from ckconv import InvalidArgument
from ckconv.materialize import materialize_conv
from ckconv.streaming import StreamingConv
from models.ccnn import CCNN
from models.streaming import StreamingCCNN, position_features
from tests.conftest import TINY, compose
from tests.test_materialize import make_layer, make_network, relative_error

LENGTH = 37  # tests.test_materialize.SIZES[1]


def stream(streaming: StreamingCCNN, x: torch.Tensor, chunks: list[int]) -> torch.Tensor:
    streaming.reset()
    return torch.cat([streaming.step(part) for part in torch.split(x, chunks, dim=-1)], dim=-1)


@pytest.mark.parametrize("conv_type", ["SeparableFlexConv", "CKConv", "SeparableConv"])
@pytest.mark.parametrize("block_type", ["S4", "default"])
def test_streaming_sample_by_sample_and_in_chunks_gives_the_full_forward(conv_type, block_type):
    torch.manual_seed(0)
    net = make_network(1, True, conv_type, block_type)
    x = torch.randn(3, 2, LENGTH)
    with torch.no_grad():
        features, logits = position_features(net, x), net(x)
    streaming = StreamingCCNN(net, LENGTH)
    for chunks in ([1] * LENGTH, [5, 1, 20, LENGTH - 26], [LENGTH]):
        assert relative_error(stream(streaming, x, chunks), features) <= 1e-5
        assert relative_error(streaming.logits(), logits) <= 1e-5
        assert streaming.positions == LENGTH


def test_streaming_through_max_pools_emits_each_pooled_position_once_its_window_is_complete():
    torch.manual_seed(0)
    net = make_network(1, True, "SeparableFlexConv", downsampling=[0])
    x = torch.randn(2, 2, LENGTH)
    with torch.no_grad():
        features, logits = position_features(net, x), net(x)
    streaming = StreamingCCNN(net, LENGTH)
    streaming.reset()
    emitted = [streaming.step(x[..., t : t + 1]).shape[-1] for t in range(LENGTH)]
    assert emitted == [t % 2 for t in range(LENGTH)]  # a pooled position after every second sample
    assert relative_error(stream(streaming, x, [1] * LENGTH), features) <= 1e-5
    assert relative_error(streaming.logits(), logits) <= 1e-5


def test_a_streamed_prefix_gives_the_features_of_the_prefix():
    net = make_network(1, True, "SeparableFlexConv")
    x = torch.randn(2, 2, LENGTH)
    streaming = StreamingCCNN(net, LENGTH)
    with torch.no_grad():
        features = position_features(net, x)
    assert relative_error(stream(streaming, x[..., :10], [1] * 10), features[..., :10]) <= 1e-5


def test_a_streaming_convolution_keeps_only_what_its_kernel_reaches():
    layer = make_layer("SeparableFlexConv", 1, True, "auto")
    fixed = materialize_conv(layer, (LENGTH,))
    streaming = StreamingConv(fixed)
    x = torch.randn(2, 3, LENGTH)
    outputs = [streaming(x[..., t : t + 1]) for t in range(LENGTH)]
    assert streaming.history.shape[-1] == fixed.kernel_size[0] - 1
    with torch.no_grad():
        assert relative_error(torch.cat(outputs, dim=-1), layer.eval()(x)) <= 1e-5


def test_token_inputs_stream():
    torch.manual_seed(0)
    net = CCNN(1, 3, 1, 20, hidden_channels=6, num_blocks=1, vocab_size=7, conv_options={"causal": True}).eval()
    x = torch.randint(0, 7, (2, 20))
    streaming = StreamingCCNN(net, 20)
    stream(streaming, x, [1] * 20)
    with torch.no_grad():
        assert relative_error(streaming.logits(), net(x)) <= 1e-5


@pytest.mark.parametrize(("data_dim", "causal"), [(1, False), (2, False)])
def test_a_network_that_reads_later_samples_is_refused(data_dim, causal):
    with pytest.raises(InvalidArgument):
        StreamingCCNN(make_network(data_dim, causal, "SeparableFlexConv"), 10)


@pytest.mark.slow
def test_a_trained_causal_checkpoint_streams_to_its_own_logits_and_predictions(data_dir, tmp_path):
    from training.export import check_inputs, load_checkpoint
    from training.run.execute import train

    overrides = [*TINY, "conv.causal=True", f"dataset.data_dir={data_dir}", f"train.output_dir={tmp_path / 'run'}"]
    train(compose(overrides))
    loaded = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.ckpt", data_dir)
    size = tuple(loaded.datamodule.meta.size)
    x = check_inputs(loaded, size)
    streaming = StreamingCCNN(loaded.net, size[0])
    stream(streaming, x, [1] * size[0])
    with torch.no_grad():
        expected = loaded.net(x)
    assert relative_error(streaming.logits(), expected) <= 1e-5
    assert torch.equal(streaming.logits().argmax(dim=-1), expected.argmax(dim=-1))
