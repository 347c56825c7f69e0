"""The schema (training/config/schema.py) is the one declaration of every flag: everything else is derived from it and
from the signatures of the classes the flags feed, and these tests hold the two together."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from argcheck import accepted_arguments, source
from argcheck.rules import rule_of
from tests.conftest import REPO, compose, main_env
from training.config.checks import ConfigError, check_config, chosen_class
from training.config.components import COMPONENTS
from training.config.flags import FLAGS, closest_flag, feeding
from training.config.schema import COURSE, DATA, INIT, NETWORK, SPLIT
from training.run.compat import COMPARED


def _load(target: str):
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def classes_of(component) -> dict[str, type]:
    """Every class a component can be: the one, or each entry of its registry (by name)."""
    found = _load(component.target)
    if component.selected_by is None:
        return {component.target: found}
    return {str(name): _load(entry) if isinstance(entry, str) else entry for name, entry in found.items()}


OURS = [c for c in COMPONENTS.values() if not c.third_party]


def _code() -> str:
    files = [*REPO.glob("training/**/*.py"), *REPO.glob("experiments/*.py")]
    return "\n".join(path.read_text() for path in files if "config/schema.py" not in str(path))


@pytest.mark.parametrize("name", sorted(FLAGS))
def test_every_flag_feeds_an_argument_its_component_takes_or_is_read_by_the_run(name):
    flag = FLAGS[name]
    if flag.dead is not None:
        return  # refused unless at its default: that is all there is to it
    if flag.feeds is not None:
        component, argument = flag.feeds
        assert argument not in COMPONENTS[component].supplied
        takers = [n for n, cls in classes_of(COMPONENTS[component]).items() if argument in accepted_arguments(cls)]
        assert takers, f"{name} feeds {component}.{argument}, which no class of {component} takes"
        return
    namespace, _, leaf = name.rpartition(".")
    alias = namespace.rpartition(".")[2]
    pattern = rf'cfg\.{re.escape(name)}\b|"{re.escape(name)}"|\b{re.escape(alias)}\.{re.escape(leaf)}\b'
    assert re.search(pattern if namespace else rf"cfg\.{name}\b|\"{name}\"", _code()), f"{name} is read by nothing"


@pytest.mark.parametrize("component", OURS, ids=lambda c: c.name)
def test_every_argument_of_our_constructors_has_a_flag_or_is_passed_by_the_code(component):
    carriers = {c.within[1] for c in COMPONENTS.values() if c.within and c.within[0] == component.name}
    fed = {flag.feeds[1] for flag in feeding(component.name)}  # type: ignore[index]
    for name, cls in classes_of(component).items():
        missing = set(accepted_arguments(cls)) - fed - set(component.supplied) - carriers
        assert not missing, f"{component.name} {name} takes {sorted(missing)}, which no flag feeds"


@pytest.mark.parametrize("component", OURS, ids=lambda c: c.name)
def test_what_is_read_from_source_is_what_the_imported_classes_take(component):
    if component.selected_by is not None:
        assert set(source.registry(component.target)) == set(_load(component.target))
    targets = source.registry(component.target).values() if component.selected_by is not None else [component.target]
    for target in targets:
        cls = _load(target)
        static = source.parameters(target)
        assert set(static) == set(accepted_arguments(cls)), target
        for argument, parameter in static.items():
            if not parameter.annotation:
                continue
            owner = next(k for k in cls.__mro__ if argument in getattr(k.__init__, "__annotations__", {}))
            hints = typing.get_type_hints(owner.__init__, include_extras=True)
            assert rule_of(parameter.expanded_annotation()) == rule_of(hints[argument]), (target, argument)


def test_the_names_a_flag_may_take_are_read_from_their_own_lists():
    for flag in FLAGS.values():
        if isinstance(flag.choices, str):
            assert set(source.names(flag.choices)) == set(_load(flag.choices)), flag.name


def test_what_is_compared_with_a_checkpoint_follows_what_each_flag_changes():
    assert {"conv.causal", "kernel.omega_0", "dataset.params.permuted"} <= set(COMPARED["fine-tune"])
    assert {"seed", "dataset.params.val_size"} <= set(COMPARED["evaluate"]) - set(COMPARED["fine-tune"])
    assert {"mask.init_value", "kernel.chang_initialize", "optimizer.lr"} <= set(COMPARED["resume"])
    assert not {"optimizer.lr", "mask.init_value", "conv.use_fft", "train.epochs"} & set(COMPARED["evaluate"])
    for use, compared in COMPARED.items():
        changes = {"evaluate": {NETWORK, DATA, SPLIT}, "fine-tune": {NETWORK, DATA}}.get(use)
        changes = changes or {NETWORK, DATA, SPLIT, INIT, COURSE}
        assert set(compared) == {name for name, flag in FLAGS.items() if flag.changes & changes}


@pytest.mark.parametrize(
    ("typed", "intended"),
    [
        ("optimizer.lrr", "optimizer.lr"),
        ("net.no_hiden", "net.no_hidden"),
        ("test.batchsize", "test.batch_size_multiplier"),  # its own namespace first
        ("kernel.omega0", "kernel.omega_0"),
    ],
)
def test_a_misspelt_flag_suggests_the_flag_meant(typed, intended):
    assert closest_flag(typed) == intended


def test_every_preset_passes_the_checks_of_its_flags():
    presets = sorted(
        p.relative_to(REPO / "cfg" / "experiment").with_suffix("") for p in (REPO / "cfg").rglob("experiment/*/*.yaml")
    )
    assert len(presets) >= 35
    check_config(compose([]))
    for preset in presets:
        check_config(compose([f"experiment={preset.as_posix()}"]))


@pytest.mark.parametrize(
    ("overrides", "flag"),
    [
        (["kernel.type=magnet"], "kernel.type"),
        (["dataset.name=mnist"], "dataset.name"),
        (["net.no_hidden=0"], "net.no_hidden"),
        (["net.dropout=1.0"], "net.dropout"),
        (["net.norm=batchnorm"], "net.norm"),
        (["net.nonlinearity=Swish"], "net.nonlinearity"),
        (["net.block.type=s4"], "net.block.type"),
        (["optimizer.name=adam"], "optimizer.name"),
        (["optimizer.lr=-1"], "optimizer.lr"),
        (["optimizer.momentum=1.0", "optimizer.name=SGD"], "optimizer.momentum"),
        (["scheduler.name=Cosine"], "scheduler.name"),
        (["scheduler.name=plateau"], "scheduler.warmup_epochs"),
        (["scheduler.factor=0.5"], "scheduler.factor"),  # the cosine schedule takes no factor
        (["kernel.type=MLP", "kernel.omega_0=3"], "kernel.omega_0"),  # MLP's signature has no omega_0
        (["kernel.type=SIREN", "kernel.alpha=2"], "kernel.alpha"),
        (["conv.type=Conv", "kernel.size=3", "kernel.omega_0=10"], "kernel.omega_0"),  # a Conv has no kernel net
        (["conv.type=CKConv", "mask.threshold=0.2"], "mask.threshold"),  # a CKConv has no mask
        (["mask.threshold=1.5"], "mask.threshold"),
        (["kernel.size=-3"], "kernel.size"),
        (["kernel.bandlimit=2"], "kernel.bandlimit"),
        (["conv.use_fft=sometimes"], "conv.use_fft"),
        (["dataset.params.mfcc=True"], "dataset.params.mfcc"),  # MNIST-1D takes no mfcc
        (["dataset.name=PathFinder", "dataset.params.resolution=33"], "dataset.params.resolution"),
        (["train.epochs=0"], "train.epochs"),
        (["train.ema=1.5"], "train.ema"),
        (["train.track_grad_norm=0"], "train.track_grad_norm"),
        (["train.limit_train_batches=2.5"], "train.limit_train_batches"),
        (["train.batch_size=10", "train.accumulate_grad_steps=3"], "train.batch_size"),
        (["hooks_enabled=True"], "hooks_enabled"),
        (["conv.stride=2"], "conv.stride"),
        (["seed=-1"], "seed"),
        (["no_workers=-5"], "no_workers"),
        (["test.resolutions=[20,20]"], "test.resolutions"),
        (["train.do=False"], "train.do"),
        (["pretrained.filename=a.ckpt"], "pretrained.filename"),
        (["train.resume=a.ckpt"], "train.resume"),  # outside a run's checkpoints/: which folder would it continue?
    ],
)
def test_a_bad_flag_is_refused_naming_it_without_building_anything(overrides, flag):
    with pytest.raises(ConfigError) as refused:
        check_config(compose(overrides))
    assert refused.value.flag == flag, str(refused.value)
    assert flag in str(refused.value)


def test_the_chosen_classes_are_found_without_importing_them():
    cfg = compose(["conv.type=CKConv", "kernel.type=SIREN"])
    assert chosen_class(cfg, COMPONENTS["kernel"]) == "ckconv.kernels.siren:SIREN"
    assert chosen_class(cfg, COMPONENTS["mask"]) is None  # CKConv takes no mask_options
    cfg = compose(["conv.type=Conv", "kernel.size=3"])
    assert chosen_class(cfg, COMPONENTS["kernel"]) is None


def test_checking_the_flags_loads_no_torch(tmp_path: Path):
    probe = (
        "import sys; from training.config.compose import compose; from training.config.checks import check_config\n"
        "for flags in (['kernel.type=magnet'], ['net.no_hidden=0'], ['kernel.type=MLP', 'kernel.omega_0=3'], []):\n"
        "    try: check_config(compose(flags))\n"
        "    except Exception as error: print(type(error).__name__)\n"
        "print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=main_env(), capture_output=True, text=True)
    assert result.stdout.split() == ["ConfigError", "ConfigError", "ConfigError", "False"], result.stderr[-2000:]
