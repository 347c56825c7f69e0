"""Datasets at other resolutions: MNIST-1D at other lengths (the same signals), images at other sides (torchvision's
antialiased resize), Speech Commands at other sample rates (torchaudio's resample), and what each dataset says when
its model cannot be evaluated at another resolution."""

from __future__ import annotations

import inspect

import pytest
import torch
from torchvision.transforms import v2

from argcheck import InvalidArgument
from datamodules import DATAMODULES, datamodule_class
from datamodules.cache import cache_path
from datamodules.cifar import CIFAR10DataModule
from datamodules.mnist import MNISTDataModule
from datamodules.mnist1d import MNIST1DDataModule, generate_mnist1d
from datamodules.pathfinder import PathFinderDataModule
from datamodules.speech_commands import SpeechCommandsDataModule
from datamodules.stl10 import STL10DataModule
from tests.fixtures import sequence_files as sf
from tests.fixtures import vision_files as vf


def standardised(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean()) / x.std()


# ---------------------------------------------------------------------------------------------- every dataset
@pytest.mark.parametrize("name", sorted(DATAMODULES))
def test_a_resolution_option_is_an_integer_argument_of_the_datamodule(name):
    cls = datamodule_class(name)
    if cls.resolution_option is None:
        return
    parameter = inspect.signature(cls.__init__).parameters[cls.resolution_option]
    assert isinstance(parameter.default, int)  # what a null dataset.params.<option> means, compared by checkpoints


@pytest.mark.parametrize("name", sorted(DATAMODULES))
@pytest.mark.parametrize("value", [0, -8, True, 32.0])
def test_a_resolution_that_is_no_positive_integer_is_refused_naming_the_option(name, value, tmp_path):
    cls = datamodule_class(name)
    if cls.resolution_option is None:
        return
    with pytest.raises(InvalidArgument) as refused:
        cls(data_dir=tmp_path, **{cls.resolution_option: value})
    assert refused.value.argument == cls.resolution_option
    assert list(tmp_path.iterdir()) == []  # refused before anything is read or written


def test_an_unknown_dataset_name_is_refused_naming_the_argument():
    with pytest.raises(InvalidArgument) as refused:
        datamodule_class("mnist1d")
    assert refused.value.argument == "name" and "MNIST1D" in refused.value.message  # the likely intended name


def test_datasets_without_a_resolution_say_so():
    assert {n for n in DATAMODULES if datamodule_class(n).resolution_option is None} == {"ListOps", "IMDB", "AAN"}
    message = datamodule_class("ListOps")().resolution_refusal()
    assert message == "ListOps has no resolution to change (no image side, sequence length or sample rate)"


# ---------------------------------------------------------------------------------------------- MNIST-1D
def test_mnist1d_at_another_length_samples_the_same_signals():
    """The generator interpolates one fixed 72-point signal per example onto ``linspace(0, 1, L)``: at L = 157 =
    39 * 4 + 1, every 4th sample is a sample of L = 40, exactly (after the generator's standardisation, which is
    per length). At L = 160 the grids do not nest: the length-160 signals linearly interpolated at the 40 positions
    differ from the length-40 ones by 0.0066 on average and at most 0.30 (measured over the 5000 standard examples;
    the signals have unit variance), the error of interpolating between samples of a signal with kinks."""
    forty, fine, finer = (generate_mnist1d(500, seq_length=n) for n in (40, 157, 160))
    assert torch.equal(forty["y"], fine["y"]) and torch.equal(forty["y_test"], finer["y_test"])
    both = {n: torch.cat([d["x"], d["x_test"]]).double() for n, d in ((40, forty), (157, fine), (160, finer))}
    torch.testing.assert_close(standardised(both[157][:, ::4]), standardised(both[40]), rtol=0, atol=2e-5)
    grid = torch.linspace(0, 1, 160, dtype=torch.float64)
    positions = torch.linspace(0, 1, 40, dtype=torch.float64)
    right = torch.searchsorted(grid, positions).clamp(1, 159)
    weight = (positions - grid[right - 1]) / (grid[right] - grid[right - 1])
    interpolated = both[160][:, right - 1] * (1 - weight) + both[160][:, right] * weight
    difference = (standardised(interpolated) - standardised(both[40])).abs()
    assert difference.mean() < 0.02 and difference.max() < 0.6
    assert (standardised(both[160][:, ::4]) - standardised(both[40])).abs().mean() > 0.1  # decimating 160 does not


def test_mnist1d_length_sets_the_shape_and_keeps_the_standard_cache_file(tmp_path):
    default = MNIST1DDataModule(num_samples=200, val_size=20, data_dir=tmp_path, num_workers=0)
    longer = MNIST1DDataModule(num_samples=200, val_size=20, seq_length=80, data_dir=tmp_path, num_workers=0)
    assert default.meta.size == (40,) and longer.meta.size == (80,)
    for dm in (default, longer):
        dm.prepare_data()
        dm.setup()
    assert longer.test_set[0][0].shape == (1, 80) and default.test_set[0][0].shape == (1, 40)
    assert torch.equal(longer.test_set.tensors[1], default.test_set.tensors[1])
    # The standard length's file has the key it had before lengths existed; other lengths have their own.
    assert cache_path(tmp_path / "MNIST1D", "mnist1d", {"num_samples": 200, "data_seed": 42}).is_file()
    assert len(list((tmp_path / "MNIST1D").glob("mnist1d-*.pt"))) == 2


@pytest.mark.parametrize("value", [1, 0, True])
def test_mnist1d_length_below_two_is_refused_by_its_flag(value):
    with pytest.raises(InvalidArgument) as refused:
        MNIST1DDataModule(seq_length=value)  # an integer >= 2
    assert refused.value.argument == "seq_length"  # the builder names the flag (dataset.params.seq_length)


# ---------------------------------------------------------------------------------------------- images
def test_mnist_at_another_side_is_torchvision_antialiased_resize_of_the_stored_images(tmp_path):
    written = vf.write_mnist(tmp_path, n_train=20, n_test=6)
    dm = MNISTDataModule(tmp_path, num_workers=0, download=False, val_size=5, resolution=14)
    dm.setup()
    assert dm.meta.size == (14, 14)
    x, _ = dm.test_set[2]
    image = torch.from_numpy(written.test_images[2]).float() / 255.0  # (1, 28, 28)
    expected = v2.Resize((14, 14), interpolation=v2.InterpolationMode.BILINEAR, antialias=True)(image)
    torch.testing.assert_close(x, (expected - 0.1307) / 0.3081, rtol=0, atol=1e-6)
    # Antialiased: a 2x downsampling averages neighbours rather than picking every other pixel.
    assert not torch.allclose(x, (image[:, ::2, ::2] - 0.1307) / 0.3081, atol=1e-3)


def test_cifar_at_twice_the_side_keeps_the_normalisation(tmp_path):
    vf.write_cifar10(tmp_path, n_per_batch=2, n_test=4)
    dm = CIFAR10DataModule(tmp_path, num_workers=0, download=False, val_size=2, resolution=64)
    native = CIFAR10DataModule(tmp_path, num_workers=0, download=False, val_size=2)
    dm.setup()
    native.setup()
    x, x_native = dm.test_set[0][0], native.test_set[0][0]
    assert x.shape == (3, 64, 64) and dm.meta.size == (64, 64)
    # Per-channel means agree up to the bilinear interpolation: the same map from pixel values to inputs.
    torch.testing.assert_close(x.mean(dim=(1, 2)), x_native.mean(dim=(1, 2)), rtol=0, atol=0.05)


@pytest.mark.parametrize(("cls", "stored"), [(MNISTDataModule, 28), (CIFAR10DataModule, 32), (STL10DataModule, 96)])
def test_flattened_images_keep_their_stored_side(cls, stored):
    with pytest.raises(InvalidArgument) as refused:
        cls(data_type="sequence", resolution=16)
    assert refused.value.argument == "resolution" and str(stored) in refused.value.message
    sequence = cls(data_type="sequence")
    assert sequence.meta.size == (stored * stored,)
    assert "flattened to sequences (data_type='sequence') do not keep the image's geometry" in (
        sequence.resolution_refusal() or ""
    )
    assert cls().resolution_refusal() is None


@pytest.mark.parametrize("value", [0, -32, True])
def test_a_side_that_is_no_positive_integer_is_refused_by_its_flag(value):
    with pytest.raises(InvalidArgument) as refused:
        CIFAR10DataModule(resolution=value)
    assert refused.value.argument == "resolution"


def test_pathfinder_sequences_cannot_change_resolution_but_select_their_native_one():
    assert PathFinderDataModule(data_type="sequence", resolution=128).meta.size == (128 * 128,)  # Path-X
    assert "do not keep the image's geometry" in (PathFinderDataModule(data_type="sequence").resolution_refusal() or "")
    assert PathFinderDataModule().resolution_refusal() is None


# ---------------------------------------------------------------------------------------------- Speech Commands
def test_speech_commands_at_another_rate_is_torchaudio_resample_of_the_standardised_clips(tmp_path):
    from torchaudio.functional import resample

    sf.write_speech_commands(tmp_path, n_per_word=3)
    native = SpeechCommandsDataModule(tmp_path, num_workers=0, download=False)
    half = SpeechCommandsDataModule(tmp_path, num_workers=0, download=False, sample_rate=8000)
    native.setup()
    half.setup()
    assert half.meta.size == (8000,)
    for split in ("train_set", "test_set"):
        x, x16 = getattr(half, split).tensors[0], getattr(native, split).tensors[0]
        assert x.shape == (len(x16), 1, 8000)
        torch.testing.assert_close(x, resample(x16, 16000, 8000), rtol=0, atol=0)
        assert torch.equal(getattr(half, split).tensors[1], getattr(native, split).tensors[1])
    assert torch.equal(half.mean, native.mean) and torch.equal(half.std, native.std)  # the 16 kHz statistics
    # The 16 kHz cache keeps its key; the 8 kHz data has a file of its own.
    assert len(list((tmp_path / "cache").glob("speech_commands-*.pt"))) == 2


def test_speech_commands_mfcc_has_no_sample_rate_to_change():
    with pytest.raises(InvalidArgument) as refused:
        SpeechCommandsDataModule(mfcc=True, sample_rate=8000)
    assert refused.value.argument == "sample_rate"
    assert "MFCC features (mfcc=True) have no sample rate" in (
        SpeechCommandsDataModule(mfcc=True).resolution_refusal() or ""
    )
    with pytest.raises(InvalidArgument) as refused:
        SpeechCommandsDataModule(sample_rate=0)
    assert refused.value.argument == "sample_rate"


def test_mnist1d_below_40_is_the_standard_signal_low_passed_and_resampled(tmp_path):
    """Length 20 is the length-40 data low-passed to 20 points' Nyquist frequency and resampled there, sample by
    sample the band-limited sum over the 40 samples (both ends sampled, steps 1/39 and 1/19); not the generator's
    own 20-point signals, which are point samples (its linear interpolation folds what 20 points cannot hold)."""
    import math

    from datamodules.mnist1d import downsampled

    forty = generate_mnist1d(200, seq_length=40)
    twenty = downsampled(forty, 20)
    assert twenty["x"].shape == (160, 20) and torch.equal(twenty["y"], forty["y"])
    h0, h1 = 1 / 39, 1 / 19
    for row in (0, 77):
        signal = forty["x"][row].double().tolist()
        for j in (0, 7, 19):
            u = [(j * h1 - i * h0) / h1 for i in range(40)]
            value = sum(
                v * h0 / h1 * (1.0 if x == 0 else math.sin(math.pi * x) / (math.pi * x)) for v, x in zip(signal, u)
            )
            assert math.isclose(twenty["x"][row, j].item(), value, rel_tol=1e-4, abs_tol=1e-5)
    point_sampled = generate_mnist1d(200, seq_length=20)["x"]
    assert (standardised(point_sampled) - standardised(twenty["x"])).abs().mean() > 0.05
    module = MNIST1DDataModule(data_dir=tmp_path, num_samples=200, val_size=20, seq_length=20, num_workers=0)
    module.setup()
    x, _ = module.test_set[0]
    torch.testing.assert_close(x[0], (twenty["x_test"][0] - twenty["x"].mean()) / twenty["x"].std())
