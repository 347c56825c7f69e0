"""The GPU paths: exactness against the CPU reference, float32 FFTs under bf16 autocast, no host synchronisation inside
a forward pass, and the network benchmark on CUDA. Skipped where no CUDA device is present (CI has none)."""

from __future__ import annotations

import copy

import pytest
import torch

from bench.network import Repeats as NetworkRepeats
from bench.network import run
from ckconv.functional import direct_conv, fft_conv
from ckconv.mask import refresh_mask_widths
from models.ccnn import CCNN
from tests.test_functional import HAND_PICKED, _operands, _rel_err, reference_conv

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")


@pytest.mark.parametrize(("spatial", "kernel", "causal", "depthwise"), HAND_PICKED)
def test_fft_conv_on_the_gpu_matches_the_cpu_reference_in_float64(spatial, kernel, causal, depthwise):
    x, w, b, groups = _operands(spatial, kernel, depthwise)
    expected = reference_conv(x, w, b, causal=causal, groups=groups)
    x_gpu, w_gpu = x.to(CUDA).requires_grad_(), w.to(CUDA).requires_grad_()
    y = fft_conv(x_gpu, w_gpu, b.to(CUDA), causal=causal, groups=groups)
    assert _rel_err(y.cpu(), expected) < 1e-9

    x_cpu, w_cpu = x.clone().requires_grad_(), w.clone().requires_grad_()
    cotangent = torch.randn(expected.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    direct = direct_conv(x_cpu, w_cpu, b, causal=causal, groups=groups)
    want = torch.autograd.grad(direct, (x_cpu, w_cpu), cotangent)
    got = torch.autograd.grad(y, (x_gpu, w_gpu), cotangent.to(CUDA))
    for g, e in zip(got, want):
        assert _rel_err(g.cpu(), e) < 1e-9


def test_fft_conv_under_bf16_autocast_on_the_gpu_computes_in_float32():
    x, w, b, _ = _operands((300,), (255,), depthwise=True, dtype=torch.float32, seed=3)
    x, w, b = x.to(CUDA), w.to(CUDA), b.to(CUDA)
    x16, w16, b16 = x.bfloat16(), w.bfloat16(), b.bfloat16()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y = fft_conv(x16, w16, b16, causal=True, groups=3)
    assert y.dtype == torch.float32
    exact = fft_conv(x16.float(), w16.float(), b16.float(), causal=True, groups=3)
    assert _rel_err(y, exact) < 1e-5  # the FFT ran in float32 on the bf16-rounded operands


def _tiny_network() -> CCNN:
    torch.manual_seed(0)
    options = {
        "kernel_options": {"hidden_channels": 8},
        "causal": True,
        "mask_options": {"init_value": 0.1},
        "use_fft": True,
    }
    return CCNN(1, 4, 1, (64,), hidden_channels=8, num_blocks=2, conv_options=options)


def test_network_on_the_gpu_matches_the_cpu_in_outputs_and_gradients():
    cpu_net = _tiny_network().double()
    gpu_net = copy.deepcopy(cpu_net).to(CUDA)
    x = torch.randn(3, 1, 64, dtype=torch.float64)
    out_cpu, out_gpu = cpu_net(x), gpu_net(x.to(CUDA))
    assert _rel_err(out_gpu.cpu(), out_cpu) < 1e-9
    out_cpu.square().sum().backward()
    out_gpu.square().sum().backward()
    for (name, p), q in zip(cpu_net.named_parameters(), gpu_net.parameters()):
        assert _rel_err(q.grad.cpu(), p.grad) < 1e-7, name


def test_a_forward_pass_on_the_gpu_synchronises_with_the_host_nowhere():
    net = _tiny_network().to(CUDA).train()
    x = torch.randn(2, 1, 64, device=CUDA)
    net(x)  # first call: kernels sampled, FFT plans made
    refresh_mask_widths(net)  # what the training module does before each batch (one read for all layers)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        net(x)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_network_benchmark_reports_gpu_timings():
    table = run(
        CUDA,
        batch=2,
        cases=[("smnist", "ccnn_4_140")],
        repeats=NetworkRepeats(target_s=0.1, min_repeats=1, max_repeats=2),
    )
    (row,) = table.rows
    assert row[0] == "smnist/ccnn_4_140" and row[3] > 0 and row[5] > 0
    assert row[6] == "-"  # the original's CPU times are not printed beside GPU ones
