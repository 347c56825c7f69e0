"""Learning-rate schedules: torch's schedulers give, at every optimizer step, the closed-form rates of the original
(linear warm-up, then cosine / step / per-step exponential decay), resume exactly, and refuse bad settings early."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau

from ckconv.errors import InvalidArgument
from models.schedule import ScheduleSettings

BASE_LR = 0.02
MASK_RATIO = 0.1


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


def two_group_optimizer() -> torch.optim.Optimizer:
    # Two groups like the network's (weights, and masks at lr * mask_lr_ratio): each must keep its ratio.
    params = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))]
    return torch.optim.SGD([{"params": params[:1]}, {"params": params[1:], "lr": BASE_LR * MASK_RATIO}], lr=BASE_LR)


def rates(settings: ScheduleSettings, per_epoch: int, total: int, steps: int) -> list[list[float]]:
    """The rate of each group used by optimizer steps 0 .. steps - 1, and after the last step."""
    optimizer = two_group_optimizer()
    schedule = settings.build(optimizer, per_epoch, total)
    seen = []
    for _ in range(steps):
        seen.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        if schedule is not None:
            schedule["scheduler"].step()
    seen.append([group["lr"] for group in optimizer.param_groups])
    return seen


SCHEDULES = [
    ("cosine", {}),
    ("multistep", {"decay_steps": 3, "factor": 0.5}),
    ("exponential", {"factor": 0.3}),
    ("constant", {}),
    (None, {}),
]


@pytest.mark.parametrize("warmup_epochs", [0, 1, 3])
@pytest.mark.parametrize(("name", "settings"), SCHEDULES, ids=[str(n) for n, _ in SCHEDULES])
def test_every_step_gets_the_closed_form_rate(name, settings, warmup_epochs):
    per_epoch, epochs = 7, 12
    total = per_epoch * epochs
    got = rates(ScheduleSettings(name, warmup_epochs=warmup_epochs, **settings), per_epoch, total, total)
    for step, (weights_lr, mask_lr) in enumerate(got):  # the last entry is the rate after the final step
        expected = BASE_LR * reference_multiplier(name, step, warmup_epochs * per_epoch, per_epoch, total, **settings)
        assert weights_lr == pytest.approx(expected, rel=1e-12, abs=1e-15 * BASE_LR), (step, weights_lr, expected)
        assert mask_lr == pytest.approx(MASK_RATIO * expected, rel=1e-12, abs=1e-16 * BASE_LR), step


@pytest.mark.parametrize(("name", "settings"), [("cosine", {}), ("exponential", {"factor": 0.97})])
def test_a_paper_length_run_keeps_the_closed_form_to_1e_12(name, settings):
    # The schedulers multiply the previous rate at each step; over thousands of steps the rounding stays ~1e-14.
    per_epoch, epochs, warmup_epochs = 40, 150, 10
    total = per_epoch * epochs
    got = rates(ScheduleSettings(name, warmup_epochs=warmup_epochs, **settings), per_epoch, total, total)
    errors = []
    for step, (lr, _) in enumerate(got[:-1]):
        expected = BASE_LR * reference_multiplier(name, step, warmup_epochs * per_epoch, per_epoch, total, **settings)
        errors.append(abs(lr - expected) / expected)
    assert max(errors) < 1e-12


def test_constant_rate_without_warmup_needs_no_scheduler():
    for name in ("constant", "", None):
        assert ScheduleSettings(name).build(two_group_optimizer(), 5, 50) is None
    entry = ScheduleSettings("cosine").build(two_group_optimizer(), 5, 50)
    assert entry is not None and entry["interval"] == "step"


def saved_state(settings: ScheduleSettings, per_epoch: int, total: int, stop: int) -> dict:
    """The optimizer's and the scheduler's state after ``stop`` steps of a run of ``total`` steps."""
    optimizer = two_group_optimizer()
    schedule = settings.build(optimizer, per_epoch, total)["scheduler"]
    for _ in range(stop):
        optimizer.step()
        schedule.step()
    buffer = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": schedule.state_dict()}, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


@pytest.mark.parametrize(("name", "settings"), SCHEDULES, ids=[str(n) for n, _ in SCHEDULES])
@pytest.mark.parametrize("stop", [3, 14, 40])  # inside the warm-up, at its end, in the decay
def test_resuming_from_saved_optimizer_and_scheduler_state_continues_exactly(name, settings, stop):
    per_epoch, total, steps = 7, 84, 60
    schedule_settings = ScheduleSettings(name, warmup_epochs=2, **settings)
    uninterrupted = rates(schedule_settings, per_epoch, total, steps)

    saved = saved_state(schedule_settings, per_epoch, total, stop)

    # What Lightning does on resume: build both anew (configure_optimizers), then load the optimizer's state and
    # the scheduler's.
    optimizer = two_group_optimizer()
    schedule = schedule_settings.build(optimizer, per_epoch, total)["scheduler"]
    optimizer.load_state_dict(saved["optimizer"])
    schedule.load_state_dict(saved["scheduler"])
    assert schedule_settings.fit_length(schedule, per_epoch, total) is None  # the same length: nothing changes
    resumed = []
    for _ in range(stop, steps):
        resumed.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        schedule.step()
    assert resumed == uninterrupted[stop:steps]


@pytest.mark.parametrize("warmup_epochs", [0, 2])
@pytest.mark.parametrize("stop", [3, 30, 56])  # inside the warm-up (if any), in the decay, at the old run's end
def test_a_cosine_resumed_with_more_epochs_follows_the_longer_schedule_from_there(warmup_epochs, stop):
    per_epoch, old_total, new_total = 7, 56, 98  # 8 epochs, resumed with train.epochs=14
    settings = ScheduleSettings("cosine", warmup_epochs=warmup_epochs)
    saved = saved_state(settings, per_epoch, old_total, stop)
    optimizer = two_group_optimizer()
    schedule = settings.build(optimizer, per_epoch, new_total)["scheduler"]
    optimizer.load_state_dict(saved["optimizer"])
    schedule.load_state_dict(saved["scheduler"])  # the old length comes back with the state

    restored, length, before, after = settings.fit_length(schedule, per_epoch, new_total)
    assert (restored, length) == (old_total - warmup_epochs * per_epoch, new_total - warmup_epochs * per_epoch)
    longer = rates(settings, per_epoch, new_total, new_total)  # a run started with the new length
    assert before == pytest.approx(rates(settings, per_epoch, old_total, stop)[stop][0], rel=1e-12, abs=1e-18)
    assert after == pytest.approx(longer[stop][0], rel=1e-12, abs=1e-18)
    for step in range(stop, new_total):
        got = [group["lr"] for group in optimizer.param_groups]
        assert got == pytest.approx(longer[step], rel=1e-12, abs=1e-18), step
        optimizer.step()
        schedule.step()
    # Restored as saved, the cosine would have risen again past the old end (CosineAnnealingLR is periodic).
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([0.0, 0.0], abs=1e-18)


@pytest.mark.parametrize(("name", "settings"), [("multistep", {"decay_steps": 3, "factor": 0.5}), ("constant", {})])
def test_schedules_without_a_length_resume_with_more_epochs_unchanged(name, settings):
    schedule_settings = ScheduleSettings(name, warmup_epochs=1, **settings)
    optimizer = two_group_optimizer()
    schedule = schedule_settings.build(optimizer, 7, 98)["scheduler"]
    schedule.load_state_dict(saved_state(schedule_settings, 7, 56, 30)["scheduler"])
    assert schedule_settings.fit_length(schedule, 7, 98) is None


@pytest.mark.parametrize(("mode", "monitor"), [("max", "val/acc"), ("min", "val/loss")])
def test_plateau_follows_the_validation_metric_of_its_mode(mode, monitor):
    entry = ScheduleSettings("plateau", factor=0.5, patience=4, mode=mode).build(two_group_optimizer(), 5, 50)
    plateau = entry["scheduler"]
    assert isinstance(plateau, ReduceLROnPlateau) and entry["monitor"] == monitor
    assert (plateau.mode, plateau.factor, plateau.patience) == (mode, 0.5, 4)


@pytest.mark.parametrize(
    ("settings", "argument"),
    [
        ({"name": "cosin"}, "name"),
        ({"name": "plateau", "warmup_epochs": 1}, "warmup_epochs"),
        ({"warmup_epochs": -1}, "warmup_epochs"),
        ({"warmup_epochs": 2.5}, "warmup_epochs"),
        ({"decay_steps": 0}, "decay_steps"),
        ({"patience": -3}, "patience"),
        ({"mode": "maximum"}, "mode"),
        ({"name": "multistep", "factor": 0.0}, "factor"),
        ({"name": "multistep", "factor": 1.5}, "factor"),
        ({"name": "exponential", "factor": float("nan")}, "factor"),
        ({"name": "plateau", "factor": 1.0}, "factor"),
    ],
)
def test_bad_settings_are_refused_on_construction_naming_the_setting(settings, argument):
    with pytest.raises(InvalidArgument) as info:
        ScheduleSettings(**settings)
    assert info.value.argument == argument and str(info.value).startswith(argument)


def test_factor_is_not_checked_where_no_schedule_uses_it():
    assert ScheduleSettings("cosine", factor=-1.0).factor == -1.0
    assert ScheduleSettings("multistep", factor=1.0).factor == 1.0  # a step of 1 is allowed (no decay)
