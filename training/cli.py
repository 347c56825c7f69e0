"""The command line of ``main.py``: every check before anything is written, one line for every refusal and failure,
exit codes to match.

Hydra composes the config (OmegaConf refuses unknown flags and wrong types against the schema), then, before it makes
a run folder, calls :class:`CheckBeforeWriting`: for a run, every check of ``training.run.plan`` (flags, network,
data, checkpoints, run folder), whose plan the run then executes; for a multirun, the same checks for every job
before the first starts. Hydra re-raises what goes wrong (``HYDRA_FULL_ERROR``, set here), and :func:`main` prints it
as one line.

Exit codes: 0 done; 2 refused (a bad flag, data, checkpoint or run folder; nothing was written); 1 failed while
running (a non-finite loss, a checkpoint that could not be saved, a run with nothing to report; its folder holds what
was done); 130 interrupted. ``-v`` (or ``CCNN_TRACEBACK=1``) shows the traceback instead of the one line.
"""

from __future__ import annotations

import difflib
import itertools
import logging
import math
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from argcheck.command_line import EXIT_REFUSED
from training.config.checks import check_config
from training.config.flags import FLAGS, not_a_flag
from training.config.resolvers import run_folder
from training.run.folder import check_run_folder, unusable, write_refusal
from training.run.garbage import collection_paused

log = logging.getLogger(__name__)

TRACEBACK_ENV = "CCNN_TRACEBACK"
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
PRESET_DIR = Path(__file__).resolve().parent.parent / "cfg" / "experiment"

# Hydra plugins that are optional extras of the package (pyproject.toml): config file -> (package, extra).
_PLUGIN_EXTRAS = {
    "hydra/sweeper/optuna": ("hydra-optuna-sweeper", "sweep"),
    "hydra/launcher/submitit_local": ("hydra-submitit-launcher", "slurm"),
    "hydra/launcher/submitit_slurm": ("hydra-submitit-launcher", "slurm"),
}


class RefusedError(Exception):
    """A command line that cannot run, with the one line that says why."""


class StopBeforeWriting(BaseException):
    """Carries ``error`` out of a Hydra callback. Hydra (1.3) turns an ``Exception`` raised by a callback into a
    warning and goes on to run the job; this one it lets through, to :func:`main`, before anything is written."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def wants_traceback() -> bool:
    return os.environ.get(TRACEBACK_ENV, "") not in ("", "0")


def one_line(error: BaseException) -> str:
    """``error: <message>`` on one line (messages may hold line breaks)."""
    return "error: " + " ".join(str(error).split())


# The errors that say in one line what is wrong, with the exit code of each (the first match counts: a subclass
# comes before its base). Found among the modules loaded: an error of a module not imported cannot have been raised,
# and importing one to catch it would load torch before a refusal that needs none.
_ONE_LINE_ERRORS = (
    ("models.module", "NonFiniteLossError", EXIT_FAILED),
    ("training.run.checkpoints", "CheckpointSaveError", EXIT_FAILED),
    ("training.run.execute", "RunFailedError", EXIT_FAILED),
    ("training.run.checkpoints", "CheckpointError", EXIT_REFUSED),
    ("training.config.checks", "ConfigError", EXIT_REFUSED),
    ("datamodules.base", "DataError", EXIT_REFUSED),
    ("training.run.folder", "RunFolderError", EXIT_REFUSED),
    ("training.cli", "RefusedError", EXIT_REFUSED),
    ("training.tools", "ToolFailedError", EXIT_FAILED),
    ("training.tools", "RequestError", EXIT_REFUSED),
)


def exit_code(error: BaseException) -> int | None:
    """:data:`EXIT_REFUSED` for an error met before anything was written, :data:`EXIT_FAILED` for one met while
    running, ``None`` for any other (a bug: its traceback is shown)."""
    for module, name, code in _ONE_LINE_ERRORS:
        kind = getattr(sys.modules.get(module), name, None)
        if kind is not None and isinstance(error, kind):
            return code
    return None


def report(error: Exception) -> int:
    """Print ``error`` in one line and return its exit code; re-raise a bug (or anything under ``-v``)."""
    code = exit_code(error)
    if code is None:
        raise error
    return _shown(error, code)


def _shown(error: BaseException, code: int, line: str | None = None) -> int:
    """Print ``line`` (``error`` in one line by default), or under ``-v`` the traceback; return ``code`` either way,
    so that ``-v`` changes what is shown, not the exit code."""
    if wants_traceback():
        traceback.print_exception(error)
    else:
        print(line or one_line(error), file=sys.stderr)
    return code


# ------------------------------------------------------------------------------------------------------------------
# What Hydra reports while composing, as one line
# ------------------------------------------------------------------------------------------------------------------
def presets() -> list[str]:
    """Every selectable ``experiment=<task>/<variant>``."""
    found = [p.relative_to(PRESET_DIR).with_suffix("").as_posix() for p in PRESET_DIR.rglob("*.yaml")]
    return sorted(name for name in found if not any(part.startswith("_") for part in name.split("/")))


def _unknown_preset(name: str) -> str:
    names = presets()
    task = name.split("/")[0]
    same_task = [p for p in names if p.split("/")[0] == task]
    if same_task:
        return f"experiment={name} is not a preset; the presets of {task} are: {', '.join(same_task)}."
    tasks = sorted({p.split("/")[0] for p in names})
    guess = difflib.get_close_matches(task, tasks, n=1)
    hint = f" (did you mean {guess[0]}?)" if guess else ""
    return f"experiment={name} is not a preset{hint}; tasks with presets: {', '.join(tasks)}."


def _type_phrase(annotation: Any) -> str:
    """``an integer``, ``a number or null``, ... for a schema field's type."""
    import types
    import typing

    names = {int: "an integer", float: "a number", bool: "True or False", str: "a string", list: "a list"}
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)  # Optional[X] or X | None
    members = typing.get_args(annotation) if union else (annotation,)
    words = [names.get(typing.get_origin(m) or m, "a value") for m in members if m is not type(None)]
    return " or ".join(words) + (" or null" if type(None) in members else "")


def _unparsable_override(overrides: list[str]) -> str | None:
    """The first override Hydra's grammar cannot read, with what is wrong with it, or ``None``."""
    parser = OverridesParser.create()
    for override in overrides:
        try:
            parser.parse_overrides([override])
        except HydraException as error:
            if "=" not in override:
                return f"{override} has no value: write {override.lstrip('+~')}=<value>."
            reason = " ".join(str(error).split()).removeprefix(f"Error parsing override '{override}' ")
            reason, _, grammar = reason.partition(" See ")
            where = f" (the override grammar: {grammar.split()[0]})" if grammar.split() else ""
            return f"{override} cannot be read: {reason}{where}."
    return None


def composition_message(error: BaseException, overrides: list[str]) -> str:
    """One line for an error Hydra or OmegaConf raised while composing the config of ``overrides``."""
    if isinstance(error, MissingConfigException):
        missing = str(error.missing_cfg_file or "")
        if missing.startswith("experiment/"):
            return _unknown_preset(missing.removeprefix("experiment/"))
        if missing in _PLUGIN_EXTRAS:
            group, _, name = missing.rpartition("/")
            package, extra = _PLUGIN_EXTRAS[missing]
            return (
                f"{group}={name} needs the Hydra plugin {package}, which is not installed: pip install -e '.[{extra}]'."
            )
    unparsed = _unparsable_override(overrides)
    if unparsed is not None:
        return unparsed
    cause = error if isinstance(error, OmegaConfBaseException) else error.__cause__
    key = getattr(cause, "full_key", None) if isinstance(cause, OmegaConfBaseException) else None
    if key:
        key = str(key).split("[", 1)[0]  # an item of a list flag (test.resolutions[0]): the flag
    text = " ".join(str(error).split())
    if key and key not in FLAGS and not any(name.startswith(f"{key}.") for name in FLAGS):
        if text.startswith("Could not append to config. An item is already at"):
            return f"+{key}: {key} is a flag already; set it without the +: {key}=<value>."
        return not_a_flag(str(key))
    if key in FLAGS:
        # The last override of the flag is the one that holds (net.no_hidden=8 net.no_hidden=abc: abc).
        last = next((o for o in reversed(overrides) if o.lstrip("+~").split("=")[0] == key), None)
        if last is not None and last.startswith("~"):
            return f"{key} was removed (~{key}); every flag has a value: set it ({key}=...) or leave its default."
        shown = f", got {last.split('=', 1)[1]}" if last is not None and "=" in last else ""
        return f"{key} must be {_type_phrase(FLAGS[str(key)].annotation)}{shown}."
    if text.startswith("Multiple values for "):
        group = text.removeprefix("Multiple values for ").split(".")[0]
        return f"+{group}: {group} is a config group already; select it without the +: {group}=<name>."
    first = text or type(error).__name__
    return first if cause is None else f"{first} {' '.join(str(cause).split()[:40])}"


# ------------------------------------------------------------------------------------------------------------------
# Every check before Hydra writes: a Hydra callback
# ------------------------------------------------------------------------------------------------------------------
_prepared: dict[str, Any] = {}


def _run_config(config: DictConfig) -> DictConfig:
    """The config of the run (the flags) without Hydra's own node."""
    return OmegaConf.masked_copy(config, [key for key in config if key != "hydra"])


def _sweep_values(override: Any) -> list[str]:
    """The values of one override that a job may get: each value of a choice or range sweep, and both ends of an
    interval (which a sweeper such as Optuna samples between)."""
    if not override.is_sweep_override():
        return [override.get_value_element_as_str()]
    if override.is_interval_sweep():
        sweep = override.value()
        return [str(sweep.start), str(sweep.end)]
    return list(override.sweep_string_iterator())


def job_overrides(config: DictConfig) -> list[list[str]]:
    """The override lists of the jobs a multirun will run: the whole product of its sweeps for Hydra's basic
    sweeper; for another sweeper (Optuna), each value of each swept flag (both ends of an interval) with the others
    at their first, its search space (``hydra.sweeper.params``) included."""
    overrides: list[str] = OmegaConf.to_container(config.hydra.overrides.task, resolve=False)  # type: ignore[assignment]
    # The config loader lists a config group's options for a glob() sweep (experiment=glob(smnist/*)), as Hydra's
    # sweeper does.
    hydra = GlobalHydra.instance()
    parser = OverridesParser.create(config_loader=hydra.config_loader() if hydra.is_initialized() else None)
    on_command_line = {o.key_or_group for o in parser.parse_overrides(overrides)}
    params = config.hydra.sweeper.get("params") or {}
    overrides = [f"{key}={value}" for key, value in params.items() if key not in on_command_line] + overrides
    parsed = parser.parse_overrides(overrides)
    choices = [[f"{o.get_key_element()}={value}" for value in _sweep_values(o)] for o in parsed]
    for override, options in zip(parsed, choices, strict=True):
        if not options:  # seed=range(2,0), or a glob() that matches no option: Hydra would launch no job at all
            raise RefusedError(f"{override.input_line} sweeps no value; a multirun needs at least one job.")
    if "BasicSweeper" in str(config.hydra.sweeper.get("_target_", "")):
        return [list(job) for job in itertools.product(*choices)]
    first = [options[0] for options in choices]
    jobs = [first]
    for i, options in enumerate(choices):
        jobs += [[*first[:i], option, *first[i + 1 :]] for option in options[1:]]
    return jobs


def check_sweeper(sweeper: DictConfig) -> None:
    """The settings of a sweeper that would fail only once it runs: no trial to run, a study database where none
    can be written (Optuna's ``sqlite:///<path>``)."""
    trials = sweeper.get("n_trials")
    if trials is not None and (isinstance(trials, bool) or not isinstance(trials, int) or trials < 1):
        raise RefusedError(f"hydra.sweeper.n_trials must be a positive number of trials, got {trials!r}.")
    direction = sweeper.get("direction")  # the sweeper's Direction enum, its name, or one per objective
    for name in [str(d).rsplit(".", 1)[-1] for d in (direction if isinstance(direction, ListConfig) else [direction])]:
        if direction is not None and name not in ("minimize", "maximize"):
            raise RefusedError(f"hydra.sweeper.direction must be 'maximize' (an accuracy) or 'minimize', got {name}.")
    storage = sweeper.get("storage")
    if isinstance(storage, str):
        from sqlalchemy.engine import make_url  # Optuna's own parser of storage URLs (sqlalchemy: its dependency)
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(storage)
        except ArgumentError:
            raise RefusedError(
                f"hydra.sweeper.storage={storage} is no database URL; e.g. sqlite:///$PWD/study.db (three slashes, "
                "then an absolute path)."
            ) from None
    if isinstance(storage, str) and storage.startswith("sqlite:///"):
        database = Path(storage.removeprefix("sqlite:///"))
        folder = database.parent
        if not folder.is_dir() or write_refusal(folder) is not None:
            raise RefusedError(
                f"hydra.sweeper.storage={storage}: {folder} is not a folder this process can write in; pass "
                "sqlite:/// and an absolute path in one (three slashes, then the path)."
            )
        if database.exists() and not os.access(database, os.R_OK | os.W_OK):
            raise RefusedError(f"hydra.sweeper.storage={storage}: {database} cannot be read and written.")
        if database.is_file() and database.stat().st_size and not _is_sqlite(database):
            raise RefusedError(
                f"hydra.sweeper.storage={storage}: {database} is no SQLite database; name a new file or a study's."
            )


def _is_sqlite(path: Path) -> bool:
    with open(path, "rb") as file:
        return file.read(16) == b"SQLite format 3\x00"  # the header of every SQLite database file


def check_sweep_folder(folder: Path) -> None:
    """``hydra.sweep.dir``, which Hydra makes before the first job: a file of that name, or a place where nothing
    can be written, ended the sweep in a traceback."""
    problem = unusable(folder)
    if problem is not None:
        raise RefusedError(f"hydra.sweep.dir={folder} {problem}; choose another hydra.sweep.dir.")


# How a process started for distributed training learns its rank (what Lightning 2.6 reads, lightning_fabric's
# rank_zero): read here without importing Lightning.
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def _first_process() -> bool:
    return all(os.environ.get(name, "0") in ("", "0") for name in _RANK_VARIABLES)


class CheckBeforeWriting(Callback):
    """Hydra callback (cfg/config.yaml): every check of the run, or of every job of a multirun, before Hydra makes a
    folder. A refusal leaves Hydra as :class:`StopBeforeWriting` (printed by :func:`main`); the checked plan of a run
    is kept for :func:`run_task`, which executes it."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            self.check_run(config)
        except Exception as error:
            raise StopBeforeWriting(error) from error

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            self.check_multirun(config)
        except Exception as error:
            raise StopBeforeWriting(error) from error

    def check_run(self, config: DictConfig) -> None:
        """Every check of a run; its plan is kept for :func:`run_task`. A dry run ends here."""
        sweeper = str(config.hydra.sweeper.get("_target_", ""))
        if "BasicSweeper" not in sweeper:  # e.g. +hparams_search=...: a search that a single run ignored silently
            raise RefusedError(
                f"hydra.sweeper is {sweeper.rsplit('.', 1)[-1]}, which searches only in a multirun: add -m."
            )
        check_config(_run_config(config))
        cfg = _run_config(config)
        # A few stat calls, no torch: a folder that cannot be used is refused at once. Not in the processes that
        # distributed training starts: they run main.py again, in the folder their first process holds.
        if not cfg.train.dry_run and _first_process():
            check_run_folder(Path(config.hydra.run.dir).absolute(), resuming=bool(cfg.train.resume))
        from training.run.execute import dry_run, prepare

        plan, folder = prepare(cfg, Path(config.hydra.run.dir).absolute())
        if cfg.train.dry_run:
            dry_run(plan)
            raise SystemExit(0)
        _prepared["run"] = (OmegaConf.to_container(cfg), (plan, folder))

    def check_multirun(self, config: DictConfig) -> None:
        """Every check of every job of a multirun: first the sweeper's settings and those of the flags (no torch),
        then the others."""
        from hydra import compose

        check_sweeper(config.hydra.sweeper)
        check_sweep_folder(Path(config.hydra.sweep.dir).absolute())
        hydra_config = HydraConfig.instance().cfg
        jobs: list[tuple[str, DictConfig, Path | None]] = []
        try:
            for number, overrides in enumerate(job_overrides(config)):
                label = f"job {number} [{' '.join(overrides)}]"
                try:
                    job = compose(config.hydra.job.config_name, overrides=overrides, return_hydra_config=True)
                    with open_dict(job.hydra.job):
                        job.hydra.job.num = number
                    HydraConfig.instance().set_config(job)  # ${hydra:job.num} in a job's flags resolves as in the job
                    cfg = _run_config(job)
                    OmegaConf.resolve(cfg)
                    check_config(cfg)
                    # A folder of the job's own is checked now (no torch); else a new folder of the sweep's.
                    folder = None
                    if cfg.train.output_dir or cfg.train.resume:
                        folder = Path(run_folder(cfg.train.output_dir, cfg.train.resume))
                        if not cfg.train.dry_run:
                            check_run_folder(folder, resuming=bool(cfg.train.resume))
                except (HydraException, OmegaConfBaseException) as error:
                    raise RefusedError(f"{label}: {composition_message(error, overrides)}") from error
                except Exception as error:
                    if exit_code(error) is None:
                        raise
                    raise RefusedError(f"{label}: {error}") from error
                jobs.append((label, cfg, folder))
        finally:
            HydraConfig.instance().cfg = hydra_config
        folders = [cfg.train.output_dir for _, cfg, _ in jobs]
        if len(jobs) > 1 and None not in folders and len(set(folders)) == 1:
            raise RefusedError(
                f"train.output_dir={folders[0]} is the same folder for every job of this multirun, and a folder holds "
                "one run. Drop it (each job writes into hydra.sweep.dir/<job number>), sweep it, or name each job's "
                "folder, e.g. train.output_dir='runs/${hydra:job.num}'."
            )
        from training.run.plan import plan_run  # every flag of every job is checked: now what needs torch

        for label, cfg, folder in jobs:
            try:
                plan_run(cfg, folder)
            except Exception as error:
                if exit_code(error) is None:
                    raise
                raise RefusedError(f"{label}: {error}") from error


def run_task(cfg: DictConfig) -> float | None:
    """Hydra's task function: run the checked plan (or check and run, for a job of a multirun); returns the
    validation accuracy for sweepers (``None`` for a failed job: the Optuna sweeper records it as a failed trial
    and goes on, where NaN makes hydra-optuna-sweeper 1.3 crash).

    A failure of a single run is logged (console and ``main.log``) and ends the process with its exit code; a job of
    a multirun that fails is logged and recorded for the summary at the multirun's end, and the others go on.
    """
    from training.multirun import record_job
    from training.run.execute import train

    hydra_cfg = HydraConfig.get()
    multirun = str(hydra_cfg.mode) == "RunMode.MULTIRUN"
    stored = _prepared.pop("run", None)
    prepared = stored[1] if stored is not None and stored[0] == OmegaConf.to_container(cfg) else None
    folder = Path(hydra_cfg.runtime.output_dir)
    try:
        metrics = train(cfg, prepared)
    except Exception as error:
        code = exit_code(error)
        if code is None or wants_traceback():
            raise
        log.error(one_line(error))
        if not multirun:
            raise SystemExit(code) from None
        record_job(Path(hydra_cfg.sweep.dir), folder, list(hydra_cfg.overrides.task), one_line(error), failed=True)
        return None
    if multirun:
        shown = "  ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k in ("val/acc", "test/acc"))
        record_job(Path(hydra_cfg.sweep.dir), folder, list(hydra_cfg.overrides.task), shown, failed=False)
    return float(metrics.get("val/acc", math.nan))


# ------------------------------------------------------------------------------------------------------------------
# main.py
# ------------------------------------------------------------------------------------------------------------------
def pop_verbose(argv: list[str]) -> list[str]:
    """``argv`` without ``-v``/``--verbose``, which set :data:`TRACEBACK_ENV` (Hydra has no such option)."""
    if any(arg in ("-v", "--verbose") for arg in argv):
        os.environ[TRACEBACK_ENV] = "1"
    return [arg for arg in argv if arg not in ("-v", "--verbose")]


# Hydra options without a value: argparse refuses them after the first override (``main.py seed=1 -m``), which is
# where users often type them; they mean the same anywhere.
_SWITCHES = ("-m", "--multirun")


def switches_first(argv: list[str]) -> list[str]:
    """``argv`` with Hydra's value-less switches moved before the overrides."""
    return [arg for arg in argv if arg in _SWITCHES] + [arg for arg in argv if arg not in _SWITCHES]


def main(hydra_main: Any, argv: list[str]) -> int:
    """``main.py``: run ``hydra_main`` (the ``@hydra.main`` function) on ``argv``; one line and an exit code for
    whatever stops it."""
    args = switches_first(pop_verbose(argv[1:]))
    overrides = [arg for arg in args if not arg.startswith("-")]
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises instead of printing its own report and exiting with 1
    sys.argv = [argv[0], *args]
    try:
        with collection_paused():  # while the run starts; the run turns it on for itself (training/run/garbage.py)
            hydra_main()
    except StopBeforeWriting as stop:
        if isinstance(stop.error, HydraException | OmegaConfBaseException):
            refused = RefusedError(composition_message(stop.error, overrides))
            return _shown(stop.error, EXIT_REFUSED, one_line(refused))
        if exit_code(stop.error) is None:
            raise stop.error from None  # a bug: its own traceback, not Hydra's callback around it
        return report(stop.error)  # type: ignore[arg-type]
    except KeyboardInterrupt as interrupt:
        return _shown(interrupt, EXIT_INTERRUPTED, "error: interrupted while the run started; nothing was written.")
    except (HydraException, OmegaConfBaseException) as error:
        return _shown(error, EXIT_REFUSED, one_line(RefusedError(composition_message(error, overrides))))
    except Exception as error:
        from training import multirun

        if multirun.failed_whole():
            line = "error: every job of the multirun failed (see the lines above); the sweeper has no result."
            return _shown(error, EXIT_FAILED, line)
        return report(error)
    from training import multirun

    return multirun.exit_code  # non-zero when a job of a multirun failed (its summary says which)
