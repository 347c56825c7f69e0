"""Sweeps and cluster launches through ``python main.py -m``: the Optuna sweeper and submitit's launcher (the extras
``[sweep]`` and ``[slurm]``), and the checks that ``main.py`` makes of every job of a sweep before the first starts.
``main.py`` runs in this process (its entry function); submitit's jobs run in processes of their own."""

from __future__ import annotations

import json
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
from omegaconf import OmegaConf
from packaging.requirements import Requirement

from tests.conftest import REPO, TINY, run_main, tree
from tests.test_packaging import requirement_pins
from training.cli import composition_message, job_overrides

OPTUNA = ["+hparams_search=omega_mask_optuna", "hydra.sweeper.n_trials=2"]
OPTUNA_SWEEPER = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def final_val_acc(job: Path) -> float:
    """The validation accuracy a job ended with (its results: the best checkpoint's evaluation)."""
    return json.loads((job / "results.json").read_text())["val/acc"]


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


def refused(*args: str, cwd: Path) -> str:
    """The one line of a multirun refused before any job started (exit 2, nothing written in ``cwd``)."""
    result = run_main("-m", *args, cwd=cwd)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    [line] = result.error_lines()
    assert line.startswith("error: "), line
    assert tree(cwd) == {}
    return line


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


@pytest.mark.slow
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
def sweep_config(task: list[str], sweeper: str, params: dict[str, str] | None = None):
    """What ``job_overrides`` reads of a multirun's config: its overrides, its sweeper and search space."""
    return OmegaConf.create(
        {"hydra": {"overrides": {"task": task}, "sweeper": {"_target_": sweeper, "params": params or {}}}}
    )


def test_interval_sweeps_are_checked_at_both_ends_and_choices_at_every_value():
    config = sweep_config(["kernel.omega_0=tag(log, interval(100.0, 5000.0))", "seed=0,1"], OPTUNA_SWEEPER)
    assert job_overrides(config) == [
        ["kernel.omega_0=100.0", "seed=0"],
        ["kernel.omega_0=5000.0", "seed=0"],
        ["kernel.omega_0=100.0", "seed=1"],
    ]


def test_the_basic_sweeper_checks_every_job_of_its_product():
    config = sweep_config(["seed=0,1", "net.no_hidden=8,16", "train.epochs=2"], BASIC_SWEEPER)
    jobs = job_overrides(config)
    assert len(jobs) == 4 and {tuple(job) for job in jobs} == {
        (f"seed={seed}", f"net.no_hidden={width}", "train.epochs=2") for seed in (0, 1) for width in (8, 16)
    }


def test_the_search_space_of_the_config_is_checked_and_the_command_line_wins():
    params = {"mask.init_value": "interval(0.01, 0.8)", "train.batch_size": "interval(16.0, 64.0)"}
    jobs = job_overrides(sweep_config(["train.batch_size=32"], OPTUNA_SWEEPER, params))
    assert jobs == [
        ["mask.init_value=0.01", "train.batch_size=32"],  # the command line replaces the config's range, as the
        ["mask.init_value=0.8", "train.batch_size=32"],  # sweeper does
    ]


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """A copy of cfg/ that tests add sweeper configs to (``--config-path``)."""
    return Path(shutil.copytree(REPO / "cfg", tmp_path / "cfg"))


def add_search(config_dir: Path, params: dict[str, str]) -> None:
    search = {"defaults": [{"override /hydra/sweeper": "optuna"}], "hydra": {"sweeper": {"params": params}}}
    (config_dir / "hparams_search" / "mine.yaml").write_text("# @package _global_\n" + yaml.safe_dump(search))


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"kernel.omega0": "interval(10.0, 20.0)"}, "kernel.omega0"),  # not a flag
        ({"train.batch_size": "interval(16.0, 64.0)"}, "train.batch_size"),  # Optuna would sample floats
        ({"mask.init_value": "interval(-0.5, 0.8)"}, "mask.init_value"),  # a width of -0.5 is not one
    ],
    ids=["misspelt flag", "wrong type", "outside the allowed values"],
)
def test_a_search_space_in_the_config_that_cannot_run_is_refused_before_any_trial(config_dir, tmp_path, params, named):
    add_search(config_dir, params)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    assert named in refused("--config-path", str(config_dir), "+hparams_search=mine", cwd=cwd)


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("train.batch_size=interval(16.0,64.0)", "train.batch_size"),  # the wrong type
        ("kernel.omega_0=interval(-10.0,100.0)", "kernel.omega_0"),  # one end outside the allowed values
        ("net.no_hidden=choice(8,0)", "net.no_hidden"),  # one choice outside them
    ],
)
def test_a_bad_range_on_the_command_line_is_refused_in_one_line_and_writes_nothing(tmp_path, override, named):
    line = refused(*OPTUNA, *TINY, override, f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert named in line


def test_a_sweep_that_does_not_parse_is_refused_in_one_line(tmp_path):
    assert "seed" in refused("seed=[0,", cwd=tmp_path)


@pytest.mark.parametrize(
    ("missing", "package"),
    [
        ("hydra/sweeper/optuna", "hydra-optuna-sweeper"),
        ("hydra/launcher/submitit_slurm", "hydra-submitit-launcher"),
    ],
)
def test_a_missing_plugin_is_named_with_the_extra_that_installs_it(missing, package):
    from hydra.errors import MissingConfigException

    extra = "sweep" if "sweeper" in missing else "slurm"
    error = MissingConfigException(f"In 'hydra/config': Could not find '{missing}'", missing_cfg_file=missing)
    message = composition_message(error, [])
    assert package in message and f".[{extra}]" in message


# ---------------------------------------------------------------------------------------------------------------------
# Real sweeps on a tiny MNIST-1D setting
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_optuna_search_runs_its_trials_and_reports_the_best_jobs_validation_accuracy(data_dir, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"  # a study kept on disk, as a resumable search keeps it
    sweep = [f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={tmp_path}"]
    result = run_main("-m", *OPTUNA, *TINY, f"dataset.data_dir={data_dir}", *sweep, cwd=tmp_path)
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
    other = tmp_path / "0"  # the first trial's folder holds another run: its results
    other.mkdir()
    (other / "results.json").write_text('{"test/acc": 0.5}\n')
    result = run_main("-m", *OPTUNA, *TINY, f"dataset.data_dir={data_dir}", f"hydra.sweep.dir={tmp_path}", cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]  # a job failed: the multirun says so in its exit code
    assert any(str(other) in line for line in result.error_lines())  # the trial's one line names the folder
    assert (other / "results.json").read_text() == '{"test/acc": 0.5}\n' and not (other / "checkpoints").exists()
    assert_job_wrote_its_results(tmp_path / "1")
    results = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(final_val_acc(tmp_path / "1"), abs=1e-7)
    jobs = [json.loads(line) for line in (tmp_path / "jobs.jsonl").read_text().splitlines()]
    assert [(job["job"], job["failed"]) for job in jobs] == [("0", True), ("1", False)]


def test_a_search_whose_every_trial_fails_ends_with_its_summary_and_one_line(data_dir, tmp_path):
    # Optuna then asks for the best of no completed trial; that ended in its traceback.
    flags = [*OPTUNA, *TINY, "optimizer.lr=1e30", f"dataset.data_dir={data_dir}", f"hydra.sweep.dir={tmp_path / 's'}"]
    result = run_main("-m", *flags, cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "multirun: 0 of 2 jobs done" in result.stdout
    lines = result.error_lines()
    assert len(lines) == 3 and all(line.startswith("error: ") for line in lines)  # each trial's, then the search's
    assert all("optimizer.lr" in line for line in lines[:2])


def test_an_optuna_storage_that_is_no_database_is_refused_and_left_as_it_was(tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    other = tmp_path / "notes.db"
    other.write_text("a file of the user's\n")
    assert "hydra.sweeper.storage" in refused(*OPTUNA, f"hydra.sweeper.storage=sqlite:///{other}", cwd=cwd)
    assert other.read_text() == "a file of the user's\n"


@pytest.mark.slow
def test_submitit_launcher_runs_each_job_in_its_own_process_and_returns_its_result(data_dir, tmp_path):
    # submitit_local: the code path of submitit_slurm (pickled job, separate process, result file), on this machine.
    launcher = ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", "hydra.launcher.cpus_per_task=1"]
    flags = [*TINY, f"dataset.data_dir={data_dir}", f"hydra.sweep.dir={tmp_path}"]
    # The task function travels to the job processes by value (cloudpickle), as main.py's own __main__ function does.
    result = run_main("-m", *launcher, "seed=0,1", *flags, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert str(tmp_path / "0") not in result.stdout.split("multirun:")[0]  # the jobs logged into their own files
    # ... yet the launching process ends with the summary of both jobs, which ran in other processes.
    summary = result.stdout.split("multirun:")[1].splitlines()[1:]
    assert [line.split()[:2] for line in summary[:2]] == [["0", "seed=0"], ["1", "seed=1"]]
    launched = yaml.safe_load((tmp_path / "multirun.yaml").read_text())["hydra"]["launcher"]
    assert launched["timeout_min"] == 10 and launched["cpus_per_task"] == 1
    returned = {}
    for path in (tmp_path / ".submitit").glob("*/*_result.pkl"):
        status, job_return = pickle.loads(path.read_bytes())
        assert status == "success"
        returned[job_return.hydra_cfg.hydra.job.num] = job_return.return_value
        log = path.with_name(path.name.replace("_result.pkl", "_log.out")).read_text()
        assert str(tmp_path / str(job_return.hydra_cfg.hydra.job.num)) in log
    assert sorted(returned) == [0, 1]
    for num, seed in ((0, 0), (1, 1)):
        job = tmp_path / str(num)
        assert_job_wrote_its_results(job)
        assert job_config(job)["seed"] == seed
        assert returned[num] == pytest.approx(final_val_acc(job), abs=1e-7)  # what a sweeper would receive
