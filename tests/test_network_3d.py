"""The 3D CCNN of the presets: pinned sizes, centred kernels with one mask width per axis, FFT convolutions that equal
a float64 direct-convolution reference for fixed weights, kernels resampled for 64^3 volumes, and the 3D bench."""

from __future__ import annotations

import functools

import pytest
import torch

from bench.network import Volumes, run_volumes
from ckconv import CONV_TYPES
from ckconv.functional import prefers_fft
from ckconv.hints import count_parameters
from training.build import build_datamodule, build_network
from training.config.checks import check_config
from training.config.compose import compose
from training.run.plan import check_against_data

PRESETS_3D = ("organmnist3d/ccnn_4_140", "organmnist3d/ccnn_6_380", "blobs3d/ccnn_2_16")
# Parameters of each 3D preset's network, from build_network on the dataset's metadata (no data read).
PARAMETERS = {
    "organmnist3d/ccnn_4_140": 202_760,
    "organmnist3d/ccnn_6_380": 2_004_238,
    "blobs3d/ccnn_2_16": 6_355,
}
# The other MedMNIST 3D sets differ only in the readout, 140 -> logits (one logit for two classes).
LOGITS = {"NoduleMNIST3D": 1, "AdrenalMNIST3D": 1, "FractureMNIST3D": 3, "VesselMNIST3D": 1, "SynapseMNIST3D": 1}
SHRINK = ["net.no_hidden=8", "kernel.no_hidden=8"]


@functools.cache
def preset_config(preset: str, *overrides: str):
    cfg = compose([f"experiment={preset}", *overrides])
    check_config(cfg)
    return cfg


def network(preset: str, *overrides: str, seed: int = 0) -> torch.nn.Module:
    cfg = preset_config(preset, *overrides)
    meta = build_datamodule(cfg).meta
    check_against_data(cfg, meta)
    torch.manual_seed(seed)
    return build_network(cfg, meta)


def conv_layers(net: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in net.modules() if isinstance(m, tuple(CONV_TYPES.values()))]


def kernel_shape(layer: torch.nn.Module, size: tuple[int, ...]) -> tuple[int, ...]:
    with torch.no_grad():
        return tuple(layer.kernel_for(torch.empty(1, layer.in_channels, *size)).shape[2:])


def randomise_norms(net: torch.nn.Module, seed: int) -> None:
    """Give every BatchNorm running statistics and an affine map away from the identity, so that eval mode tests
    them too."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                n = module.num_features
                module.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
                module.weight.copy_(1.0 + 0.2 * torch.randn(n, generator=generator))
                module.bias.copy_(0.1 * torch.randn(n, generator=generator))


# --------------------------------------------------------------------------------------------------- the presets
@pytest.mark.parametrize("preset", PRESETS_3D)
def test_3d_preset_builds_a_model_of_the_pinned_size_from_metadata(preset):
    net = network(preset)
    assert count_parameters(net.parameters()) == PARAMETERS[preset]


@pytest.mark.parametrize(("name", "logits"), LOGITS.items())
def test_the_other_medmnist_sets_change_only_the_readout(name, logits):
    net = network("organmnist3d/ccnn_4_140", f"dataset.name={name}")
    assert count_parameters(net.parameters()) == PARAMETERS["organmnist3d/ccnn_4_140"] - (11 - logits) * (140 + 1)


def test_3d_presets_use_centred_fft_convolutions_with_a_mask_width_per_axis():
    for preset in PRESETS_3D:
        cfg = preset_config(preset)
        assert cfg.conv.type == "SeparableFlexConv" and cfg.conv.causal is False and cfg.conv.use_fft == "auto"
        net = network(preset)
        size = tuple(build_datamodule(cfg).meta.size)
        assert len(size) == 3
        for layer in conv_layers(net):
            assert layer.data_dim == 3 and layer.mask.width.shape == (3,)
            taps = kernel_shape(layer, size)
            assert all(k % 2 == 1 for k in taps) or taps == size  # a middle tap at position 0, or "same"
            assert prefers_fft(taps)  # "auto" takes the FFT path for every layer of these presets
    organ = network("organmnist3d/ccnn_4_140")
    assert kernel_shape(conv_layers(organ)[0], (28, 28, 28)) == (29, 29, 29)  # the mask (0.75) crops nothing
    wide = network("organmnist3d/ccnn_6_380")
    assert kernel_shape(conv_layers(wide)[0], (28, 28, 28)) == (5, 5, 5)  # mask 0.075: radius 0.16 on a 2/28 step


# -------------------------------------------------------------------------- FFT against a float64 direct reference
def fft_and_reference(preset: str, overrides: tuple[str, ...], batch: int, seed: int):
    """The preset's network on the FFT path (float32) and the same weights on the direct path in float64."""
    fft = network(preset, *overrides, "conv.use_fft=True", seed=seed)
    direct = network(preset, *overrides, "conv.use_fft=False", seed=seed)
    randomise_norms(fft, seed)
    direct.load_state_dict(fft.state_dict())
    size = build_datamodule(preset_config(preset, *overrides)).meta.size
    x = torch.randn(batch, 1, *size, generator=torch.Generator().manual_seed(seed))
    return fft.eval(), direct.double().eval(), x


def test_organmnist3d_network_equals_a_float64_direct_reference_with_a_mask_width_per_axis():
    fft, direct, x = fft_and_reference("organmnist3d/ccnn_4_140", ("net.no_hidden=4", "kernel.no_hidden=8"), 1, seed=1)
    with torch.no_grad():
        for layer in [*conv_layers(fft), *conv_layers(direct)]:  # one width per axis: 3, 5 and 13 taps of 29
            layer.mask.width.copy_(torch.tensor([0.04, 0.075, 0.2]))
        assert {kernel_shape(layer, (28, 28, 28)) for layer in conv_layers(fft)} == {(3, 5, 13)}
        reference = direct(x.double())
        fft64 = fft.double()(x.double())
        fft32 = fft.float()(x)
    assert reference.shape == (1, 11)
    scale = reference.abs().max()
    assert scale > 0.1
    torch.testing.assert_close(fft64, reference, rtol=0, atol=1e-10 * scale)  # the same function, exactly
    torch.testing.assert_close(fft32.double(), reference, rtol=0, atol=1e-4 * scale)  # float32 rounding only


def test_blobs3d_network_with_volume_wide_kernels_equals_a_float64_direct_reference():
    fft, direct, x = fft_and_reference("blobs3d/ccnn_2_16", ("net.no_hidden=8",), batch=1, seed=2)
    assert {kernel_shape(layer, (16, 16, 16)) for layer in conv_layers(fft)} == {(16, 16, 16)}  # 4096 taps
    with torch.no_grad():
        reference = direct(x.double())
        fft64 = fft.double()(x.double())
        fft32 = fft.float()(x)
        # The comparison can fail: one kernel net's output bias moved by 1e-3 moves the logits beyond tolerance.
        conv_layers(fft)[1].kernel_net.output_layer.bias.add_(1e-3)
        perturbed = fft(x)
    scale = reference.abs().max()
    assert reference.shape == (1, 8) and scale > 0.1
    torch.testing.assert_close(fft64, reference, rtol=0, atol=1e-10 * scale)
    torch.testing.assert_close(fft32.double(), reference, rtol=0, atol=1e-4 * scale)
    assert (perturbed.double() - reference).abs().max() > 1e-2 * scale


# ------------------------------------------------------------------------------------------------ other resolutions
def test_a_network_built_for_28_cubed_runs_on_64_cubed_volumes_with_resampled_kernels():
    # Train at 28^3, evaluate at 64^3: each kernel keeps its extent with proportionally more taps (29 -> 65, the
    # middle tap kept), the mask crops the same fraction, and the sampled kernel is scaled by the grid-step ratio.
    net = network("organmnist3d/ccnn_4_140", "net.no_hidden=8", "kernel.no_hidden=8", "net.no_blocks=1").eval()
    layer = conv_layers(net)[0]
    assert layer.kernel_size_for((64, 64, 64)) == (65, 65, 65)
    assert kernel_shape(layer, (64, 64, 64)) == (65, 65, 65)  # the 4,140 mask (0.75) crops nothing
    narrow = network("organmnist3d/ccnn_6_380", "net.no_hidden=8", "kernel.no_hidden=8", "net.no_blocks=1")
    assert kernel_shape(conv_layers(narrow)[0], (64, 64, 64)) == (11, 11, 11)  # radius 0.16 on a 2/64 step
    with torch.no_grad():
        coarse, fine = layer.sample_kernel((28, 28, 28)), layer.sample_kernel((64, 64, 64))
        # Position (0.5, -0.5, 1) is a tap of both grids (indices 21, 7, 28 of 29 and 48, 16, 64 of 65): the same
        # kernel-net value there, scaled by the ratio of the grid steps, (28 / 64)^3, so that sums over taps
        # approximate the same integral at both resolutions.
        torch.testing.assert_close(fine[..., 48, 16, 64], coarse[..., 21, 7, 28] * (28 / 64) ** 3, rtol=1e-3, atol=0)
        logits = net(torch.randn(1, 1, 64, 64, 64, generator=torch.Generator().manual_seed(0)))
    assert logits.shape == (1, 11) and torch.isfinite(logits).all()


# -------------------------------------------------------------------------------------------------------- bench
def test_quick_3d_bench_measures_both_paths_and_checks_the_auto_choice():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        table = run_volumes(torch.device("cpu"), Volumes.quick())
    finally:
        torch.set_num_threads(threads)
    assert table.column("taps after crop") == ["1x1x1 = 1", "5x5x5 = 125"]
    assert table.column("auto picks") == ["direct", "fft"]
    assert all(isinstance(v, float) and v > 0 for v in table.column("FFT ms"))
    direct, ratio = table.column("direct ms"), table.column("direct/FFT")
    assert isinstance(direct[0], float) and direct[0] > 0 and ratio[0] > 0
    assert (direct[1] is None) == (ratio[1] is None)  # measured, or skipped as predicted too slow
    faster = ["direct" if r is not None and r < 1 else "fft" for r in ratio]
    expected = ["yes" if f == a else "no" for f, a in zip(faster, table.column("auto picks"))]
    assert table.column("auto picked the faster") == expected
