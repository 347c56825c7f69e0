"""Sweeps and cluster launches through ``python main.py -m``: the Optuna sweeper and submitit's launcher (the extras
``[sweep]`` and ``[slurm]``), and the checks that ``main.py`` makes of their sweeps before any job runs."""

from __future__ import annotations

import csv
import os
import pickle
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
import torch
import yaml
from packaging.requirements import Requirement

from tests.conftest import REPO, TINY
from tests.test_packaging import requirement_pins
from training.cli import RefusedError, _job_overrides, composition_message, preflight

ENV = {**os.environ, "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "1"}
OPTUNA = ["+hparams_search=omega_mask_optuna", "hydra.sweeper.n_trials=2"]


def run_main(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO / "main.py"), "-m", *args]
    return subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)


def final_val_acc(job: Path) -> float:
    """The validation accuracy a job ended with: the last one in its CSV log (the best checkpoint's evaluation)."""
    with open(job / "logs" / "metrics.csv", newline="") as file:
        values = [row["val/acc"] for row in csv.DictReader(file) if row.get("val/acc")]
    return float(values[-1])


def job_config(job: Path) -> dict:
    return yaml.safe_load((job / "config.yaml").read_text())


def assert_job_wrote_its_results(job: Path) -> None:
    assert (job / "config.yaml").is_file()
    assert (job / "checkpoints" / "best.ckpt").is_file() and (job / "checkpoints" / "last.ckpt").is_file()
    best = torch.load(job / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    score = next(
        v["best_model_score"]
        for k, v in best["callbacks"].items()
        if k.startswith("RunCheckpoint{'monitor': 'val/acc'")
    )
    assert final_val_acc(job) == pytest.approx(float(score), abs=1e-6)  # the job's result is its best checkpoint's


# ---------------------------------------------------------------------------------------------------------------------
# The extras
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "packages"),
    [
        ("sweep", ["hydra-optuna-sweeper", "optuna", "sqlalchemy", "alembic"]),
        ("slurm", ["hydra-submitit-launcher", "submitit"]),
    ],
)
def test_extras_admit_the_pinned_plugins_and_the_pins_are_installed(extra, packages):
    specs = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"][extra]
    requirements = {Requirement(spec).name: Requirement(spec) for spec in specs}
    pins = requirement_pins()
    assert set(requirements) == set(packages)
    for name in packages:
        assert requirements[name].specifier.contains(pins[name]), (name, pins[name])
        assert version(name) == pins[name]  # make test installs requirements.txt


def test_an_optuna_study_in_a_sqlite_file_is_written_and_read_back_by_a_later_process(tmp_path):
    # What hydra.sweeper.storage=sqlite:///<file> does: the pinned optuna 2.10 with SQLAlchemy 2 failed right here.
    import optuna

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    study.optimize(lambda trial: trial.suggest_float("x", 0.0, 1.0), n_trials=2)
    code = (
        f"import optuna; s = optuna.load_study(study_name='s', storage={storage!r}); print(len(s.trials), s.best_value)"
    )
    later = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert later.returncode == 0, later.stderr[-2000:]
    assert later.stdout.split() == ["2", repr(study.best_value)]


# ---------------------------------------------------------------------------------------------------------------------
# What main.py checks before a sweep starts
# ---------------------------------------------------------------------------------------------------------------------
def test_interval_sweeps_are_checked_at_both_ends_and_choices_at_every_value():
    jobs = _job_overrides(["kernel.omega_0=tag(log, interval(100.0, 5000.0))", "seed=0,1"], multirun=True)
    assert jobs == [
        ["kernel.omega_0=100.0", "seed=0"],
        ["kernel.omega_0=5000.0", "seed=0"],
        ["kernel.omega_0=100.0", "seed=1"],
    ]


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """A copy of cfg/ that tests add sweeper configs to (``--config-path``)."""
    return Path(shutil.copytree(REPO / "cfg", tmp_path / "cfg"))


def add_search(config_dir: Path, params: dict[str, str]) -> None:
    search = {"defaults": [{"override /hydra/sweeper": "optuna"}], "hydra": {"sweeper": {"params": params}}}
    (config_dir / "hparams_search" / "mine.yaml").write_text("# @package _global_\n" + yaml.safe_dump(search))


def test_a_misspelt_flag_in_the_configs_search_space_is_refused_before_any_trial(config_dir):
    add_search(config_dir, {"kernel.omega0": "interval(10.0, 20.0)"})
    with pytest.raises(RefusedError, match=r"kernel\.omega0 is not a flag \(did you mean kernel\.omega_0\?\)"):
        preflight(["-m", "--config-path", str(config_dir), "+hparams_search=mine"])


def test_a_search_range_of_the_wrong_type_is_refused_and_the_command_line_wins(config_dir):
    add_search(config_dir, {"train.batch_size": "interval(16.0, 64.0)"})  # Optuna would sample floats
    with pytest.raises(RefusedError, match=r"train\.batch_size must be an integer, got 16\.0"):
        preflight(["-m", "--config-path", str(config_dir), "+hparams_search=mine"])
    # A flag on the command line replaces the config's range for it, as the sweeper does.
    preflight(["-m", "--config-path", str(config_dir), "+hparams_search=mine", "train.batch_size=32"])


def test_a_bad_interval_on_the_command_line_is_refused_in_one_line_and_writes_nothing(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = run_main(*OPTUNA, "train.batch_size=interval(16.0,64.0)", f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: train.batch_size must be an integer, got 16.0"), lines
    assert not sweep_dir.exists()


def test_a_sweep_that_does_not_parse_is_refused_in_one_line():
    with pytest.raises(RefusedError, match="no viable alternative"):
        preflight(["-m", "seed=[0,"])


@pytest.mark.parametrize(
    ("missing", "hint"),
    [
        ("hydra/sweeper/optuna", "hydra/sweeper=optuna needs the Hydra plugin hydra-optuna-sweeper"),
        ("hydra/launcher/submitit_slurm", "hydra/launcher=submitit_slurm needs the Hydra plugin hydra-submitit"),
    ],
)
def test_a_missing_plugin_is_named_with_the_extra_that_installs_it(missing, hint):
    from hydra.errors import MissingConfigException

    extra = "sweep" if "sweeper" in missing else "slurm"
    error = MissingConfigException(f"In 'hydra/config': Could not find '{missing}'", missing_cfg_file=missing)
    message = composition_message(error, [])
    assert message.startswith(hint) and message.endswith(f"pip install -e '.[{extra}]'.")


# ---------------------------------------------------------------------------------------------------------------------
# Real sweeps on a tiny MNIST-1D setting
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_optuna_search_runs_its_trials_and_reports_the_best_jobs_validation_accuracy(data_dir, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"  # a study kept on disk, as a resumable search keeps it
    sweep = [f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={tmp_path}"]
    result = run_main(*OPTUNA, *TINY, f"dataset.data_dir={data_dir}", *sweep)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "setup plugin" not in result.stdout + result.stderr  # alembic's import-time announcements
    jobs = [tmp_path / "0", tmp_path / "1"]
    for job in jobs:
        assert_job_wrote_its_results(job)
    assert not (tmp_path / "2").exists()
    sampled = [(job_config(j)["kernel"]["omega_0"], job_config(j)["mask"]["init_value"]) for j in jobs]
    for omega_0, init_value in sampled:  # drawn from cfg/hparams_search/omega_mask_optuna.yaml's ranges
        assert 100.0 <= omega_0 <= 5000.0 and 0.01 <= init_value <= 0.8
    assert sampled[0] != sampled[1]
    results = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    accuracies = [final_val_acc(job) for job in jobs]
    assert results["best_value"] == pytest.approx(max(accuracies), abs=1e-7)
    best = (results["best_params"]["kernel.omega_0"], results["best_params"]["mask.init_value"])
    assert any(params == pytest.approx(best) and acc == max(accuracies) for params, acc in zip(sampled, accuracies))
    import optuna

    trials = optuna.load_study(study_name="omega_mask", storage=storage).trials  # the file holds both trials
    assert [t.params["kernel.omega_0"] for t in trials] == pytest.approx([omega_0 for omega_0, _ in sampled])
    assert [t.value for t in trials] == pytest.approx(accuracies, abs=1e-7)


@pytest.mark.slow
def test_a_failed_trial_is_recorded_as_failed_and_the_search_goes_on(data_dir, tmp_path):
    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "config.yaml").write_text("seed: 0\n")  # the first trial's folder holds another run
    result = run_main(*OPTUNA, *TINY, f"dataset.data_dir={data_dir}", f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"error: run folder {tmp_path / '0'} already holds a run" in result.stderr
    assert (tmp_path / "0" / "config.yaml").read_text() == "seed: 0\n"
    assert_job_wrote_its_results(tmp_path / "1")
    results = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(final_val_acc(tmp_path / "1"), abs=1e-7)


@pytest.mark.slow
def test_submitit_launcher_runs_each_job_in_its_own_process_and_returns_its_result(data_dir, tmp_path):
    # submitit_local: the code path of submitit_slurm (pickled job, separate process, result file), on this machine.
    launcher = ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", "hydra.launcher.cpus_per_task=1"]
    flags = [*TINY, f"dataset.data_dir={data_dir}", f"hydra.sweep.dir={tmp_path}"]
    result = run_main(*launcher, "seed=0,1", *flags)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "run folder:" not in result.stdout  # the jobs printed into their own logs, not here
    # ... yet the launching process ends with the summary of both jobs, which ran in other processes.
    summary = result.stdout.split("multirun: 2 of 2 jobs done\n")[1].splitlines()
    assert [line.split()[:2] for line in summary[:2]] == [["0", "seed=0"], ["1", "seed=1"]]
    launched = yaml.safe_load((tmp_path / "multirun.yaml").read_text())["hydra"]["launcher"]
    assert launched["timeout_min"] == 10 and launched["cpus_per_task"] == 1
    returned = {}
    for path in (tmp_path / ".submitit").glob("*/*_result.pkl"):
        status, job_return = pickle.loads(path.read_bytes())
        assert status == "success"
        returned[job_return.hydra_cfg.hydra.job.num] = job_return.return_value
        log = path.with_name(path.name.replace("_result.pkl", "_log.out")).read_text()
        assert f"run folder: {tmp_path / str(job_return.hydra_cfg.hydra.job.num)}" in log
    assert sorted(returned) == [0, 1]
    for num, seed in ((0, 0), (1, 1)):
        job = tmp_path / str(num)
        assert_job_wrote_its_results(job)
        assert job_config(job)["seed"] == seed
        assert returned[num] == pytest.approx(final_val_acc(job), abs=1e-7)  # what a sweeper would receive
