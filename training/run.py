"""``train(cfg)``: check everything, then build the trainer and fit and/or evaluate. Returns the metrics.

A run happens in two steps. :func:`plan_run` makes every check that can be made before training (flags, network,
optimizer and schedule settings, device, checkpoint files and their compatibility with the flags, the run folder, and
the data of every split) and writes nothing but the dataset's own files in ``dataset.data_dir``. Only then does
:func:`execute` create and lock the run folder and write into it. A refused run therefore leaves nothing behind.
"""

from __future__ import annotations

import os
import secrets
import string
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import EarlyStopping, LearningRateMonitor
from pytorch_lightning.loggers import Logger
from pytorch_lightning.utilities import rank_zero_only

from ckconv.hints import count_parameters
from datamodules import CCNNDataModule
from models.module import ClassificationModule, NonFiniteLossError
from models.plot_kernels import KernelPlotCallback
from training.allocator import keep_freed_memory
from training.build import build_datamodule, build_module, resolve_path
from training.callbacks import ConfigInCheckpoint, EpochSummary, GradNormLogger, RNGStateCallback, RunCheckpoint
from training.checkpoints import (
    AtomicCheckpointIO,
    check_resumable,
    load_weights,
    read_checkpoint,
    remove_stale_temporaries,
)
from training.compat import check_checkpoint_matches
from training.config import ConfigError, check_against_data, validate_config
from training.console import ConsoleLog, InterruptNotice, ModelTable, ProgressBar, quiet_lightning
from training.devices import select_accelerator, select_precision
from training.ema import build_ema, check_resume_ema
from training.loggers import AppendingCSVLogger, RunWandbLogger, check_logger_packages, tensorboard_logger
from training.predictions import PredictionWriter
from training.resolution import (
    check_resolution_data,
    check_resolutions,
    check_resolutions_fit,
    evaluate_resolutions,
)
from training.run_folder import (
    RunFolderError,
    RunLock,
    check_run_folder,
    default_run_folder,
    holds_run,
    run_folder_of_checkpoint,
)
from training.timing import RunTimer

# What to change after a non-finite loss, in flags (the module says it in its own arguments' names).
NON_FINITE_FIXES = "Lower optimizer.lr, set train.grad_clip, or pass train.skip_nonfinite=True to skip such batches."
# Set by the first process of a multi-process run (DDP) for the processes Lightning starts: they write into its folder.
RUN_DIR_ENV = "CCNN_RUN_DIR"


@dataclass
class RunPlan:
    """Everything a checked run needs; nothing of it has been written yet."""

    cfg: DictConfig
    datamodule: CCNNDataModule
    module: ClassificationModule
    parameters: int
    folder: Path
    resume: Path | None
    accelerator: str
    precision: str
    default_folder: bool  # chosen by time stamp (another name is taken if a run of the same second took it)


def _is_first_process() -> bool:
    return rank_zero_only.rank == 0


def _hydra_job_folder() -> Path | None:
    """The job folder Hydra made for this job of a multirun (``hydra.sweep.dir/<n>``), else ``None``.

    Single runs set ``hydra.run.dir`` to ``.`` (cfg/config.yaml), so Hydra makes no folder; a user who sets it to
    something else asks for that folder.
    """
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra_cfg = HydraConfig.get()
    except (ImportError, ValueError):
        return None
    if hydra_cfg.mode == RunMode.MULTIRUN or str(hydra_cfg.run.dir) not in (".", ""):
        return Path(hydra_cfg.runtime.output_dir)
    return None


def choose_run_folder(cfg: DictConfig, resume: Path | None) -> tuple[Path, bool]:
    """The run folder and whether it is a time-stamped default. Resumed runs continue in their own folder."""
    requested = resolve_path(cfg.train.output_dir) if cfg.train.output_dir else None
    if resume is not None:
        own = run_folder_of_checkpoint(resume)
        if own is None and requested is None:
            raise ConfigError(
                f"train.resume={resume} is not inside a run's checkpoints/ folder; also pass train.output_dir=<the "
                "folder to continue the run in>."
            )
        if own is not None and requested is not None and requested.resolve() != own.resolve():
            raise ConfigError(
                f"train.resume={resume} continues the run in {own}, but train.output_dir={requested}: a resumed run "
                "writes into its own folder (its best checkpoint and logs are there). Drop train.output_dir."
            )
        if own is None and holds_run(requested):  # type: ignore[arg-type]
            # Nothing ties a loose checkpoint to that folder: its best.ckpt would be evaluated as this run's.
            raise RunFolderError(
                f"train.resume={resume} is not one of {requested}'s checkpoints, and {requested} already holds a run: "
                f"a checkpoint from outside a run folder continues in a new one. Choose an empty train.output_dir, or "
                f"resume that run with train.resume={requested / 'checkpoints' / 'last.ckpt'}."
            )
        return (own or requested), False  # type: ignore[return-value]
    if requested is not None:
        return requested, False
    job = _hydra_job_folder()
    if job is not None:
        return job, False
    return default_run_folder(resolve_path("outputs")), True


def _load_for_start(cfg: DictConfig, module: ClassificationModule) -> None:
    """Load ``pretrained.filename`` into ``module`` after checking that it was written for these flags."""
    path = resolve_path(cfg.pretrained.filename)
    checkpoint = read_checkpoint(path)
    check_checkpoint_matches(cfg, checkpoint, path, resuming=False)
    load_weights(module, path)
    # The weights start this run; the best validation accuracy stored with them is the other run's record, and a
    # fine-tuning run that kept it reported it as its own val/acc_best.
    module.best_val_acc.reset()


def _check_resume(cfg: DictConfig, path: Path, module: ClassificationModule) -> None:
    checkpoint = read_checkpoint(path)
    check_resumable(checkpoint, path, cfg.train.epochs)
    check_resume_ema(cfg.train.ema, checkpoint, path)
    check_checkpoint_matches(cfg, checkpoint, path, resuming=True)
    load_weights(module, path)  # the tensors fit (Lightning loads them again when it restores the trainer state)


def _check_data(datamodule: CCNNDataModule) -> None:
    """Prepare (download or generate) and load every split now, so that missing or corrupt files (test files
    included) are found before the run folder exists rather than after training."""
    if _is_first_process():
        datamodule.prepare_data()
    datamodule.setup()


def plan_run(cfg: DictConfig) -> RunPlan:
    """Every check of a run, in the order of their cost; writes nothing (see the module docstring).

    Raises:
        ConfigError, DataError, CheckpointError, RunFolderError: naming the flag, file or folder at fault.
    """
    validate_config(cfg)
    datamodule = build_datamodule(cfg)
    meta = datamodule.meta
    check_against_data(cfg, meta.data_dim)
    check_resolutions(cfg, datamodule)  # test.resolutions, and the pools at the training size
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    module = build_module(cfg, meta)
    build_ema(cfg)  # its constructor refuses a train.ema it cannot use, now rather than when training starts
    check_logger_packages(cfg)
    parameters = count_parameters(module.parameters())
    accelerator = select_accelerator(cfg.device)
    precision = select_precision(cfg.train.mixed_precision, accelerator)
    if cfg.train.dry_run:
        return RunPlan(cfg, datamodule, module, parameters, Path(), None, accelerator, precision, False)

    resume = resolve_path(cfg.train.resume) if cfg.train.resume else None
    if resume is not None:
        _check_resume(cfg, resume, module)
    if cfg.pretrained.load:
        _load_for_start(cfg, module)
    check_resolutions_fit(cfg, datamodule, module.net, accelerator)  # test.resolutions: kernel grids, memory
    if _is_first_process():
        folder, default = choose_run_folder(cfg, resume)
        check_run_folder(folder, resuming=resume is not None)
    else:
        folder, default = _worker_folder(cfg), False
    _check_data(datamodule)
    check_resolution_data(cfg, datamodule, module.net, accelerator)  # the test data at each of test.resolutions
    return RunPlan(cfg, datamodule, module, parameters, folder, resume, accelerator, precision, default)


def _worker_folder(cfg: DictConfig) -> Path:
    """The run folder of a process that the first process of a multi-process run started (or a launcher did)."""
    if os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV])
    if cfg.train.output_dir:
        return resolve_path(cfg.train.output_dir)
    job = _hydra_job_folder()
    if job is not None:
        return job
    raise ConfigError("a multi-node run started by a cluster launcher needs train.output_dir=<shared folder>.")


def _loggers(cfg: DictConfig, out: Path) -> list[Logger]:
    loggers: list[Logger] = [AppendingCSVLogger(save_dir=str(out), name="", version="logs")]
    if cfg.train.tensorboard:
        loggers.append(tensorboard_logger(out))
    if not cfg.debug and os.environ.get("WANDB_MODE") != "disabled":
        loggers.append(
            RunWandbLogger(
                project=cfg.wandb.project,
                entity=cfg.wandb.entity,
                save_dir=str(out),
                id=_wandb_run_id(out),
                resume="allow",
                notes=cfg.comment,
            )
        )
    return loggers


def _wandb_run_id(out: Path) -> str:
    """One W&B run per run folder, so a resumed run continues the same W&B run.

    The id is drawn here in the form of W&B's own ids (8 characters of [a-z0-9]): the pinned wandb (0.31) no longer
    offers ``wandb.util.generate_id`` publicly, only under its private ``wandb.sdk.lib``.
    """
    path = out / "wandb_run_id.txt"
    if path.is_file():
        return path.read_text().strip()
    alphabet = string.ascii_lowercase + string.digits
    run_id = "".join(secrets.choice(alphabet) for _ in range(8))
    path.write_text(run_id)
    return run_id


def build_trainer(plan: RunPlan, config: dict[str, Any]) -> pl.Trainer:
    """The Lightning trainer with the project's callbacks, loggers and checkpoint I/O, writing into the run folder."""
    cfg, out = plan.cfg, plan.folder
    best = RunCheckpoint(
        dirpath=out / "checkpoints",
        filename="best",
        monitor="val/acc",
        mode="max",
        save_top_k=1,
        enable_version_counter=False,
    )
    # Lightning's save_last only writes when a top-k checkpoint was written in the same step, so a run whose
    # accuracy stalls would resume from a stale epoch. An unmonitored checkpoint writes last.ckpt every epoch.
    last = RunCheckpoint(dirpath=out / "checkpoints", filename="last", save_top_k=1, enable_version_counter=False)
    callbacks: list[pl.Callback] = [
        best,
        last,
        EarlyStopping(monitor="val/acc", mode="max", patience=cfg.train.max_epochs_no_improvement),
        RNGStateCallback(),
        ConfigInCheckpoint(config),
        timer := RunTimer(),
        EpochSummary(timer),  # after its timer, whose numbers it prints
        ModelTable(max_depth=2),
        LearningRateMonitor(logging_interval="step"),
        KernelPlotCallback(out / "kernels", every_n_epochs=max(1, cfg.train.epochs // 5)),
        InterruptNotice(out),
    ]
    if sys.stdout.isatty():  # a live bar in a terminal; logs and CI get EpochSummary's one line per epoch
        callbacks.append(ProgressBar())
    if cfg.train.track_grad_norm is not None:
        callbacks.append(GradNormLogger(float(cfg.train.track_grad_norm)))
    ema = build_ema(cfg)
    if ema is not None:
        callbacks.append(ema)
    gpu = plan.accelerator == "gpu"
    devices: Any = cfg.train.avail_gpus if cfg.train.avail_gpus > 0 else ("auto" if gpu else 1)
    strategy: Any = "auto"
    if cfg.train.distributed:
        strategy = pl.strategies.DDPStrategy(
            find_unused_parameters=False, process_group_backend="nccl" if gpu else "gloo"
        )
    return pl.Trainer(
        accelerator=plan.accelerator,
        devices=devices,
        num_nodes=cfg.train.num_nodes,
        strategy=strategy,
        sync_batchnorm=bool(cfg.train.distributed) and gpu,  # SyncBatchNorm is GPU-only
        precision=plan.precision,  # type: ignore[arg-type]
        max_epochs=cfg.train.epochs,
        gradient_clip_val=cfg.train.grad_clip or None,
        accumulate_grad_batches=cfg.train.accumulate_grad_steps,
        deterministic=cfg.deterministic,
        benchmark=not cfg.deterministic,
        callbacks=callbacks,
        logger=_loggers(cfg, out),
        plugins=[AtomicCheckpointIO()],
        default_root_dir=str(out),
        enable_progress_bar=sys.stdout.isatty(),
        enable_model_summary=False,  # ModelTable above prints it (True would add a second, announced)
        log_every_n_steps=10,
        limit_train_batches=_limit(cfg.train.limit_train_batches),
        limit_val_batches=_limit(cfg.train.limit_val_batches),
        limit_test_batches=_limit(cfg.train.limit_test_batches),
        num_sanity_val_steps=0,
    )


def _limit(value: float) -> float | None:
    """Lightning announces an explicit 1.0 ("100% of the batches will be used"); None means the same, silently."""
    return None if value == 1.0 else value


def _metrics(results: list[dict[str, float]]) -> dict[str, float]:
    merged: dict[str, float] = {}
    for entry in results:
        merged |= {k: float(v) for k, v in entry.items()}
    return merged


def _claim(plan: RunPlan) -> RunLock:
    """Create and lock the run folder (the first process of a run only). A time-stamped default folder that a run
    of the same second took meanwhile gives way to the next free name."""
    while True:
        lock = RunLock(plan.folder)
        try:
            lock.acquire(resuming=plan.resume is not None)
            return lock
        except RunFolderError:
            if not plan.default_folder:
                raise
            plan.folder = default_run_folder(plan.folder.parent.parent)


def execute(plan: RunPlan) -> dict[str, float]:
    """Write into the run folder, fit and/or evaluate as the plan's config says, and return the final metrics.

    The first process creates and locks the folder and copies what it prints into ``<run>/main.log``.
    """
    if not _is_first_process():
        return _fit_and_evaluate(plan)
    lock = _claim(plan)
    try:
        with ConsoleLog(plan.folder / "main.log"):
            remove_stale_temporaries(plan.folder / "checkpoints")  # left by a run killed while writing a checkpoint
            OmegaConf.save(plan.cfg, plan.folder / "config.yaml", resolve=True)
            note = f", note: {plan.cfg.comment}" if plan.cfg.comment else ""
            print(f"run folder: {plan.folder}{note}", flush=True)
            return _fit_and_evaluate(plan)
    finally:
        lock.release()


def _fit_and_evaluate(plan: RunPlan) -> dict[str, float]:
    cfg, module, datamodule, out = plan.cfg, plan.module, plan.datamodule, plan.folder
    os.environ[RUN_DIR_ENV] = str(out)  # processes that Lightning starts for DDP write into the same folder
    if cfg.train.compile:
        module.net.compile()  # in place: the state_dict keys stay those of the eager network
    trainer = build_trainer(plan, OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
    metrics: dict[str, float] = {"parameters": float(plan.parameters)}
    metrics["run_folder"] = str(out)  # type: ignore[assignment]  # where the run wrote, for sweeps' summaries
    if cfg.test.before_train:
        before = _metrics(trainer.test(module, datamodule=datamodule))
        metrics |= {f"before_train/{k}": v for k, v in before.items()}
    if cfg.train.do:
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=str(plan.resume) if plan.resume else None)
        except SystemExit:
            if trainer.interrupted:  # Ctrl-C: Lightning shut down cleanly and exits with 1; 130 is the shell's code
                raise SystemExit(130) from None
            raise
        except NonFiniteLossError as error:
            raise error.with_fixes(NON_FINITE_FIXES) from None
        last = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        metrics |= {f"{k}_last": v for k, v in last.items() if not k.endswith("_best")}
        best = out / "checkpoints" / "best.ckpt"  # this folder's own, whatever path a resumed state remembers
        if best.is_file():
            load_weights(module, best)
            metrics["best_checkpoint"] = str(best)  # type: ignore[assignment]
        elif plan.resume is not None and trainer.is_global_zero:
            # A resumed copy without its best.ckpt (only last.ckpt copied): no epoch of this process beat the restored
            # record, so no best.ckpt was written, and the final weights are all there is to evaluate.
            print(
                f"note: {best} does not exist (was it left behind when the run was copied?): val/acc and test/acc "
                "below are those of the final weights, val/acc_best the record of the run the checkpoint came from.",
                flush=True,
            )
    if cfg.test.predictions:  # this evaluation's only: validation inside fit and before_train write none
        trainer.callbacks.append(PredictionWriter(out / "predictions"))  # type: ignore[attr-defined]
    metrics |= _metrics(trainer.validate(module, datamodule=datamodule, verbose=False))
    metrics |= _metrics(trainer.test(module, datamodule=datamodule, verbose=False))
    metrics |= evaluate_resolutions(plan, trainer)  # test.resolutions: the same model at other resolutions
    timer = RunTimer.of(trainer)
    if timer is not None:
        metrics |= timer.totals()
    if not cfg.train.do:
        # The best validation accuracy of the run that wrote the checkpoint is not this evaluation's result.
        metrics.pop("val/acc_best", None)
    for logger in trainer.loggers:
        logger.log_metrics({k: v for k, v in metrics.items() if isinstance(v, float)})
        logger.save()
    if trainer.is_global_zero:
        if timer is not None:
            print(timer.summary())
        shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float) and "acc" in k)
        print(f"Final: {shown}  (outputs: {out})")
    return metrics


def train(cfg: DictConfig) -> dict[str, float]:
    """Run what ``cfg`` asks for and return the final metrics (``val/acc``, ``test/acc``, ...).

    - ``train.dry_run``: build the model from the dataset's metadata only; print its summary and parameter count.
    - ``train.do``: fit (resuming from ``train.resume`` if given), then evaluate the best checkpoint on val and test.
    - ``train.do=False``: evaluate the weights of ``pretrained.filename``.

    Raises:
        ConfigError, DataError, CheckpointError, RunFolderError: before anything is written (see :func:`plan_run`).
    """
    keep_freed_memory()  # CPU steps re-fault every large activation otherwise (training/allocator.py)
    quiet_lightning()
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    plan = plan_run(cfg)
    if cfg.train.dry_run:
        ModelTable.show(plan.module, max_depth=3)
        print(f"parameters: {plan.parameters}")
        return {"parameters": float(plan.parameters)}
    return execute(plan)


__all__ = ["ClassificationModule", "RunPlan", "build_trainer", "execute", "plan_run", "train"]
