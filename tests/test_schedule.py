"""Learning-rate schedules: each of SCHEDULES gives, at every optimizer step, the closed-form rate of the original
(linear warm-up, then cosine / step / per-step exponential decay), resumes exactly, follows a longer run's curve when
resumed with more epochs, and refuses bad settings on construction."""

from __future__ import annotations

import dataclasses
import io
import math

import pytest
import torch
from torch.optim.lr_scheduler import LambdaLR, ReduceLROnPlateau

from argcheck import InvalidArgument
from models.module import build_schedule
from models.schedule import SCHEDULES, Constant, Cosine, Exponential, MultiStep, Plateau, Schedule, follow_new_length

BASE_LR = 0.02
MASK_RATIO = 0.1

# Settings of the schedules that have some (each class's own fields).
SETTINGS = {MultiStep: {"decay_steps": 3, "factor": 0.5}, Exponential: {"factor": 0.3}}
# The names of the schedules stepped at every optimizer step (all but the plateau's, stepped on a metric).
STEPPED = sorted((name for name, cls in SCHEDULES.items() if cls is not Plateau), key=str)


def reference_multiplier(name: str | None, step: int, warmup: int, per_epoch: int, total: int, **settings) -> float:
    """The plain closed form of the original's per-step multiplier (what the hand-written LambdaLR computed)."""
    if step < warmup:
        return (step + 1) / warmup
    t = step - warmup
    length = max(1, total - warmup)
    if name == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(t, length) / length))
    if name == "multistep":
        return settings["factor"] ** (t // (settings["decay_steps"] * per_epoch))
    if name == "exponential":
        return settings["factor"] ** (t / per_epoch)
    return 1.0


def schedule(name: str | None, warmup_epochs: int = 0) -> Schedule:
    cls = SCHEDULES[name]
    return cls(warmup_epochs=warmup_epochs, **SETTINGS.get(cls, {}))


def two_group_optimizer() -> torch.optim.Optimizer:
    # Two groups like the network's (weights, and masks at lr * mask_lr_ratio): each must keep its ratio.
    params = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))]
    return torch.optim.SGD([{"params": params[:1]}, {"params": params[1:], "lr": BASE_LR * MASK_RATIO}], lr=BASE_LR)


def rates(settings: Schedule, per_epoch: int, total: int, steps: int) -> list[list[float]]:
    """The rate of each group used by optimizer steps 0 .. steps - 1, and after the last step."""
    optimizer = two_group_optimizer()
    entry = settings.build(optimizer, per_epoch, total)
    seen = []
    for _ in range(steps):
        seen.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        if entry is not None:
            entry["scheduler"].step()
    seen.append([group["lr"] for group in optimizer.param_groups])
    return seen


def test_the_registry_names_each_schedule_and_its_constant_aliases():
    assert all(issubclass(cls, Schedule) for cls in SCHEDULES.values())
    assert {name for name, cls in SCHEDULES.items() if cls is Constant} == {"constant", None, ""}
    for name, cls in SCHEDULES.items():
        assert cls is Constant or cls.__name__.lower() == name


def test_each_schedule_has_only_the_settings_it_reads():
    fields = {cls: {field.name for field in dataclasses.fields(cls)} for cls in SCHEDULES.values()}
    assert fields == {
        Constant: {"warmup_epochs"},
        Cosine: {"warmup_epochs"},
        MultiStep: {"warmup_epochs", "decay_steps", "factor"},
        Exponential: {"warmup_epochs", "factor"},
        Plateau: {"warmup_epochs", "factor", "patience", "mode"},
    }


@pytest.mark.parametrize("warmup_epochs", [0, 1, 3])
@pytest.mark.parametrize("name", STEPPED, ids=str)
def test_every_step_gets_the_closed_form_rate(name, warmup_epochs):
    per_epoch, epochs = 7, 12
    total = per_epoch * epochs
    settings = SETTINGS.get(SCHEDULES[name], {})
    got = rates(schedule(name, warmup_epochs), per_epoch, total, total)
    for step, (weights_lr, mask_lr) in enumerate(got):  # the last entry is the rate after the final step
        expected = BASE_LR * reference_multiplier(name, step, warmup_epochs * per_epoch, per_epoch, total, **settings)
        assert weights_lr == pytest.approx(expected, rel=1e-12, abs=1e-15 * BASE_LR), (step, weights_lr, expected)
        assert mask_lr == pytest.approx(MASK_RATIO * expected, rel=1e-12, abs=1e-16 * BASE_LR), step


@pytest.mark.parametrize(("name", "settings"), [("cosine", {}), ("exponential", {"factor": 0.97})])
def test_a_paper_length_run_keeps_the_closed_form_to_1e_12(name, settings):
    per_epoch, epochs, warmup_epochs = 40, 150, 10
    total = per_epoch * epochs
    got = rates(SCHEDULES[name](warmup_epochs=warmup_epochs, **settings), per_epoch, total, total)
    errors = []
    for step, (lr, _) in enumerate(got[:-1]):
        expected = BASE_LR * reference_multiplier(name, step, warmup_epochs * per_epoch, per_epoch, total, **settings)
        errors.append(abs(lr - expected) / expected)
    assert max(errors) < 1e-12


def test_a_constant_rate_without_warmup_needs_no_scheduler_and_the_others_one_lambda_per_step():
    for name in STEPPED:
        entry = schedule(name).build(two_group_optimizer(), 5, 50)
        if SCHEDULES[name] is Constant:
            assert entry is None, name
        else:
            assert isinstance(entry["scheduler"], LambdaLR) and entry["interval"] == "step", name
    warm = Constant(warmup_epochs=1).build(two_group_optimizer(), 5, 50)
    assert isinstance(warm["scheduler"], LambdaLR) and warm["interval"] == "step"


def saved_state(settings: Schedule, per_epoch: int, total: int, stop: int) -> dict:
    """The optimizer's and the scheduler's state after ``stop`` steps of a run of ``total`` steps."""
    optimizer = two_group_optimizer()
    scheduler = settings.build(optimizer, per_epoch, total)["scheduler"]
    for _ in range(stop):
        optimizer.step()
        scheduler.step()
    buffer = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


def resumed(settings: Schedule, per_epoch: int, total: int, saved: dict) -> tuple[torch.optim.Optimizer, LambdaLR]:
    """What Lightning does on resume: build both anew (configure_optimizers), then load the optimizer's state and
    the scheduler's."""
    optimizer = two_group_optimizer()
    scheduler = settings.build(optimizer, per_epoch, total)["scheduler"]
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    return optimizer, scheduler


@pytest.mark.parametrize("name", STEPPED, ids=str)
@pytest.mark.parametrize("stop", [3, 14, 40])  # inside the warm-up, at its end, in the decay
def test_resuming_from_saved_optimizer_and_scheduler_state_continues_exactly(name, stop):
    per_epoch, total, steps = 7, 84, 60
    settings = schedule(name, warmup_epochs=2)
    uninterrupted = rates(settings, per_epoch, total, steps)
    optimizer, scheduler = resumed(settings, per_epoch, total, saved_state(settings, per_epoch, total, stop))
    assert follow_new_length(scheduler) is None  # the same length: nothing changes
    seen = []
    for _ in range(stop, steps):
        seen.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    assert seen == uninterrupted[stop:steps]


@pytest.mark.parametrize("warmup_epochs", [0, 2])
@pytest.mark.parametrize("stop", [3, 30, 56])  # inside the warm-up (if any), in the decay, at the old run's end
def test_a_cosine_resumed_with_more_epochs_follows_the_longer_schedule_from_there(warmup_epochs, stop):
    per_epoch, old_total, new_total = 7, 56, 98  # 8 epochs, resumed with train.epochs=14
    settings = Cosine(warmup_epochs=warmup_epochs)
    optimizer, scheduler = resumed(settings, per_epoch, new_total, saved_state(settings, per_epoch, old_total, stop))
    old_rate = rates(settings, per_epoch, old_total, stop)[stop]
    longer = rates(settings, per_epoch, new_total, new_total)  # a run started with the new length
    assert [group["lr"] for group in optimizer.param_groups] == old_rate  # as restored: the old curve's

    change = follow_new_length(scheduler)
    if stop < warmup_epochs * per_epoch:  # the warm-up does not depend on the run's length
        assert change is None
    else:
        before, after = change
        assert before == old_rate[0]
        assert after == pytest.approx(longer[stop][0], rel=1e-12, abs=1e-18)
        assert after > before  # the longer cosine has decayed less by this step
    for step in range(stop, new_total):
        got = [group["lr"] for group in optimizer.param_groups]
        assert got == pytest.approx(longer[step], rel=1e-12, abs=1e-18), step
        optimizer.step()
        scheduler.step()
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([0.0, 0.0], abs=1e-18)


@pytest.mark.parametrize("name", [name for name in STEPPED if SCHEDULES[name] is not Cosine], ids=str)
def test_schedules_without_a_length_resume_with_more_epochs_unchanged(name):
    settings = schedule(name, warmup_epochs=1)
    optimizer, scheduler = resumed(settings, 7, 98, saved_state(settings, 7, 56, 30))
    before = [group["lr"] for group in optimizer.param_groups]
    assert follow_new_length(scheduler) is None
    assert [group["lr"] for group in optimizer.param_groups] == before


@pytest.mark.parametrize(("mode", "monitor"), [("max", "val/acc"), ("min", "val/loss")])
def test_plateau_follows_the_validation_metric_of_its_mode(mode, monitor):
    entry = Plateau(factor=0.5, patience=4, mode=mode).build(two_group_optimizer(), 5, 50)
    plateau = entry["scheduler"]
    assert isinstance(plateau, ReduceLROnPlateau) and entry["monitor"] == monitor
    assert (plateau.mode, plateau.factor, plateau.patience) == (mode, 0.5, 4)
    assert follow_new_length(plateau) is None  # no curve to follow


@pytest.mark.parametrize(
    ("cls", "settings", "argument"),
    [
        (Plateau, {"warmup_epochs": 1}, "warmup_epochs"),
        (Cosine, {"warmup_epochs": -1}, "warmup_epochs"),
        (Cosine, {"warmup_epochs": 2.5}, "warmup_epochs"),
        (Constant, {"warmup_epochs": True}, "warmup_epochs"),
        (MultiStep, {"decay_steps": 0}, "decay_steps"),
        (Plateau, {"patience": -3}, "patience"),
        (Plateau, {"mode": "maximum"}, "mode"),
        (MultiStep, {"factor": 0.0}, "factor"),
        (MultiStep, {"factor": 1.5}, "factor"),
        (Exponential, {"factor": float("nan")}, "factor"),
        (Plateau, {"factor": 1.0}, "factor"),  # ReduceLROnPlateau could never lower the rate
    ],
)
def test_bad_settings_are_refused_on_construction_naming_the_setting(cls, settings, argument):
    with pytest.raises(InvalidArgument) as info:
        cls(**settings)
    assert info.value.argument == argument


def test_a_factor_of_one_is_a_step_that_changes_nothing():
    assert MultiStep(factor=1.0).factor == Exponential(factor=1.0).factor == 1.0


@pytest.mark.parametrize(
    ("settings", "argument"),
    [
        ({"name": "cosin"}, "scheduler.name"),
        ({"name": "cosine", "factor": 0.5}, "scheduler.factor"),  # a cosine reads no factor
        ({"name": "exponential", "decay_steps": 2}, "scheduler.decay_steps"),
        ({"name": "multistep", "decay_steps": 0}, "scheduler.decay_steps"),
        ({"name": "plateau", "warmup_epochs": 3}, "scheduler.warmup_epochs"),
    ],
)
def test_build_schedule_names_a_bad_setting_within_scheduler(settings, argument):
    with pytest.raises(InvalidArgument) as info:
        build_schedule(settings)
    assert info.value.argument == argument


def test_build_schedule_builds_the_named_schedule_with_its_settings():
    assert build_schedule({"name": "multistep", "decay_steps": 2, "factor": 0.5}) == MultiStep(
        decay_steps=2, factor=0.5
    )
    for name in SCHEDULES:
        assert type(build_schedule({"name": name})) is SCHEDULES[name]
    assert build_schedule({}) == Constant()  # no name: a constant rate
