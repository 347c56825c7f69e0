"""The optimised paths give the outputs and gradients of the plain ones: FFT vs direct convolution in a whole
network, the masks' host copy of their widths, torch.compile, and the network benchmark's own plumbing."""

from __future__ import annotations

import copy

import pytest
import torch

from bench.network import Repeats as NetworkRepeats
from bench.network import build_case, random_batch, run
from ckconv.functional import cropped_size
from ckconv.mask import GaussianMask
from models.ccnn import CCNN


def twin_networks(data_dim: int, size: tuple[int, ...], causal: bool) -> tuple[CCNN, CCNN]:
    torch.manual_seed(0)
    options = {
        "kernel_options": {"hidden_channels": 8},
        "causal": causal,
        "mask_options": {"init_value": 0.3},
        "use_fft": True,
    }
    fft_net = CCNN(2, 5, data_dim, size, hidden_channels=8, num_blocks=2, conv_options=options).double()
    direct_net = copy.deepcopy(fft_net)
    for module in direct_net.modules():
        if hasattr(module, "use_fft"):
            module.use_fft = False
    return fft_net, direct_net


@pytest.mark.parametrize(("data_dim", "size", "causal"), [(1, (37,), True), (1, (40,), False), (2, (9, 12), False)])
def test_fft_and_direct_networks_agree_in_outputs_and_gradients(data_dim, size, causal):
    fft_net, direct_net = twin_networks(data_dim, size, causal)
    x = torch.randn(3, 2, *size, dtype=torch.float64)
    out_fft, out_direct = fft_net(x), direct_net(x)
    torch.testing.assert_close(out_fft, out_direct, rtol=1e-9, atol=1e-10)
    out_fft.square().sum().backward()
    out_direct.square().sum().backward()
    for (name, p), q in zip(fft_net.named_parameters(), direct_net.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-7, atol=1e-10, msg=name)


@pytest.mark.slow
def test_compiled_network_matches_eager_outputs_and_gradients():
    torch.manual_seed(0)
    net = CCNN(1, 4, 1, (24,), hidden_channels=8, num_blocks=1, conv_options={"kernel_options": {"hidden_channels": 8}})
    compiled = torch.compile(copy.deepcopy(net))
    x = torch.randn(2, 1, 24)
    eager_out, compiled_out = net(x), compiled(x)
    torch.testing.assert_close(compiled_out, eager_out, rtol=1e-4, atol=1e-5)
    eager_out.sum().backward()
    compiled_out.sum().backward()
    for p, q in zip(net.parameters(), compiled.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-3, atol=1e-5)


def test_network_benchmark_builds_presets_and_reports_positive_timings():
    module, meta = build_case("smnist", "ccnn_4_140")
    assert sum(p.numel() for p in module.parameters()) == 198_769
    x, y = random_batch(meta, 2, torch.device("cpu"))
    assert x.shape == (2, 1, 784) and y.shape == (2,)
    table = run(
        torch.device("cpu"),
        batch=2,
        cases=[("smnist", "ccnn_4_140")],
        repeats=NetworkRepeats(target_s=0.1, min_repeats=1, max_repeats=1),
    )
    (row,) = table.rows
    assert row[0] == "smnist/ccnn_4_140" and row[2] == 198_769 and row[3] > 0 and row[4] > 0
    assert row[6] == "~400"


def test_after_refresh_a_forward_pass_reads_no_device_values(monkeypatch):
    from ckconv.mask import refresh_mask_widths

    torch.manual_seed(0)
    net = CCNN(
        1,
        4,
        1,
        (64,),
        hidden_channels=8,
        num_blocks=2,
        conv_options={"kernel_options": {"hidden_channels": 8}, "causal": True, "mask_options": {"init_value": 0.1}},
    )
    x = torch.randn(2, 1, 64)
    expected = net(x)
    refresh_mask_widths(net)

    def no_host_reads(*args, **kwargs):
        raise AssertionError("a device value was read during the forward pass")

    with monkeypatch.context() as patch:
        patch.setattr(torch.Tensor, "cpu", no_host_reads)
        patch.setattr(torch.Tensor, "tolist", no_host_reads)
        assert torch.equal(net(x), expected)


def test_a_changed_mask_width_is_seen_without_a_refresh():
    torch.manual_seed(0)
    net = CCNN(
        1,
        4,
        1,
        (64,),
        hidden_channels=8,
        num_blocks=1,
        conv_options={"kernel_options": {"hidden_channels": 8}, "causal": True, "mask_options": {"init_value": 0.1}},
    )
    layer = net.conv1
    threshold = layer.mask.threshold
    assert layer.sample_kernel((64,)).shape[-1] == cropped_size(64, 1.0, 0.1, threshold, True)
    with torch.no_grad():
        layer.mask.width.mul_(3.0)  # bumps the version counter: the host copy is stale and is read again
    wider = cropped_size(64, 1.0, layer.mask.width.item(), threshold, True)
    assert wider > cropped_size(64, 1.0, 0.1, threshold, True)
    assert layer.sample_kernel((64,)).shape[-1] == wider


class CropProbe(torch.nn.Module):
    """Exposes a mask's crop of a 200-tap causal kernel as a forward, so functional_call can swap its width in."""

    def __init__(self) -> None:
        super().__init__()
        self.mask = GaussianMask(1, init_value=0.1, causal=True)

    def forward(self) -> tuple[int, ...]:
        return self.mask.cropped_kernel_size((200,))


def test_mask_host_copy_follows_fresh_width_tensors_from_functional_call():
    probe = CropProbe()
    with torch.no_grad():
        for width in torch.linspace(0.05, 0.8, 60).tolist():
            # A fresh tensor each time: a freed tensor's id is often reused, which must not pass for its old values.
            crop = torch.func.functional_call(probe, {"mask.width": torch.tensor([width])}, args=())
            assert crop == (cropped_size(200, 1.0, width, probe.mask.threshold, True),), width


def test_a_write_through_data_is_seen_after_refresh_mask_widths():
    # `.data` writes bump no version counter, so the host copy cannot notice them by itself (the ckconv docstring
    # says so); refresh_mask_widths, which training calls before every batch, reads the widths whatever happened.
    from ckconv.mask import refresh_mask_widths

    probe = CropProbe()
    assert probe() == (cropped_size(200, 1.0, 0.1, probe.mask.threshold, True),)
    probe.mask.width.data.fill_(0.4)
    assert probe() == (cropped_size(200, 1.0, 0.1, probe.mask.threshold, True),)  # stale, as documented
    refresh_mask_widths(probe)
    assert probe() == (cropped_size(200, 1.0, 0.4, probe.mask.threshold, True),)


def test_a_fused_optimizer_step_is_seen_after_refresh_mask_widths():
    # Fused optimizer kernels bump no version counter either (README, ckconv docstring): the crop keeps the widths of
    # before the step until refresh_mask_widths reads them, after which the layer equals a fresh copy of its weights.
    from ckconv import SeparableFlexConv
    from ckconv.mask import refresh_mask_widths

    torch.manual_seed(0)
    options = dict(kernel_size="same", input_size=60, causal=True, mask_options={"init_value": 0.1})
    layer, x = SeparableFlexConv(2, 2, 1, **options), torch.randn(1, 2, 60)
    layer(x).sum().backward()
    torch.optim.Adam(layer.parameters(), lr=0.05, fused=True).step()
    fresh = SeparableFlexConv(2, 2, 1, **options)
    fresh.load_state_dict(layer.state_dict())
    assert layer.sample_kernel((60,)).shape[-1] < fresh.sample_kernel((60,)).shape[-1]  # stale, as documented
    refresh_mask_widths(layer)
    assert torch.equal(layer.sample_kernel((60,)), fresh.sample_kernel((60,)))
    assert torch.equal(layer(x), fresh(x))
