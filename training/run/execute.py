"""``train(cfg)``: every check first (``training.run.plan``), then the run writes: it locks its folder, saves its
config, fits and/or evaluates, and returns its metrics.

Under ``main.py`` Hydra has made the run folder and its log ``main.log`` (cfg/hydra/job_logging/ccnn.yaml) after the
checks passed (``training.cli``); ``train(cfg)`` called from Python does the same itself.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import string
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import EarlyStopping, LearningRateMonitor, RichProgressBar, Timer

from models.module import NonFiniteLossError
from models.plot_kernels import KernelPlotCallback
from training.build import arguments
from training.callbacks.console import ModelTable, model_table
from training.callbacks.epochs import EpochClock, run_times, times_line
from training.callbacks.predictions import PredictionWriter
from training.callbacks.run_state import ConfigInCheckpoint, GradNormLogger, RNGStateCallback, RunCheckpoint
from training.config.checks import check_config
from training.config.resolvers import run_folder
from training.evaluation.resolution import evaluate_resolutions
from training.run.allocator import keep_freed_memory
from training.run.checkpoints import AtomicCheckpointIO, load_weights, remove_stale_temporaries
from training.run.folder import RESULTS_NAME, RunLock
from training.run.garbage import long_lived_objects_frozen
from training.run.interrupt import InterruptNotice
from training.run.logs import ConsoleHandler, run_loggers
from training.run.plan import RunPlan, is_first_process, plan_run

log = logging.getLogger(__name__)

# What to change after a non-finite loss, in flags (the module says it in its own arguments' names).
NON_FINITE_FIXES = "Lower optimizer.lr, set train.grad_clip, or pass train.skip_nonfinite=True to skip such batches."
# Set by the first process of a multi-process run (DDP) for the processes Lightning starts: they write into its folder.
RUN_DIR_ENV = "CCNN_RUN_DIR"
# With train.skip_nonfinite=True, a run that skipped more than this share of its training batches reports no result.
MAX_SKIPPED_SHARE = 0.1
# Lightning's warnings about its own internals, or about settings this project makes on purpose (metrics are logged
# per epoch, so a logging interval longer than a short epoch loses nothing; the run folder is checked before).
_WARNING_NOISE = (
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",
    r"The number of training batches \(\d+\) is smaller than the logging interval.*",
    r"Checkpoint directory .* exists and is not empty\.",
    r".*does not have many workers.*",
    r"`training_step` returned `None`.*",  # a batch skipped as non-finite (train.skip_nonfinite): said once, our way
    # Distributed evaluation pads the split to equal shares; the metrics are reduced across processes and the
    # README says how to get the exact figure (one device), so Lightning's advice, twice per run, is noise.
    r"Using `DistributedSampler` with the dataloaders\..*",
)
_LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric")


class RunFailedError(RuntimeError):
    """The run ended without a result worth reporting (it trained on no batch, or skipped too many): exit 1."""


def hydra_folder() -> Path | None:
    """The folder Hydra made for this run or job, or ``None`` when ``train`` was not called by a Hydra app."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:
        return None


def folder_of(cfg: DictConfig) -> Path:
    """Where the run writes: the first process's folder (for the processes DDP starts), Hydra's, or the one
    cfg/config.yaml would give Hydra (``training.config.resolvers``)."""
    if not is_first_process() and os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV])
    return hydra_folder() or Path(run_folder(cfg.train.output_dir, cfg.train.resume))


@contextmanager
def run_log(folder: Path) -> Iterator[None]:
    """What Hydra's job logging gives ``main.py``, for a run started from Python: the console and ``main.log``
    without Lightning's info lines; and warnings as log records, so that ``main.log`` keeps them too."""
    for pattern in _WARNING_NOISE:
        warnings.filterwarnings("ignore", message=pattern)
    logging.captureWarnings(True)
    if hydra_folder() is not None:
        yield
        return
    root = logging.getLogger()
    folder.mkdir(parents=True, exist_ok=True)
    handlers = [ConsoleHandler(), logging.FileHandler(folder / "main.log", encoding="utf-8")]
    levels = {name: logging.getLogger(name).level for name in _LIGHTNING_LOGGERS}
    saved_level = root.level
    root.setLevel(logging.INFO)
    for name in _LIGHTNING_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for handler in handlers:
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
    try:
        yield
    finally:
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(saved_level)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def _wandb_run_id(folder: Path) -> str:
    """One W&B run per run folder, so a resumed run continues the same W&B run; the id has the form of W&B's own
    (8 characters of [a-z0-9])."""
    path = folder / "wandb_run_id.txt"
    if path.is_file():
        return path.read_text().strip()
    alphabet = string.ascii_lowercase + string.digits
    run_id = "".join(secrets.choice(alphabet) for _ in range(8))
    path.write_text(run_id)
    return run_id


def build_trainer(plan: RunPlan, folder: Path) -> pl.Trainer:
    """The Lightning trainer with the project's callbacks, loggers and checkpoint I/O, writing into ``folder``."""
    cfg = plan.cfg
    best = RunCheckpoint(
        dirpath=folder / "checkpoints",
        filename="best",
        monitor="val/acc",
        mode="max",
        save_top_k=1,
        enable_version_counter=False,
    )
    # Lightning's save_last only writes when a top-k checkpoint was written in the same step, so a run whose
    # accuracy stalls would resume from a stale epoch. An unmonitored checkpoint writes last.ckpt every epoch.
    last = RunCheckpoint(dirpath=folder / "checkpoints", filename="last", save_top_k=1, enable_version_counter=False)
    callbacks: list[pl.Callback] = [
        best,
        last,
        EarlyStopping(monitor="val/acc", mode="max", **arguments(cfg, "early_stopping", EarlyStopping)),
        RNGStateCallback(),
        ConfigInCheckpoint(OmegaConf.to_container(cfg, resolve=True)),  # type: ignore[arg-type]
        Timer(),
        EpochClock(),
        ModelTable(max_depth=2),
        LearningRateMonitor(logging_interval="step"),
        KernelPlotCallback(folder / "kernels"),
        InterruptNotice(folder),
    ]
    if sys.stdout.isatty():  # a live bar in a terminal; logs and CI get one line per epoch
        callbacks.append(RichProgressBar())
    if cfg.train.track_grad_norm is not None:
        callbacks.append(GradNormLogger(float(cfg.train.track_grad_norm)))
    if plan.ema is not None:
        callbacks.append(plan.ema)
    gpu = plan.accelerator == "gpu"
    devices: Any = cfg.train.avail_gpus if cfg.train.avail_gpus > 0 else ("auto" if gpu else 1)
    strategy: Any = "auto"
    if cfg.train.distributed:
        strategy = pl.strategies.DDPStrategy(
            find_unused_parameters=False, process_group_backend="nccl" if gpu else "gloo"
        )
    wandb_id = _wandb_run_id(folder) if not cfg.debug and os.environ.get("WANDB_MODE") != "disabled" else None
    return pl.Trainer(
        accelerator=plan.accelerator,
        devices=devices,
        strategy=strategy,
        sync_batchnorm=bool(cfg.train.distributed) and gpu,  # SyncBatchNorm is GPU-only
        precision=plan.precision,  # type: ignore[arg-type]
        benchmark=not cfg.deterministic,
        callbacks=callbacks,
        logger=run_loggers(cfg, folder, wandb_id),
        plugins=[AtomicCheckpointIO()],
        default_root_dir=str(folder),
        enable_progress_bar=sys.stdout.isatty(),
        enable_model_summary=False,  # ModelTable above logs it
        log_every_n_steps=10,
        num_sanity_val_steps=0,
        **arguments(cfg, "trainer", pl.Trainer),
    )


def _metrics(results: list[dict[str, float]]) -> dict[str, float]:
    merged: dict[str, float] = {}
    for entry in results:
        merged |= {k: float(v) for k, v in entry.items()}
    return merged


def _callback(trainer: pl.Trainer, kind: type) -> Any:
    return next((c for c in trainer.callbacks if isinstance(c, kind)), None)  # type: ignore[attr-defined]


def _check_trained(plan: RunPlan, trainer: pl.Trainer) -> None:
    """Refuse to report a run that trained on nothing, or that skipped too many batches as non-finite."""
    if trainer.global_step == 0:
        raise RunFailedError(
            f"the run trained on no batch (train.limit_train_batches={plan.cfg.train.limit_train_batches}, or every "
            "batch was skipped as non-finite): there is no trained network to report."
        )
    seen, skipped = plan.module.seen_batches, plan.module.skipped_batches
    if skipped > MAX_SKIPPED_SHARE * seen:
        raise RunFailedError(
            f"the run skipped {skipped} of its {seen} training batches as non-finite (train.skip_nonfinite=True), more "
            f"than {MAX_SKIPPED_SHARE:.0%}: its result would be that of a broken network. Lower optimizer.lr or set "
            "train.grad_clip."
        )
    if skipped:
        log.warning(f"the run skipped {skipped} of its {seen} training batches as non-finite (train.skip_nonfinite).")


def _fit_and_evaluate(plan: RunPlan, folder: Path) -> dict[str, Any]:
    cfg, module, datamodule = plan.cfg, plan.module, plan.datamodule
    if cfg.train.compile:
        module.net.compile()  # in place: the state_dict keys stay those of the eager network
    trainer = build_trainer(plan, folder)
    metrics: dict[str, Any] = {"parameters": float(plan.parameters), "run_folder": str(folder)}
    metrics["processes"] = float(trainer.world_size)
    if cfg.test.before_train:
        before = _metrics(trainer.test(module, datamodule=datamodule, verbose=False))
        metrics |= {f"before_train/{k}": v for k, v in before.items()}
    clock: EpochClock = _callback(trainer, EpochClock)
    if cfg.train.do:
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=str(plan.resume) if plan.resume else None)
        except SystemExit:
            if trainer.interrupted:  # Ctrl-C: Lightning shut down cleanly and exits with 1; 130 is the shell's code
                raise SystemExit(130) from None
            raise
        except NonFiniteLossError as error:
            raise error.with_fixes(NON_FINITE_FIXES) from None
        _check_trained(plan, trainer)
        stopper: EarlyStopping = _callback(trainer, EarlyStopping)
        if stopper.stopped_epoch > 0:  # the epoch lines end before epoch n/n: say why, not only that
            log.info(
                f"stopped early after epoch {stopper.stopped_epoch + 1}/{cfg.train.epochs}: val/acc did not improve "
                f"for {stopper.patience} epochs (train.max_epochs_no_improvement={stopper.patience})."
            )
        last = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        metrics |= {f"{k}_last": v for k, v in last.items() if not k.endswith("_best")}
        # this folder's own (test.checkpoint), whatever path a resumed state remembers
        chosen = folder / "checkpoints" / f"{cfg.test.checkpoint}.ckpt"
        if chosen.is_file():
            load_weights(module, chosen)
            metrics["checkpoint"] = str(chosen)
        elif plan.resume is not None and trainer.is_global_zero:
            # A resumed copy without its best.ckpt (only last.ckpt copied): no epoch of this process beat the restored
            # record, so no best.ckpt was written, and the final weights are all there is to evaluate.
            log.info(
                f"note: {chosen} does not exist (was it left behind when the run was copied?): val/acc and test/acc "
                "below are those of the final weights, val/acc_best the record of the run the checkpoint came from."
            )
    if cfg.test.predictions:  # this evaluation's only: validation inside fit and before_train write none
        trainer.callbacks.append(PredictionWriter(folder / "predictions"))  # type: ignore[attr-defined]
    metrics |= _metrics(trainer.validate(module, datamodule=datamodule, verbose=False))
    metrics |= _metrics(trainer.test(module, datamodule=datamodule, verbose=False))
    if "test/acc" not in metrics:
        raise RunFailedError(
            "the evaluation tested no batch (train.limit_test_batches=0): there is no result to report."
        )
    metrics |= evaluate_resolutions(cfg, datamodule, module, folder, trainer)  # the same model at other resolutions
    metrics |= run_times(_callback(trainer, Timer), clock)
    if not cfg.train.do:
        # The best validation accuracy of the run that wrote the checkpoint is not this evaluation's result.
        metrics.pop("val/acc_best", None)
    for logger in trainer.loggers:
        logger.log_metrics({k: v for k, v in metrics.items() if isinstance(v, float)})
        logger.save()
    if trainer.is_global_zero:
        log.info(times_line(run_times(_callback(trainer, Timer), clock)))
        shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float) and "acc" in k)
        log.info(f"Final: {shown}  (outputs: {folder})")
    return metrics


def _write_results(folder: Path, metrics: dict[str, Any]) -> None:
    """``<run>/results.json``: the final metrics of a finished run, written aside and moved into place."""
    path = folder / RESULTS_NAME
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    os.replace(partial, path)


def execute(plan: RunPlan, folder: Path) -> dict[str, Any]:
    """Write into ``folder``, fit and/or evaluate as the plan's config says, and return the final metrics.

    The first process locks the folder, saves the run's resolved ``config.yaml`` when the run starts (a resume keeps
    the one its run started with) and its ``results.json`` when it ends.
    """
    if not is_first_process():
        return _fit_and_evaluate(plan, folder)
    lock = RunLock(folder)
    lock.acquire(resuming=plan.resume is not None)
    os.environ[RUN_DIR_ENV] = str(folder)  # the processes that Lightning starts for DDP write into the same folder
    try:
        remove_stale_temporaries(folder / "checkpoints")  # left by a run killed while writing a checkpoint
        if plan.resume is None or not (folder / "config.yaml").is_file():
            OmegaConf.save(plan.cfg, folder / "config.yaml", resolve=True)
        note = f", note: {plan.cfg.comment}" if plan.cfg.comment else ""
        log.info(f"run folder: {folder}{note}")
        metrics = _fit_and_evaluate(plan, folder)
        _write_results(folder, metrics)
        return metrics
    except OSError as error:  # a full disk or a read-only folder while writing what is not a checkpoint
        raise RunFailedError(f"could not write into {folder}: {error.strerror or error}.") from error
    finally:
        os.environ.pop(RUN_DIR_ENV, None)
        lock.release()


def prepare(cfg: DictConfig, folder: Path | None = None) -> tuple[RunPlan, Path]:
    """The checked plan of ``cfg`` and its run folder (``folder``, else :func:`folder_of`); see
    :func:`training.run.plan.plan_run`."""
    keep_freed_memory()  # CPU steps re-fault every large activation otherwise (training/run/allocator.py)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    folder = folder or folder_of(cfg)
    return plan_run(cfg, folder), folder


def check(cfg: DictConfig, folder: Path | None = None) -> tuple[RunPlan, Path]:
    """Every check ``main.py`` makes before it writes (the flags first, without torch), for code that runs a config
    itself (tools that run several): the checked plan and the run folder, for :func:`train`."""
    check_config(cfg)
    return prepare(cfg, folder)


def dry_run(plan: RunPlan) -> dict[str, float]:
    """``train.dry_run``: the model's table and parameter count (to the console only: nothing is written)."""
    print(model_table(plan.module, max_depth=3))
    print(f"parameters: {plan.parameters}")
    return {"parameters": float(plan.parameters)}


def train(cfg: DictConfig, prepared: tuple[RunPlan, Path] | None = None) -> dict[str, Any]:
    """Run what ``cfg`` asks for and return the final metrics (``val/acc``, ``test/acc``, ...).

    - ``train.dry_run``: build the model from the dataset's metadata only; print its summary and parameter count.
    - ``train.do``: fit (resuming from ``train.resume`` if given), then evaluate the best checkpoint on val and test.
    - ``train.do=False``: evaluate the weights of ``pretrained.filename``.

    Args:
        cfg: the run's flags.
        prepared: what :func:`prepare` returned for ``cfg`` (``main.py`` makes every check before Hydra writes).

    Raises:
        ConfigError, DataError, CheckpointError, RunFolderError: before anything is written (see ``plan_run``).
        NonFiniteLossError, CheckpointSaveError, RunFailedError: while running.
    """
    plan, folder = prepared or check(cfg)
    if cfg.train.dry_run:
        return dry_run(plan)
    with run_log(folder), long_lived_objects_frozen():  # training/run/garbage.py
        return execute(plan, folder)
