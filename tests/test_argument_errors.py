"""Library and model errors speak the library's language: a bad argument raises InvalidArgument naming the keyword
the caller passed (never a config flag); an argument that reaches an inner constructor inside a mapping is named by
its path (``conv_options.kernel_options.omega_0``). The rules themselves are argcheck's, read from signatures."""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Optional

import pytest
import torch

from argcheck import (
    DataDim,
    Fraction,
    InvalidArgument,
    NonNegativeFloat,
    NonNegativeInt,
    OpenFraction,
    PositiveFloat,
    PositiveInt,
    Probability,
    accepted_arguments,
    check_arguments,
    check_choice,
    check_value,
    did_you_mean,
    prefixed_arguments,
    rule_of,
)
from ckconv import CONV_TYPES, KERNEL_NETS, FlexConv, GaussianMask, PointwiseLinear, SeparableConv, SeparableFlexConv
from ckconv.conv import KERNEL_ARGUMENTS_SET_BY_LAYER, MASK_ARGUMENTS_SET_BY_LAYER
from ckconv.kernels import build_kernel_net
from models.blocks import BLOCKS
from models.ccnn import CCNN, CONV_ARGUMENTS_SET_BY_NETWORK
from models.layers import build_activation, build_dropout, build_norm

SMALL_KERNEL = {"hidden_channels": 4}


def ccnn_call(**overrides: Any) -> Callable[[], CCNN]:
    """A call of a small valid CCNN with ``overrides``; ``conv_options`` (and its ``kernel_options``) entries are
    added to the small defaults."""

    def call() -> CCNN:
        kwargs = dict(overrides)
        positional = {"in_channels": 1, "num_classes": 3, "data_dim": 1, "input_size": (16,)}
        positional |= {k: kwargs.pop(k) for k in positional if k in kwargs}
        options = dict(kwargs.pop("conv_options", {}))
        if CONV_TYPES.get(kwargs.get("conv_type"), FlexConv).continuous:
            options["kernel_options"] = {**SMALL_KERNEL, **options.get("kernel_options", {})}
        return CCNN(**positional, **{"hidden_channels": 4, "num_blocks": 1, **kwargs}, conv_options=options)

    return call


def kernel_call(**kernel_options: Any) -> Callable[[], CCNN]:
    return ccnn_call(conv_options={"kernel_options": kernel_options})


# (what is called, the argument the error must name). Each entry makes exactly one argument bad.
CASES: dict[str, tuple[Callable[[], Any], str]] = {
    # CCNN's own arguments
    "ccnn in_channels": (ccnn_call(in_channels=0), "in_channels"),
    "ccnn num_classes": (ccnn_call(num_classes=1), "num_classes"),
    "ccnn data_dim": (ccnn_call(data_dim=4), "data_dim"),
    "ccnn input_size": (ccnn_call(input_size=(0,)), "input_size"),
    "ccnn input_size None": (ccnn_call(input_size=None), "input_size"),
    "ccnn hidden_channels": (ccnn_call(hidden_channels=0), "hidden_channels"),
    "ccnn hidden_channels float": (ccnn_call(hidden_channels=8.0), "hidden_channels"),
    "ccnn num_blocks": (ccnn_call(num_blocks=-1), "num_blocks"),
    "ccnn block_type": (ccnn_call(block_type="S5"), "block_type"),
    "ccnn norm": (ccnn_call(norm="GroupNorm"), "norm"),
    "ccnn nonlinearity": (ccnn_call(nonlinearity="Gelu"), "nonlinearity"),
    "ccnn nonlinearity needing arguments": (ccnn_call(nonlinearity="Linear"), "nonlinearity"),
    "ccnn dropout": (ccnn_call(dropout=1.0), "dropout"),
    "ccnn dropout_in": (ccnn_call(dropout_in=-0.1), "dropout_in"),
    "ccnn dropout_type": (ccnn_call(dropout_type="AlphaDropout"), "dropout_type"),
    "ccnn conv_type": (ccnn_call(conv_type="FlexConv2"), "conv_type"),
    "ccnn conv_options not a mapping": (
        lambda: CCNN(1, 3, 1, (16,), hidden_channels=4, num_blocks=1, conv_type="Conv", conv_options="large"),
        "conv_options",
    ),
    "ccnn block_width_factors shape": (ccnn_call(block_width_factors=[[1.0]]), "block_width_factors"),
    "ccnn block_width_factors count": (ccnn_call(block_width_factors=[[1.0, 2]]), "block_width_factors"),
    "ccnn downsampling": (ccnn_call(downsampling=[1]), "downsampling"),
    "ccnn downsampling_size": (ccnn_call(downsampling_size=0), "downsampling_size"),
    "ccnn vocab_size": (ccnn_call(vocab_size=0), "vocab_size"),
    "ccnn embedding": (ccnn_call(vocab_size=5, embedding="onehot"), "embedding"),
    "ccnn embedding_dim": (ccnn_call(vocab_size=5, embedding_dim=-4), "embedding_dim"),
    "ccnn prenorm": (ccnn_call(prenorm="no"), "prenorm"),
    "ccnn paired": (ccnn_call(paired=1), "paired"),
    # a conv layer's errors are named by the path of conv_options they came through
    "ccnn kernel_size": (ccnn_call(conv_options={"kernel_size": "large"}), "conv_options.kernel_size"),
    "ccnn causal": (
        ccnn_call(data_dim=2, input_size=(4, 4), conv_options={"causal": True}),
        "conv_options.causal",
    ),
    "ccnn use_fft": (ccnn_call(conv_options={"use_fft": "yes"}), "conv_options.use_fft"),
    "ccnn bias": (ccnn_call(conv_options={"bias": "False"}), "conv_options.bias"),
    "ccnn kernel_type": (ccnn_call(conv_options={"kernel_type": "MagNet"}), "conv_options.kernel_type"),
    "ccnn kernel_bandlimit": (ccnn_call(conv_options={"kernel_bandlimit": 1.5}), "conv_options.kernel_bandlimit"),
    "ccnn kernel_init_scale": (ccnn_call(conv_options={"kernel_init_scale": 0.0}), "conv_options.kernel_init_scale"),
    "ccnn discrete kernel_size": (
        ccnn_call(conv_type="Conv", conv_options={"kernel_size": 0}),
        "conv_options.kernel_size",
    ),
    "ccnn conv_options unknown": (ccnn_call(conv_options={"foo": 1}), "conv_options.foo"),
    "ccnn conv_options of another layer": (
        ccnn_call(conv_type="Conv", conv_options={"kernel_type": "MAGNet"}),
        "conv_options.kernel_type",
    ),
    **{
        f"ccnn conv_options.{key} set by the network": (ccnn_call(conv_options={key: 1}), f"conv_options.{key}")
        for key in CONV_ARGUMENTS_SET_BY_NETWORK
    },
    # ... and a kernel net's or a mask's by the path through kernel_options / mask_options
    "ccnn kernel hidden_channels": (kernel_call(hidden_channels=0), "conv_options.kernel_options.hidden_channels"),
    "ccnn kernel num_layers": (kernel_call(num_layers=0), "conv_options.kernel_options.num_layers"),
    "ccnn kernel omega_0": (kernel_call(omega_0=float("nan")), "conv_options.kernel_options.omega_0"),
    "ccnn kernel bias": (kernel_call(bias=1), "conv_options.kernel_options.bias"),
    "ccnn kernel alpha": (kernel_call(alpha=0.0), "conv_options.kernel_options.alpha"),
    "ccnn kernel causal": (kernel_call(causal=True), "conv_options.kernel_options.causal"),
    "ccnn kernel unknown": (kernel_call(foo=1), "conv_options.kernel_options.foo"),
    "ccnn kernel norm": (
        ccnn_call(conv_options={"kernel_type": "MLP", "kernel_options": {"norm": "Nope"}}),
        "conv_options.kernel_options.norm",
    ),
    "ccnn kernel omega_0 of an MLP": (
        ccnn_call(conv_options={"kernel_type": "MLP", "kernel_options": {"omega_0": 10.0}}),
        "conv_options.kernel_options.omega_0",
    ),
    "ccnn init_spatial_value": (
        ccnn_call(conv_type="CKConv", conv_options={"kernel_options": {"init_spatial_value": -1.0}}),
        "conv_options.kernel_options.init_spatial_value",
    ),
    "ccnn mask init_value": (
        ccnn_call(conv_options={"mask_options": {"init_value": 0.0}}),
        "conv_options.mask_options.init_value",
    ),
    "ccnn mask threshold": (
        ccnn_call(conv_options={"mask_options": {"threshold": 1.5}}),
        "conv_options.mask_options.threshold",
    ),
    # the layers and builders on their own
    "flexconv out_channels": (lambda: SeparableFlexConv(2, 0, input_size=8), "out_channels"),
    "flexconv kernel omega_0": (
        lambda: FlexConv(1, 1, input_size=8, kernel_options={"omega_0": -1.0}),
        "kernel_options.omega_0",
    ),
    "flexconv mask threshold": (
        lambda: FlexConv(1, 1, input_size=8, mask_options={"threshold": 0.0}),
        "mask_options.threshold",
    ),
    "conv kernel_size": (lambda: SeparableConv(1, 1, 2, kernel_size=(3, 0)), "kernel_size"),
    "mask threshold": (lambda: GaussianMask(1, threshold=0.0), "threshold"),
    "mask init_value": (lambda: GaussianMask(1, init_value=float("inf")), "init_value"),
    "pointwise in_channels": (lambda: PointwiseLinear(0, 2), "in_channels"),
    "pointwise init": (lambda: PointwiseLinear(1, 2, init="xavier"), "init"),
    "kernel net name": (lambda: build_kernel_net("Gabbor", data_dim=1, out_channels=1), "name"),
    "kernel net omega_0": (lambda: KERNEL_NETS["SIREN"](data_dim=1, out_channels=1, omega_0=0.0), "omega_0"),
    "kernel net omega_0 it does not take": (
        lambda: build_kernel_net("MLP", data_dim=1, out_channels=1, omega_0=10.0),
        "omega_0",
    ),
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
    **{
        f"kernel_options.{key} set by the layer": (
            lambda key=key: FlexConv(1, 1, input_size=8, kernel_options={key: 1}),
            f"kernel_options.{key}",
        )
        for key in KERNEL_ARGUMENTS_SET_BY_LAYER
    },
    **{
        f"mask_options.{key} set by the layer": (
            lambda key=key: FlexConv(1, 1, input_size=8, mask_options={key: 1}),
            f"mask_options.{key}",
        )
        for key in MASK_ARGUMENTS_SET_BY_LAYER
    },
    "mask_options unknown": (lambda: FlexConv(1, 1, input_size=8, mask_options={"width": 0.1}), "mask_options.width"),
}
# Keys that the cases name although no signature has them: the point of those cases.
UNKNOWN_KEYS = {"foo", "width"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_argument_raises_invalid_argument_naming_it(case):
    call, argument = CASES[case]
    with pytest.raises(InvalidArgument) as info:
        call()
    assert info.value.argument == argument


def test_every_named_argument_is_a_keyword_of_the_signature_it_reached():
    # conv_options.<key> is a conv layer's keyword, conv_options.kernel_options.<key> a kernel net's, and so on.
    levels = {
        "ccnn": set(accepted_arguments(CCNN)),
        "conv_options": set().union(*(accepted_arguments(cls) for cls in CONV_TYPES.values())),
        "kernel_options": set().union(*(accepted_arguments(cls) for cls in KERNEL_NETS.values())),
        "mask_options": set(accepted_arguments(GaussianMask)),
    }
    for case, (_, argument) in CASES.items():
        if not case.startswith("ccnn "):
            continue
        *path, last = ["ccnn", *argument.split(".")]
        for outer, inner in zip(path, [*path[1:], last]):
            assert inner in levels[outer] or inner in UNKNOWN_KEYS, (case, inner)


def test_prefixed_arguments_names_an_inner_error_by_its_path_and_keeps_the_cause():
    outer, inner = prefixed_arguments("conv_options."), prefixed_arguments("kernel_options.")
    with pytest.raises(InvalidArgument) as info, outer, inner:
        raise InvalidArgument("omega_0", "omega_0 must be a finite number > 0, got 0.")
    error = info.value
    assert error.argument == "conv_options.kernel_options.omega_0"
    assert error.message.startswith("conv_options.kernel_options.omega_0 ")  # the message leads with the path
    assert isinstance(error.__cause__, InvalidArgument) and error.__cause__.argument == "kernel_options.omega_0"
    assert error.__cause__.__cause__.argument == "omega_0"
    with pytest.raises(ValueError) as other, prefixed_arguments("optimizer."):
        raise ValueError("not an argument error")
    assert type(other.value) is ValueError and other.value.__cause__ is None  # passed on untouched


def test_within_prefixes_the_argument_and_only_the_leading_name_of_the_message():
    error = InvalidArgument("nonlinearity", "nonlinearity must name a torch.nn module class, got 'Foo'.")
    inner = error.within("kernel_options.")
    assert (inner.argument, inner.message, str(inner)) == (
        "kernel_options.nonlinearity",
        "kernel_options." + error.message,
        "kernel_options." + error.message,
    )
    # A message that does not lead with its argument is introduced by the path.
    odd = InvalidArgument("lr", "a rate must be positive.").within("optimizer.")
    assert (odd.argument, odd.message) == ("optimizer.lr", "optimizer.lr: a rate must be positive.")


def test_invalid_argument_is_a_value_error_and_survives_pickling():
    error = InvalidArgument("hidden_channels", "hidden_channels must be an integer >= 1, got 0.")
    assert isinstance(error, ValueError)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.argument, copy.message, str(copy)) == (error.argument, error.message, str(error))


def test_valid_arguments_build_a_network():
    # The base call of the table is itself valid, so each case fails for its one bad argument only.
    assert isinstance(ccnn_call()(), CCNN)
    assert isinstance(ccnn_call(conv_type="Conv")(), CCNN)
    assert ccnn_call(num_classes=2)()(torch.zeros(1, 1, 16)).shape == (1,)


def test_an_int_input_size_is_every_axis_size_as_the_conv_layers_take_it():
    options = {"kernel_options": SMALL_KERNEL}
    torch.manual_seed(0)
    from_int = CCNN(1, 3, 2, 6, hidden_channels=4, num_blocks=1, conv_options=options)
    torch.manual_seed(0)
    from_tuple = CCNN(1, 3, 2, (6, 6), hidden_channels=4, num_blocks=1, conv_options=options)
    x = torch.randn(2, 1, 6, 6)
    assert torch.equal(from_int.eval()(x), from_tuple.eval()(x))


# ---------------------------------------------------------------------------------------------- argcheck's rules


def refuses(value: Any, annotation: Any) -> bool:
    """Whether check_value refuses ``value`` for an argument annotated ``annotation`` (naming the argument)."""
    try:
        check_value("x", value, annotation)
    except InvalidArgument as error:
        assert error.argument == "x"
        return True
    return False


@pytest.mark.parametrize(
    ("annotation", "accepted", "refused"),
    [
        (PositiveInt, [1, 7, 10**12], [0, -1, True, False, 2.0, "3", None, math.inf]),
        (NonNegativeInt, [0, 3], [-1, True, 0.0]),
        (PositiveFloat, [1e-9, 3, 2.5], [0, 0.0, -1.0, math.nan, math.inf, True, "1.0"]),
        (NonNegativeFloat, [0, 0.0, 4.5], [-1e-9, math.nan, math.inf]),
        (Probability, [0, 0.0, 0.5, 0.999], [1, 1.0, -0.1, math.nan, True]),
        (OpenFraction, [0.5, 1e-9], [0, 0.0, 1.0]),
        (Fraction, [1, 1.0, 0.5], [0, 0.0, 1.5]),
        (DataDim, [1, 2, 3], [0, 4, True, 1.0]),
        (bool, [True, False], ["False", 0, 1, None]),
        (int, [0, -4], [True, 1.5, "1"]),
        (float, [1, 1.5, -2.0], [True, "1.5"]),
        (str, ["", "MAGNet"], [1, None]),
        (Literal["max", "min"], ["max", "min"], ["maximum", "Max", 1, None]),
        (Literal[0], [0], [1, False, 0.0]),
        (Optional[PositiveInt], [None, 5], [0, True]),  # noqa: UP045 (the spelling some signatures use)
        (PositiveInt | None, [None, 5], [0]),
        (bool | Literal["auto"], [True, False, "auto"], ["yes", 1]),
    ],
)
def test_a_rule_admits_exactly_the_values_it_declares(annotation, accepted, refused):
    for value in accepted:
        assert not refuses(value, annotation), value
    for value in refused:
        assert refuses(value, annotation), value


def test_an_annotation_argcheck_does_not_understand_checks_nothing():
    for annotation in (Sequence[int], Mapping[str, Any], torch.nn.Module, Any, Callable[[int], int]):
        assert rule_of(annotation) is None
        for value in ("anything", -1, None, [0.5]):
            assert not refuses(value, annotation)
    # Understood in part: a value of a kind it understands is checked, any other is left to the function.
    mixed = PositiveInt | Sequence[int]
    assert refuses(0, mixed) and refuses(-2, mixed)
    assert not refuses([0, -1], mixed) and not refuses(True, mixed) and not refuses(3, mixed)


def test_rules_are_read_from_the_text_of_an_annotation_too():
    # What a config check reads from source without importing the module; a name outside the vocabulary: no rule.
    assert rule_of("PositiveInt | None").problem(None) is None
    assert rule_of("PositiveInt | None").problem(0) is not None
    assert rule_of("Literal['a', 'b']").problem("c") is not None
    assert rule_of("SomeClassOfTheModule") is None


def _annotated(count: PositiveInt, rate: Probability = 0.0, name: Literal["a", "b"] = "a", other: Sequence[int] = ()):
    check_arguments(_annotated, locals())


def test_check_arguments_checks_a_call_against_the_functions_annotations():
    _annotated(1, 0.5, "b", ["not", "checked"])
    for kwargs, argument in [
        ({"count": 0}, "count"),
        ({"count": 1, "rate": 1.0}, "rate"),
        ({"count": 1, "name": "c"}, "name"),
        ({"count": True, "rate": 2.0}, "count"),  # the first bad argument of the signature
    ]:
        with pytest.raises(InvalidArgument) as info:
            _annotated(**kwargs)
        assert info.value.argument == argument


def test_check_choice_names_the_argument_and_did_you_mean_guesses_the_intended_choice():
    with pytest.raises(InvalidArgument) as info:
        check_choice("conv_type", "FlexConv2", tuple(CONV_TYPES))
    assert info.value.argument == "conv_type" and "'FlexConv2'" in info.value.message
    check_choice("conv_type", "FlexConv", tuple(CONV_TYPES))
    assert did_you_mean("magnet", KERNEL_NETS) == " (did you mean MAGNet?)"  # the same name in another case first
    assert did_you_mean("GaborNt", KERNEL_NETS) == " (did you mean GaborNet?)"
    assert did_you_mean("zzz", KERNEL_NETS) == ""
    assert did_you_mean(3, KERNEL_NETS) == ""


class _Base:
    def __init__(self, a: int, b: int = 0) -> None: ...


class _Forwards(_Base):
    def __init__(self, c: int, *args: Any, **kwargs: Any) -> None: ...


class _Inherits(_Forwards):
    pass


class _Stops(_Forwards):
    def __init__(self, d: int) -> None: ...


def test_accepted_arguments_follow_kwargs_up_the_parents():
    assert accepted_arguments(_Base) == ("a", "b")
    assert accepted_arguments(_Forwards) == ("c", "a", "b")
    assert accepted_arguments(_Inherits) == ("c", "a", "b")  # no __init__ of its own: its parent's
    assert accepted_arguments(_Stops) == ("d",)  # no **kwargs: its parents' arguments are not reachable
    # FlexConv passes **kwargs to CKConv: both signatures count.
    flex = accepted_arguments(SeparableFlexConv)
    assert {"mask_options", "kernel_options", "kernel_init_scale", "in_channels", "input_size"} <= set(flex)
