"""Library and model errors speak the library's language: a bad argument raises InvalidArgument naming the keyword
the caller passed (never a config flag), with a message that starts with that name."""

from __future__ import annotations

import inspect
import pickle
from collections.abc import Callable
from typing import Any

import pytest
import torch

from ckconv import CONV_TYPES, KERNEL_NETS, FlexConv, GaussianMask, PointwiseLinear, SeparableConv, SeparableFlexConv
from ckconv.errors import InvalidArgument, renamed_arguments
from ckconv.kernels import build_kernel_net
from models.blocks import BLOCKS
from models.ccnn import CCNN
from models.layers import build_activation, build_dropout, build_norm


def ccnn_call(**overrides: Any) -> Callable[[], CCNN]:
    """A call of a small valid CCNN with ``overrides``; ``conv_options`` entries are added to the small defaults."""

    def call() -> CCNN:
        kwargs = dict(overrides)
        positional = {"in_channels": 1, "num_classes": 3, "data_dim": 1, "input_size": (16,)}
        positional |= {k: kwargs.pop(k) for k in positional if k in kwargs}
        small = {"kernel_hidden_channels": 4} if CONV_TYPES.get(kwargs.get("conv_type"), FlexConv).continuous else {}
        options = {**small, **kwargs.pop("conv_options", {})}
        return CCNN(**positional, **{"hidden_channels": 4, "num_blocks": 1, **kwargs}, conv_options=options)

    return call


# (what is called, the argument the error must name). Each entry makes exactly one argument bad.
CASES: dict[str, tuple[Callable[[], Any], str]] = {
    # CCNN's own arguments
    "ccnn in_channels": (ccnn_call(in_channels=0), "in_channels"),
    "ccnn num_classes": (ccnn_call(num_classes=1), "num_classes"),
    "ccnn data_dim": (ccnn_call(data_dim=4), "data_dim"),
    "ccnn input_size": (ccnn_call(input_size=(0,)), "input_size"),
    "ccnn input_size None": (ccnn_call(input_size=None), "input_size"),
    "ccnn hidden_channels": (ccnn_call(hidden_channels=0), "hidden_channels"),
    "ccnn num_blocks": (ccnn_call(num_blocks=-1), "num_blocks"),
    "ccnn block_type": (ccnn_call(block_type="S5"), "block_type"),
    "ccnn norm": (ccnn_call(norm="GroupNorm"), "norm"),
    "ccnn nonlinearity": (ccnn_call(nonlinearity="Gelu"), "nonlinearity"),
    "ccnn nonlinearity needing arguments": (ccnn_call(nonlinearity="Linear"), "nonlinearity"),
    "ccnn dropout": (ccnn_call(dropout=1.0), "dropout"),
    "ccnn dropout_in": (ccnn_call(dropout_in=-0.1), "dropout_in"),
    "ccnn dropout_type": (ccnn_call(dropout_type="AlphaDropout"), "dropout_type"),
    "ccnn conv_type": (ccnn_call(conv_type="FlexConv2"), "conv_type"),
    "ccnn block_width_factors shape": (ccnn_call(block_width_factors=[[1.0]]), "block_width_factors"),
    "ccnn block_width_factors count": (ccnn_call(block_width_factors=[[1.0, 2]]), "block_width_factors"),
    "ccnn downsampling": (ccnn_call(downsampling=[1]), "downsampling"),
    "ccnn downsampling_size": (ccnn_call(downsampling_size=0), "downsampling_size"),
    "ccnn vocab_size": (ccnn_call(vocab_size=0), "vocab_size"),
    "ccnn embedding": (ccnn_call(vocab_size=5, embedding="onehot"), "embedding"),
    "ccnn embedding_dim": (ccnn_call(vocab_size=5, embedding_dim=-4), "embedding_dim"),
    # conv-layer options arrive through conv_options and keep their conv-layer keyword
    "ccnn kernel_size": (ccnn_call(conv_options={"kernel_size": "large"}), "kernel_size"),
    "ccnn causal": (ccnn_call(data_dim=2, input_size=(4, 4), conv_options={"causal": True}), "causal"),
    "ccnn use_fft": (ccnn_call(conv_options={"use_fft": "yes"}), "use_fft"),
    "ccnn kernel_type": (ccnn_call(conv_options={"kernel_type": "MagNet"}), "kernel_type"),
    "ccnn kernel_hidden_channels": (ccnn_call(conv_options={"kernel_hidden_channels": 0}), "kernel_hidden_channels"),
    "ccnn kernel_num_layers": (ccnn_call(conv_options={"kernel_num_layers": 0}), "kernel_num_layers"),
    "ccnn kernel_omega_0": (ccnn_call(conv_options={"kernel_omega_0": float("nan")}), "kernel_omega_0"),
    "ccnn kernel alpha": (ccnn_call(conv_options={"kernel_options": {"alpha": 0.0}}), "kernel_options.alpha"),
    "ccnn kernel norm": (
        ccnn_call(conv_options={"kernel_type": "MLP", "kernel_options": {"norm": "Nope"}}),
        "kernel_options.norm",
    ),
    "ccnn init_spatial_value": (
        ccnn_call(conv_type="CKConv", conv_options={"kernel_options": {"init_spatial_value": -1.0}}),
        "kernel_options.init_spatial_value",
    ),
    "ccnn mask_init_value": (ccnn_call(conv_options={"mask_init_value": 0.0}), "mask_init_value"),
    "ccnn mask_threshold": (ccnn_call(conv_options={"mask_threshold": 1.5}), "mask_threshold"),
    "ccnn discrete kernel_size": (ccnn_call(conv_type="Conv", conv_options={"kernel_size": 0}), "kernel_size"),
    # the layers and builders on their own
    "flexconv out_channels": (lambda: SeparableFlexConv(2, 0, input_size=8), "out_channels"),
    "flexconv kernel_omega_0": (lambda: FlexConv(1, 1, input_size=8, kernel_omega_0=-1.0), "kernel_omega_0"),
    "conv kernel_size": (lambda: SeparableConv(1, 1, 2, kernel_size=(3, 0)), "kernel_size"),
    "mask threshold": (lambda: GaussianMask(1, threshold=0.0), "threshold"),
    "mask init_value": (lambda: GaussianMask(1, init_value=float("inf")), "init_value"),
    "pointwise in_channels": (lambda: PointwiseLinear(0, 2), "in_channels"),
    "pointwise init": (lambda: PointwiseLinear(1, 2, init="xavier"), "init"),
    "kernel net name": (lambda: build_kernel_net("Gabbor", data_dim=1, out_channels=1), "name"),
    "kernel net omega_0": (lambda: KERNEL_NETS["SIREN"](data_dim=1, out_channels=1, omega_0=0.0), "omega_0"),
    "build_norm": (lambda: build_norm("batchnorm", 4, 1), "norm"),
    "build_dropout p": (lambda: build_dropout("Dropout", 1.5, 1), "dropout"),
    "build_dropout type": (lambda: build_dropout("Dropout4d", 0.1, 1), "dropout_type"),
    "build_activation": (lambda: build_activation("_Loss"), "nonlinearity"),
    "s4 block dropout": (
        lambda: BLOCKS["S4"](4, 4, lambda i, o: PointwiseLinear(i, o), 1, dropout=2.0),
        "dropout",
    ),
    "resnet block norm": (lambda: BLOCKS["default"](4, 4, lambda i, o: PointwiseLinear(i, o), 1, norm="BN"), "norm"),
    # types: a string such as "False" is truthy, a float kernel size is no size
    "flexconv causal string": (lambda: FlexConv(1, 1, input_size=8, causal="False"), "causal"),
    "flexconv bias string": (lambda: FlexConv(1, 1, input_size=8, bias="no"), "bias"),
    "flexconv chang_initialize": (lambda: FlexConv(1, 1, input_size=8, chang_initialize=1), "chang_initialize"),
    "flexconv data_dim float": (lambda: FlexConv(1, 1, 1.0, input_size=8), "data_dim"),
    "flexconv data_dim bool": (lambda: FlexConv(1, 1, True, input_size=8), "data_dim"),
    "conv kernel_size float": (lambda: SeparableConv(1, 1, 1, kernel_size=2.5), "kernel_size"),
    "conv kernel_size bool": (lambda: SeparableConv(1, 1, 1, kernel_size=True), "kernel_size"),
    "conv separable": (lambda: SeparableConv(1, 1, 1, kernel_size=3, separable="yes"), "separable"),
    "mask threshold None": (lambda: GaussianMask(1, threshold=None), "threshold"),
    "mask learn_mean": (lambda: GaussianMask(1, learn_mean="yes"), "learn_mean"),
    "kernel_options not a mapping": (lambda: FlexConv(1, 1, input_size=8, kernel_options="alpha"), "kernel_options"),
    "kernel_options unknown": (lambda: FlexConv(1, 1, input_size=8, kernel_options={"foo": 1}), "kernel_options.foo"),
    "kernel_options set by the layer": (
        lambda: FlexConv(1, 1, input_size=8, kernel_options={"hidden_channels": 3}),
        "kernel_options.hidden_channels",
    ),
    "ccnn conv_options unknown": (ccnn_call(conv_options={"foo": 1}), "conv_options.foo"),
    "ccnn conv_options set by the network": (ccnn_call(conv_options={"input_size": 10}), "conv_options.input_size"),
    "ccnn prenorm": (ccnn_call(prenorm="no"), "prenorm"),
    "ccnn paired": (ccnn_call(paired=1), "paired"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_argument_raises_invalid_argument_naming_it_first(case):
    call, argument = CASES[case]
    with pytest.raises(InvalidArgument) as info:
        call()
    error = info.value
    assert error.argument == argument
    assert str(error).startswith(argument), str(error)
    assert "net." not in str(error) and "conv." not in str(error), "a library error speaks in config flags"


def _signature_names(function: Callable[..., Any]) -> set[str]:
    return set(inspect.signature(function).parameters)


def test_every_named_argument_is_a_keyword_of_the_signature_called():
    conv_keywords = set().union(*(_signature_names(cls.__init__) for cls in (*CONV_TYPES.values(), FlexConv)))
    ccnn_keywords = _signature_names(CCNN.__init__)
    for case, (_, argument) in CASES.items():
        top = argument.split(".")[0]
        if case.startswith("ccnn "):
            assert top in ccnn_keywords | conv_keywords, case
    assert {"kernel_omega_0", "mask_threshold", "kernel_options"} <= conv_keywords


def test_renamed_arguments_maps_listed_names_prefixes_the_others_and_keeps_the_cause():
    with pytest.raises(InvalidArgument) as info, renamed_arguments({"omega_0": "kernel_omega_0"}):
        raise InvalidArgument("omega_0", "omega_0 must be a finite number > 0, got 0.")
    assert (info.value.argument, str(info.value)) == (
        "kernel_omega_0",
        "kernel_omega_0 must be a finite number > 0, got 0.",
    )
    assert isinstance(info.value.__cause__, InvalidArgument)
    with pytest.raises(InvalidArgument) as info, renamed_arguments(prefix="optimizer."):
        raise InvalidArgument("lr", "lr must be positive.")
    assert (info.value.argument, str(info.value)) == ("optimizer.lr", "optimizer.lr must be positive.")
    with pytest.raises(InvalidArgument) as info, renamed_arguments({"a": "b"}):
        raise InvalidArgument("data_dim", "data_dim must be 1, 2 or 3.")
    assert info.value.argument == "data_dim" and info.value.__cause__ is None


def test_invalid_argument_is_a_value_error_and_survives_pickling():
    error = InvalidArgument("hidden_channels", "hidden_channels must be a positive integer (>= 1), got 0.")
    assert isinstance(error, ValueError)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.argument, str(copy)) == (error.argument, str(error))


def test_valid_arguments_build_a_network():
    # The base call of the table is itself valid, so each case fails for its one bad argument only.
    assert isinstance(ccnn_call()(), CCNN)
    assert ccnn_call(num_classes=2)()(torch.zeros(1, 1, 16)).shape == (1,)


def test_renaming_changes_argument_mentions_but_not_the_english_words_they_share_a_name_with():
    # KERNEL_NET_ARGUMENTS maps the kernel net's `name` to `kernel_type`: "must name a class" once read "must
    # kernel_type a class".
    with pytest.raises(InvalidArgument) as info:
        SeparableFlexConv(2, 3, 1, kernel_size=5, kernel_type="MLP", kernel_options={"nonlinearity": "Foo"})
    assert str(info.value).startswith("kernel_options.nonlinearity must name a torch.nn module class")
    error = InvalidArgument("omega_0", "omega_0 must be > 0 with bias=False and hidden_channels 4 (a name, a bias).")
    renamed = error.renamed("kernel_omega_0", {"bias": "kernel_bias", "hidden_channels": "kernel_hidden_channels"})
    assert str(renamed) == (
        "kernel_omega_0 must be > 0 with kernel_bias=False and kernel_hidden_channels 4 (a name, a bias)."
    )


def test_an_int_input_size_is_every_axis_size_as_the_conv_layers_take_it():
    torch.manual_seed(0)
    from_int = CCNN(1, 3, 2, 6, hidden_channels=4, num_blocks=1, conv_options={"kernel_hidden_channels": 4})
    torch.manual_seed(0)
    from_tuple = CCNN(1, 3, 2, (6, 6), hidden_channels=4, num_blocks=1, conv_options={"kernel_hidden_channels": 4})
    x = torch.randn(2, 1, 6, 6)
    assert torch.equal(from_int.eval()(x), from_tuple.eval()(x))
