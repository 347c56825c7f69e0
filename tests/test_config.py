"""Bad flags and impossible combinations fail before any data is read, with a message naming the flag.

The rules live in the constructors (network, layers, optimizer, data) and in training/config.py for what only the
config knows; these tests check that each reaches the user under the flag's name, whoever decides it.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

from ckconv.errors import did_you_mean
from tests.conftest import REPO, compose, main_env, main_py
from training.build import ARGUMENT_FLAGS, as_flag_error, flag_of
from training.checkpoints import CheckpointError
from training.config import NULL_DEFAULT_TYPES, ConfigError, check_known_flags, defaults, flag_names
from training.run import train


@pytest.fixture
def no_data(tmp_path):
    """A data folder that must still not exist after the failed run."""
    path = tmp_path / "never_created"
    yield path
    assert not path.exists(), "a bad config must fail before any data is touched"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.epochs=abc"], "train.epochs must be an integer, got 'abc' (str)."),
        (["optimizer.lr=fast"], "optimizer.lr must be a number, got 'fast' (str)."),
        (["conv.causal=maybe"], "conv.causal must be a boolean, got 'maybe' (str)."),
        (["comment=[1]"], "comment must be a string, got [1] (ListConfig)."),
        (
            ["dataset.name=MNIST", "conv.causal=True"],
            "conv.causal=True needs 1D data, but dataset.name=MNIST with dataset.data_type=default is 2D; use "
            "dataset.data_type=sequence or conv.causal=False.",
        ),
        (
            ["dataset.name=ImageNet"],
            "dataset.name must be one of ('MNIST1D', 'MNIST', 'CIFAR10', 'CIFAR100', 'STL10', 'SpeechCommands', ",
        ),
        (
            ["train.batch_size=10", "train.accumulate_grad_steps=3"],
            "train.batch_size=10 must be divisible by train.accumulate_grad_steps=3",
        ),
        (["conv.stride=2"], "conv.stride=2 is not supported (strided continuous convolutions are not implemented"),
        (["kernel.input_scale=2.0"], "kernel.input_scale=2.0 is not supported (the original never used it)"),
        (["hooks_enabled=True"], "hooks_enabled=True is not supported"),
        (["hooks=[grad]"], "hooks=['grad'] is not supported"),
        (["dataset.params.num_nodes=512"], "dataset.params.num_nodes=512 is not supported"),
        (["conv.type=Transformer"], "conv.type must be one of ('CKConv', 'SeparableCKConv', 'FlexConv', "),
        (["kernel.type=Fourier"], "kernel.type must be one of ('MAGNet', 'GaborNet', 'FourierNet', 'SIREN', 'MLP')"),
        (["kernel.size=-3"], "kernel.size must be a positive int or 1 positive ints, got -3."),
        (["conv.use_fft=sometimes"], "conv.use_fft must be True, False or 'auto', got 'sometimes'."),
        (["dataset.params.mfcc=True"], "dataset.params.mfcc=True is not used by dataset.name=MNIST1D; remove it."),
        (["dataset.name=STL10", "dataset.params.resolution=big"], "dataset.params.resolution must be int, got 'big'"),
        (["net.data_dim=2"], "net.data_dim=2 but dataset.name=MNIST1D (data_type=default) is 1D"),
        (["train.do=False"], "train.do=False evaluates a checkpoint: also set pretrained.load=True"),
        (["pretrained.load=True"], "pretrained.load=True needs pretrained.filename=<path of a .ckpt file>."),
        (["pretrained.filename=a.ckpt"], "pretrained.filename=a.ckpt is only read with pretrained.load=True"),
        (["train.resume=a.ckpt", "train.do=False", "train.dry_run=True"], "train.resume continues training"),
        (["net.norm=GroupNorm"], "net.norm must be one of ('BatchNorm', 'LayerNorm', 'Identity'), got 'GroupNorm'."),
        (["net.nonlinearity=Swish"], "net.nonlinearity must name a torch.nn activation such as 'GELU' or 'ReLU'"),
        (["mask.threshold=1.5"], "mask.threshold must be in (0, 1) when mask.dynamic_cropping is on, got 1.5."),
        (["mask.init_value=0"], "mask.init_value must be a finite number > 0, got 0."),
        (["net.no_hidden=0"], "net.no_hidden must be a positive integer (>= 1), got 0."),
        (["kernel.no_layers=0"], "kernel.no_layers must be a positive integer (>= 1), got 0."),
        (["kernel.omega_0=-1"], "kernel.omega_0 must be a finite number > 0, got -1."),
        (["net.dropout=1.5"], "net.dropout must be a probability in [0, 1), got 1.5."),
        (["net.downsampling=[7]"], "net.downsampling must hold block indices in [0, 4), got [7] among them."),
        (["train.track_grad_norm=-2"], "train.track_grad_norm must be a p > 0 (or null: off), got -2."),
        (["train.track_grad_norm=0"], "train.track_grad_norm must be a p > 0 (or null: off), got 0."),
        (["train.grad_clip=-1"], "train.grad_clip must be >= 0 (0: no clipping), got -1."),
        (["train.max_epochs_no_improvement=-1"], "train.max_epochs_no_improvement must be >= 0"),
        (["train.avail_gpus=0"], "train.avail_gpus must be a positive count or -1 (all visible), got 0."),
        (
            ["train.limit_train_batches=2.5"],
            "train.limit_train_batches must be a fraction of the batches in [0.0, 1.0]",
        ),
        (["train.accumulate_grad_steps=0"], "train.accumulate_grad_steps must be positive, got 0."),
        (["seed=-1"], "seed must be in [0, 2**32 - 1], got -1."),
        (["train.ema_warmup=False"], "train.ema_warmup=False changes the weight average's decays; it needs train.ema"),
        (["~optimizer.lr"], "optimizer.lr was removed (~optimizer.lr); every flag has a value"),
        (["optimizer.name=LBFGS"], "optimizer.name='LBFGS' cannot train this model's parameter groups: LBFGS doesn't"),
        (["dataset.name=MNIST", "dataset.params.difficulty=hard"], "dataset.params.difficulty='hard' is not used by"),
        (["dataset.name=MNIST", "dataset.params.difficulty=easy"], "dataset.params.difficulty='easy' is not used by"),
        (
            ["conv.type=Conv", "kernel.size=3", "kernel.bandlimit=1.0"],
            "kernel.bandlimit=1.0 is not used by conv.type=Conv (free taps: no kernel network, no mask); leave it at "
            "its default None.",
        ),
        (
            ["conv.type=Conv", "kernel.size=3", "kernel.omega_0=10"],
            "kernel.omega_0=10 is not used by conv.type=Conv (free taps: no kernel network, no mask)",
        ),
        (
            ["conv.type=SeparableCKConv", "mask.init_value=0.5"],
            "mask.init_value=0.5 is not used by conv.type=SeparableCKConv (no mask; FlexConv types have one); leave "
            "it at its default 0.2.",
        ),
        (
            ["kernel.norm=LayerNorm"],
            "kernel.norm='LayerNorm' is not used by kernel.type=MAGNet (MLP kernels only); leave it at its default "
            "'Identity'.",
        ),
        (
            ["net.embedding=float"],
            "net.embedding='float' is not used by dataset.name=MNIST1D (no token ids); leave it at its default "
            "'learned'.",
        ),
        (
            ["scheduler.factor=0.5"],
            "scheduler.factor=0.5 is not used by scheduler.name='cosine' (only multistep and exponential and plateau "
            "use it); leave it at its default 0.1.",
        ),
        (["scheduler.name=none"], "scheduler.name must be one of (None, '', 'constant', 'cosine', "),
        (
            ["conv.type=FlexConv", "kernel.init_spatial_value=2"],
            "kernel.init_spatial_value=2 is not used by conv.type=FlexConv (its kernels start from mask.init_value)",
        ),
    ],
)
def test_bad_flags_fail_before_loading_data_and_name_the_flag(overrides, message, no_data):
    with pytest.raises(ConfigError) as raised:
        train(compose([*overrides, f"dataset.data_dir={no_data}"]))
    assert str(raised.value).startswith(message)


def test_flags_that_cfg_config_yaml_does_not_define_are_refused_with_a_suggestion():
    with pytest.raises(ConfigError, match=re.escape("optimizer.lrr is not a flag (did you mean optimizer.lr?)")):
        check_known_flags(compose(["+optimizer.lrr=0.1"]))
    with pytest.raises(ConfigError, match=re.escape("net.foo is not a flag (did you mean net.norm?)")):
        check_known_flags(compose(["+net.foo=1"]))
    # A flag of the namespace the user typed is the likelier intent than a closer one of another namespace.
    with pytest.raises(ConfigError, match=re.escape("test.batchsize is not a flag (did you mean test.batch_size_mu")):
        check_known_flags(compose(["+test.batchsize=2"]))
    check_known_flags(compose([]))  # the defaults themselves pass


@pytest.mark.parametrize(
    ("flag", "hint"),
    [
        ("dataset.name=mnist", "got 'mnist' (did you mean MNIST?)."),  # the same name in another case first
        ("dataset.name=SpeechCommand", "(did you mean SpeechCommands?)."),
        ("kernel.type=magnet", "(did you mean MAGNet?)."),
        ("conv.type=flexconv", "(did you mean FlexConv?)."),
        ("net.norm=batchnorm", "(did you mean BatchNorm?)."),
        ("optimizer.name=adam", "got 'adam' (did you mean Adam?)."),
        ("scheduler.name=Cosine", "(did you mean cosine?)."),
        ("dataset.name=ImageNet", "got 'ImageNet'."),  # nothing close: no guess
    ],
)
def test_a_choice_in_the_wrong_case_or_misspelt_is_refused_with_the_intended_one(flag, hint, tmp_path):
    result = main_py(flag, "train.dry_run=True", cwd=tmp_path)
    assert result.returncode == 2
    [line] = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith(f"error: {flag.split('=')[0]}") and line.endswith(hint), line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flag", ["net.type=resnet", "optimzer.lr=0.1", "train.epochs=abc"])
def test_a_flag_refused_by_the_config_checks_is_reported_without_loading_torch(flag, tmp_path):
    # Loading torch takes seconds: a typo is reported in a fraction of one (a hint once imported ckconv, and torch).
    probe = (
        "import atexit, runpy, sys; atexit.register(lambda: print('torch loaded:', 'torch' in sys.modules)); "
        "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    command = [sys.executable, "-c", probe, str(REPO / "main.py"), flag]
    result = subprocess.run(command, cwd=tmp_path, env=main_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.startswith("error: "), result.stderr[-2000:]
    assert result.stdout.splitlines()[-1] == "torch loaded: False"


def test_did_you_mean_prefers_the_same_name_in_another_case_and_guesses_only_when_close():
    assert did_you_mean("cifar10", ("CIFAR100", "CIFAR10")) == " (did you mean CIFAR10?)"
    assert did_you_mean("Dropout1", ("Dropout", "Dropout1d")) == " (did you mean Dropout1d?)"
    assert did_you_mean("ImageNet", ("MNIST", "CIFAR10")) == ""
    assert did_you_mean(None, ("", None, "cosine")) == did_you_mean(0, ("0.0",)) == ""  # not names: no guess


def test_every_flag_with_a_null_default_has_a_declared_type():
    reference = defaults()
    nulls = {
        name
        for name in flag_names(reference)
        if OmegaConf.select(reference, name) is None and not name.startswith("dataset.params.")
    }
    assert nulls == set(NULL_DEFAULT_TYPES) - {"dataset.params.num_nodes"}


def test_every_constructor_argument_maps_to_a_flag_that_exists():
    flags = set(flag_names(defaults()))
    assert {flag_of(argument) for argument in ARGUMENT_FLAGS} <= flags
    assert flag_of("optimizer.lr") == "optimizer.lr" and flag_of("in_channels") is None


def test_a_constructor_error_is_reworded_under_the_flag_it_came_from():
    from ckconv.errors import InvalidArgument

    error = as_flag_error(InvalidArgument("kernel_omega_0", "kernel_omega_0 must be positive, got -1."))
    assert str(error) == "kernel.omega_0 must be positive, got -1."
    error = as_flag_error(InvalidArgument("optimizer.lr", "optimizer.lr must be positive, got 0."))
    assert str(error) == "optimizer.lr must be positive, got 0."
    assert str(as_flag_error(ValueError("something else"))) == "something else"
    error = as_flag_error(InvalidArgument("val_size", "val_size must be positive."), "d: ", dataset_options=True)
    assert str(error) == "d: dataset.params.val_size must be positive."
    error = as_flag_error(InvalidArgument("num_classes", "num_classes must be at least 2, got 1."), "dataset.name=X: ")
    assert str(error) == "dataset.name=X: num_classes must be at least 2, got 1."


def test_a_checkpoint_without_a_stored_config_is_still_refused_by_its_shapes(tiny, tmp_path):
    trained = train(compose(tiny))
    checkpoint = torch.load(trained["best_checkpoint"], weights_only=False)
    del checkpoint["ccnn_config"]  # written by other code: only the tensors can be compared
    foreign = tmp_path / "foreign.ckpt"
    torch.save(checkpoint, foreign)
    load = ["net.no_hidden=12", "train.do=False", "pretrained.load=True", f"pretrained.filename={foreign}"]
    with pytest.raises(CheckpointError) as raised:
        train(compose([*tiny, *load, f"train.output_dir={tmp_path / 'eval'}"]))
    assert str(raised.value).startswith(f"checkpoint {foreign} is for a different architecture: ")
    assert "shape mismatches (e.g. net." in str(raised.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is truncated or not a PyTorch checkpoint (EOFError: Ran out of input)."),
        (b"garbage" * 10, "is truncated or not a PyTorch checkpoint (UnpicklingError: "),
        (None, "has no 'state_dict': it was not written by this project's trainer."),
    ],
)
def test_truncated_or_foreign_checkpoints_are_refused_naming_the_file(tiny, tmp_path, content, message):
    path = tmp_path / "model.ckpt"
    if content is None:
        torch.save({"weights": torch.zeros(3)}, path)
    else:
        path.write_bytes(content)
    for flag in ("pretrained.filename", "train.resume"):
        extra = ["train.do=False", "pretrained.load=True"] if flag == "pretrained.filename" else []
        with pytest.raises(CheckpointError) as raised:
            train(compose([*tiny, *extra, f"{flag}={path}"]))
        assert str(raised.value).startswith(f"checkpoint {path} {message}")


def test_missing_checkpoint_names_the_path(tiny, tmp_path):
    missing = tmp_path / "nothing.ckpt"
    with pytest.raises(CheckpointError) as raised:
        train(compose([*tiny, "train.do=False", "pretrained.load=True", f"pretrained.filename={missing}"]))
    assert str(raised.value) == f"checkpoint {missing} does not exist (pass the path of a .ckpt file)."


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.53, 0.7, 0.9, 0.99])
def test_a_checkpoint_cut_anywhere_is_refused_as_truncated(tmp_path, fraction):
    # Cut inside a tensor record, torch's zip reader fails with OSError (Errno 22), which escaped as a traceback.
    from training.checkpoints import read_checkpoint

    shipped = REPO / "pretrained" / "mnist1d_ccnn" / "model.ckpt"
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(shipped.read_bytes()[: int(fraction * shipped.stat().st_size)])
    with pytest.raises(CheckpointError, match=rf"^checkpoint {cut} is truncated or not a PyTorch checkpoint \("):
        read_checkpoint(cut)


def test_a_checkpoint_whose_state_dict_is_not_a_mapping_is_refused(tmp_path):
    from training.checkpoints import read_checkpoint

    path = tmp_path / "odd.ckpt"
    torch.save({"state_dict": 5}, path)
    with pytest.raises(CheckpointError, match="has no 'state_dict': it was not written by this project's trainer"):
        read_checkpoint(path)
