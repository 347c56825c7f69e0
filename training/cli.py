"""The command line of ``main.py``: refusals in one line, before anything is written, with exit codes to match.

Hydra composes the config before any of our code runs, and reports its own errors (a misspelt flag, a preset that
does not exist) as several lines or a traceback. :func:`preflight` therefore composes the config first, exactly as
Hydra will (same search path, same overrides; for a multirun every value of every sweep), and checks it with
:func:`training.config.validate_config`; :func:`run_task` then runs inside Hydra and turns the errors that
``train(cfg)`` raises before writing anything into one line too.

Exit codes: 0 done; 2 refused (bad flag, data, checkpoint or run folder; nothing was written); 1 failed while running
(e.g. a non-finite loss or a checkpoint that could not be saved; the run folder holds what was done). ``-v`` (or
``CCNN_TRACEBACK=1``) shows the traceback instead of the one line.
"""

from __future__ import annotations

import difflib
import math
import os
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO / "cfg"
PRESET_DIR = CONFIG_DIR / "experiment"
TRACEBACK_ENV = "CCNN_TRACEBACK"
EXIT_FAILED = 1
EXIT_REFUSED = 2

# Hydra's own options that make it print something and run no job: nothing to check.
_INFO_OPTIONS = ("help", "hydra_help", "cfg", "info", "shell_completion", "experimental_rerun")


# Hydra plugins that are optional extras of the package (pyproject.toml): config file -> (package, extra).
_PLUGIN_EXTRAS = {
    "hydra/sweeper/optuna": ("hydra-optuna-sweeper", "sweep"),
    "hydra/launcher/submitit_local": ("hydra-submitit-launcher", "slurm"),
    "hydra/launcher/submitit_slurm": ("hydra-submitit-launcher", "slurm"),
}


class RefusedError(Exception):
    """A command line that cannot run, with the one line that says why."""


def wants_traceback() -> bool:
    return os.environ.get(TRACEBACK_ENV, "") not in ("", "0")


def one_line(error: BaseException) -> str:
    """``error: <message>`` on one line (messages may hold line breaks)."""
    return "error: " + " ".join(str(error).split())


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


def presets() -> list[str]:
    """Every selectable ``experiment=<task>/<variant>`` (names starting with "_" are shared bases, not presets)."""
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


def composition_message(error: Exception, overrides: list[str]) -> str:
    """One line for an error Hydra or OmegaConf raised while composing."""
    from hydra.errors import MissingConfigException

    if isinstance(error, MissingConfigException) and str(error.missing_cfg_file or "").startswith("experiment/"):
        return _unknown_preset(str(error.missing_cfg_file).removeprefix("experiment/"))
    if isinstance(error, MissingConfigException) and error.missing_cfg_file in _PLUGIN_EXTRAS:
        group, _, name = str(error.missing_cfg_file).rpartition("/")
        package, extra = _PLUGIN_EXTRAS[error.missing_cfg_file]
        return f"{group}={name} needs the Hydra plugin {package}, which is not installed: pip install -e '.[{extra}]'."
    text = str(error)
    if text.startswith("Could not override '"):
        from training.config import defaults, flag_names, not_a_flag

        return str(not_a_flag(text.split("'")[1], flag_names(defaults())))
    if text.startswith("Could not append to config. An item is already at '"):
        flag = text.split("'")[1]
        return f"+{flag}: {flag} is a flag already; set it without the +: {flag}=<value>."
    if text.startswith("Multiple values for "):
        group = text.removeprefix("Multiple values for ").split(".")[0]
        return f"+{group}: {group} is a config group already; select it without the +: {group}=<name>."
    unparsed = _unparsable_override(overrides)
    if unparsed is not None:
        return unparsed
    cause = error.__cause__
    lines = [text.strip().splitlines()[0] if text.strip() else type(error).__name__]
    if cause is not None and str(cause).strip():
        lines.append(str(cause).strip().splitlines()[0])
    return " ".join(lines)


def _unparsable_override(overrides: list[str]) -> str | None:
    """The first override Hydra's grammar cannot read, with what is wrong with it, or ``None``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

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


def _values_to_check(override: Any) -> list[str]:
    """The values of one override that a job may get: each value of a choice or range sweep, and both ends of an
    interval (which a sweeper such as Optuna samples between)."""
    if not override.is_sweep_override():
        return [override.get_value_element_as_str()]
    if override.is_interval_sweep():
        sweep = override.value()
        return [str(sweep.start), str(sweep.end)]
    return list(override.sweep_string_iterator())


def _job_overrides(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The override lists to check: the command line itself, or for a multirun each value of each sweep (the other
    sweeps at their first value), which finds every bad value without composing the whole product."""
    if not multirun:
        return [overrides]
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    choices = []
    for override in parsed:
        key = override.get_key_element()
        choices.append([f"{key}={value}" for value in _values_to_check(override)])
    first = [options[0] for options in choices]
    jobs = [first]
    for i, options in enumerate(choices):
        jobs += [[*first[:i], option, *first[i + 1 :]] for option in options[1:]]
    return jobs


def _with_sweeper_params(config_dir: str, config_name: str, overrides: list[str]) -> list[str]:
    """``overrides`` preceded by the sweep that the config itself holds in ``hydra.sweeper.params`` (e.g.
    ``+hparams_search=omega_mask_optuna``), as the sweeper will see them: the command line wins for a flag in both."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    first = _job_overrides(overrides, multirun=True)[0]
    try:
        with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
            params = compose(config_name, overrides=first, return_hydra_config=True).hydra.sweeper.get("params")
    except (HydraException, OmegaConfBaseException):
        return overrides  # the checks below compose the same overrides and report the error
    if not params:
        return overrides
    on_command_line = {o.key_or_group for o in OverridesParser.create().parse_overrides(overrides)}
    from_config = [f"{key}={value}" for key, value in params.items() if key not in on_command_line]
    return [*from_config, *overrides]


def preflight(argv: list[str]) -> None:
    """Compose and check the config of every job ``argv`` describes. Raises :class:`RefusedError`; writes nothing."""
    from hydra._internal.utils import get_args_parser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    args = get_args_parser().parse_args(argv)
    if any(getattr(args, option, None) for option in _INFO_OPTIONS):
        return
    config_dir = CONFIG_DIR
    if args.config_path:
        config_dir = (REPO / args.config_path).resolve()
    config_name = args.config_name or "config"
    from hydra import compose, initialize_config_dir

    from training.config import ConfigError, validate_config

    overrides = list(args.overrides)
    try:
        if args.multirun:
            overrides = _with_sweeper_params(str(config_dir), config_name, overrides)
        jobs = _job_overrides(overrides, bool(args.multirun))
    except HydraException as error:  # a sweep that does not parse, e.g. seed=[0,
        if wants_traceback():
            raise
        raise RefusedError(composition_message(error, overrides)) from error
    from hydra.core.hydra_config import HydraConfig

    output_dirs = set()
    for job in jobs:
        try:
            with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
                cfg = compose(config_name, overrides=job, return_hydra_config=True)
            # Values may refer to Hydra's own config (train.output_dir='runs/${hydra:job.num}'): resolvable now as
            # they will be in the job (a job's number is not known yet; Hydra sets its config again for each job).
            HydraConfig.instance().set_config(cfg)
        except (HydraException, OmegaConfBaseException) as error:
            if wants_traceback():
                raise
            raise RefusedError(composition_message(error, job)) from error
        try:
            validate_config(cfg)
        except ConfigError as error:
            if wants_traceback():
                raise
            raise RefusedError(str(error)) from error
        output_dirs.add(cfg.train._get_node("output_dir")._value())  # as written: ${...} may name each job
    _check_shared_output_dir(output_dirs, len(jobs))


def _check_shared_output_dir(output_dirs: set[Any], jobs: int) -> None:
    """Refuse a multirun whose jobs would all write into one ``train.output_dir`` (the second would be refused
    after the first had trained, and the summary would name Hydra's empty job folders)."""
    [shared] = output_dirs if len(output_dirs) == 1 else [None]
    if jobs > 1 and isinstance(shared, str) and "${" not in shared:
        raise RefusedError(
            f"train.output_dir={shared} is the same folder for every job of this multirun, and a folder holds one "
            "run. Drop it (each job writes into hydra.sweep.dir/<job number>), sweep it, or name each job's folder, "
            "e.g. train.output_dir='runs/${hydra:job.num}'."
        )


def user_errors() -> tuple[type[BaseException], ...]:
    """The errors that name a flag, file or folder at fault: shown as one line, never as a traceback."""
    from datamodules import DataError
    from models.module import NonFiniteLossError
    from training.checkpoints import CheckpointError
    from training.config import ConfigError
    from training.run_folder import RunFolderError

    return (ConfigError, DataError, CheckpointError, RunFolderError, NonFiniteLossError)


def exit_code(error: BaseException) -> int:
    """:data:`EXIT_FAILED` for an error met while running, :data:`EXIT_REFUSED` for one met before writing."""
    from models.module import NonFiniteLossError
    from training.checkpoints import CheckpointSaveError

    return EXIT_FAILED if isinstance(error, NonFiniteLossError | CheckpointSaveError) else EXIT_REFUSED


def _multirun_job() -> tuple[list[str], Path, Path] | None:
    """(overrides, job folder, sweep folder) when this process runs a job of a Hydra multirun."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        hydra_cfg = HydraConfig.get()
    except ValueError:
        return None
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    return list(hydra_cfg.overrides.task), Path(hydra_cfg.runtime.output_dir), Path(hydra_cfg.sweep.dir)


def run_task(cfg: Any) -> float | None:
    """Hydra's task function: ``train(cfg)``; returns the validation accuracy for sweepers (None for a failed job:
    the Optuna sweeper records it as a failed trial and goes on, where NaN makes hydra-optuna-sweeper 1.3 crash).

    A refused single run prints one line and exits; a refused job of a multirun prints one line naming the job,
    removes the empty folder Hydra made for it, and lets the other jobs run. Each job of a multirun is recorded for
    the summary at its end (training.multirun), whichever process the launcher ran it in.
    """
    from training.multirun import record_job
    from training.run import train

    job = _multirun_job()
    try:
        metrics = train(cfg)
    except user_errors() as error:
        if wants_traceback():
            raise
        if job is None:
            print(one_line(error), file=sys.stderr, flush=True)
            raise SystemExit(exit_code(error)) from None
        overrides, folder, sweep = job
        print(f"job {folder.name} [{' '.join(overrides)}]: {one_line(error)}", file=sys.stderr, flush=True)
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        record_job(sweep, folder, overrides, one_line(error), failed=True)
        return None
    if job is not None:
        overrides, folder, sweep = job
        shown = "  ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k in ("val/acc", "test/acc"))
        run_folder = Path(metrics["run_folder"]) if "run_folder" in metrics else folder
        if run_folder.resolve() != folder.resolve() and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()  # the job wrote into a train.output_dir of its own: Hydra's folder stayed empty
        record_job(sweep, folder, overrides, shown, failed=False, run_folder=run_folder)
    return float(metrics.get("val/acc", math.nan))


def main(hydra_main: Any, argv: list[str]) -> int:
    """``main.py``: check the command line, then hand it to Hydra (``hydra_main`` is the ``@hydra.main`` function)."""
    args = switches_first(pop_verbose(argv[1:]))
    try:
        preflight(args)
    except RefusedError as error:
        print(one_line(error), file=sys.stderr)
        return EXIT_REFUSED
    sys.argv = [argv[0], *args]
    hydra_main()
    from training import multirun

    return multirun.exit_code  # non-zero when a job of a multirun failed (its summary says which)


__all__ = [
    "EXIT_FAILED",
    "EXIT_REFUSED",
    "composition_message",
    "exit_code",
    "main",
    "one_line",
    "preflight",
    "presets",
    "run_task",
    "user_errors",
]
