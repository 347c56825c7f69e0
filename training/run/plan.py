"""Every check of a run, made before anything is written: :func:`plan_run` returns what the run needs.

In the order of their cost: the flags (``training.config.checks``, no torch), the objects they build (the datamodule's
metadata, the network, the optimizer and schedule settings, the weight average), the device, the checkpoints the
run reads and their compatibility with the flags, the run folder, and the data of every split. Writes nothing but a
dataset's own files in ``dataset.data_dir`` (a download, a cache). ``training.run.execute`` then writes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.utilities import rank_zero_only

from ckconv.hints import count_parameters
from datamodules import CCNNDataModule, DataMeta
from models.module import ClassificationModule
from training.build import build_datamodule, build_ema, build_module, resolve_path
from training.callbacks.ema import EMAWeights
from training.config.checks import ConfigError
from training.evaluation.resolution import check_resolution_data, check_resolutions, check_resolutions_fit
from training.run.checkpoints import check_resumable, load_weights, read_checkpoint
from training.run.compat import check_checkpoint_matches
from training.run.devices import select_accelerator, select_precision
from training.run.folder import RunFolderError, check_run_folder, holds_run
from training.run.logs import check_logger_packages


@dataclass
class RunPlan:
    """Everything a checked run needs; nothing of it has been written yet."""

    cfg: DictConfig
    datamodule: CCNNDataModule
    module: ClassificationModule
    ema: EMAWeights | None
    parameters: int
    folder: Path | None  # None: a dry run, which writes nothing
    resume: Path | None
    accelerator: str
    precision: str


def is_first_process() -> bool:
    return rank_zero_only.rank == 0


def check_against_data(cfg: DictConfig, meta: DataMeta) -> None:
    """The flags that must agree with the dataset's dimension (known from its metadata, before loading)."""
    if cfg.net.data_dim not in (None, 0, meta.data_dim):  # 0: the original's "from the dataset"
        raise ConfigError(
            f"net.data_dim={cfg.net.data_dim} but dataset.name={cfg.dataset.name} (data_type={cfg.dataset.data_type}) "
            f"is {meta.data_dim}D; leave net.data_dim unset.",
            "net.data_dim",
        )
    if cfg.conv.causal and meta.data_dim != 1:
        raise ConfigError(
            f"conv.causal=True needs 1D data, but dataset.name={cfg.dataset.name} with dataset.data_type="
            f"{cfg.dataset.data_type} is {meta.data_dim}D; use dataset.data_type=sequence or conv.causal=False.",
            "conv.causal",
        )


def check_batch_limits(cfg: DictConfig, datamodule: CCNNDataModule) -> None:
    """Refuse ``train.limit_*_batches`` that leave a split without a batch (Lightning would refuse a fraction of a
    split only when it reaches that split, after training)."""
    splits = {
        "train": datamodule.train_dataloader,
        "val": datamodule.val_dataloader,
        "test": datamodule.test_dataloader,
    }
    for split, loader in splits.items():
        flag = f"train.limit_{split}_batches"
        limit = cfg.train[f"limit_{split}_batches"]
        if split == "train" and not cfg.train.do:
            continue
        batches = len(loader())
        kept = limit if isinstance(limit, int) else math.floor(limit * batches)
        if min(kept, batches) < 1 and limit != 0:
            raise ConfigError(
                f"{flag}={limit} keeps no batch of the {batches} of the {split} split; use a larger fraction or a "
                "whole number of batches.",
                flag,
            )


def _load_for_start(cfg: DictConfig, module: ClassificationModule) -> None:
    """Load ``pretrained.filename`` into ``module`` after checking that it was written for these flags."""
    path = resolve_path(cfg.pretrained.filename)
    checkpoint = read_checkpoint(path)
    check_checkpoint_matches(cfg, checkpoint, path, "fine-tune" if cfg.train.do else "evaluate")
    load_weights(module, path)
    # The weights start this run; the best validation accuracy stored with them is the other run's record, and a
    # fine-tuning run that kept it reported it as its own val/acc_best.
    module.best_val_acc.reset()


def _check_resume(cfg: DictConfig, path: Path, module: ClassificationModule) -> None:
    checkpoint = read_checkpoint(path)
    check_resumable(checkpoint, path, cfg.train.epochs)
    check_checkpoint_matches(cfg, checkpoint, path, "resume")
    load_weights(module, path)  # the tensors fit (Lightning loads them again when it restores the trainer state)


def _check_loose_resume(resume: Path | None, folder: Path) -> None:
    """A checkpoint from outside a run folder continues in a new folder: nothing ties it to another run's."""
    if resume is not None and resume.parent != folder / "checkpoints" and holds_run(folder):
        raise RunFolderError(
            f"train.resume={resume} is not one of {folder}'s checkpoints, and {folder} already holds a run: a "
            f"checkpoint from outside a run folder continues in a new one. Choose an empty train.output_dir, or resume "
            f"that run with train.resume={folder / 'checkpoints' / 'last.ckpt'}."
        )


def plan_run(cfg: DictConfig, folder: Path | None) -> RunPlan:
    """Every check of a run that writes into ``folder`` (Hydra's run folder), in the order of their cost, but those of
    the flags alone (``training.config.checks.check_config``, made first, without torch).

    Raises:
        ConfigError, DataError, CheckpointError, RunFolderError: naming the flag, file or folder at fault.
    """
    datamodule = build_datamodule(cfg)
    check_against_data(cfg, datamodule.meta)
    check_resolutions(cfg, datamodule)  # test.resolutions, and the pools at the training size
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    module = build_module(cfg, datamodule.meta)
    ema = build_ema(cfg)
    check_logger_packages(cfg)
    parameters = count_parameters(module.parameters())
    accelerator = select_accelerator(cfg.device)
    precision = select_precision(cfg.train.mixed_precision, accelerator)
    plan = RunPlan(cfg, datamodule, module, ema, parameters, None, None, accelerator, precision)
    if cfg.train.dry_run:
        return plan
    plan.resume = resolve_path(cfg.train.resume) if cfg.train.resume else None
    if plan.resume is not None:
        _check_resume(cfg, plan.resume, module)
    if cfg.pretrained.load:
        _load_for_start(cfg, module)
    check_resolutions_fit(cfg, datamodule, module.net, accelerator)  # test.resolutions: kernel grids, memory
    plan.folder = folder
    if is_first_process():
        if folder is not None:
            check_run_folder(folder, resuming=plan.resume is not None)
            _check_loose_resume(plan.resume, folder)
        datamodule.prepare_data()  # a download, or a generated set's cache
    # Every split is loaded now, so that missing or corrupt files (test files included) are found before the run
    # folder exists rather than after training.
    datamodule.setup()
    check_batch_limits(cfg, datamodule)
    check_resolution_data(cfg, datamodule, module.net, accelerator)  # the test data at each of test.resolutions
    return plan
