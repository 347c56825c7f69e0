"""Zero-shot evaluation at other resolutions: ``test.resolutions=[...]`` evaluates the run's model, after its usual
validation and test, on the test split of the same data sampled at each listed resolution.

A resolution is a value of the dataset's resolution option (``CCNNDataModule.resolution_option``): an image side in
pixels (``dataset.params.resolution``: MNIST, CIFAR, STL-10, PathFinder, MedMNIST 3D, Blobs3D), a sequence length
(``dataset.params.seq_length``: MNIST-1D) or a sample rate in Hz (``dataset.params.sample_rate``: Speech Commands).
The model is the one the run evaluated, unchanged: each continuous kernel is sampled on the grid of its input, the
same extent with more or fewer taps (``ckconv.conv``). The test split is read by a datamodule built from the run's
flags with only the resolution option changed, so everything else (normalisation, splits, batch size) is the run's.

A run checks the list in :func:`check_resolutions` and loads the data of each resolution in
:func:`check_resolution_data`, both in ``training.run.plan_run``, before anything is written; after the run's own
test, :func:`evaluate_resolutions` evaluates, prints the table, writes ``<run>/resolutions.csv`` and returns the
metrics ``test@<resolution>/acc`` and ``test@<resolution>/loss``, which the run logs with its other final metrics.
"""

from __future__ import annotations

import copy
import csv
import io
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.utilities import rank_zero_only

from datamodules import CCNNDataModule
from training.build import build_datamodule
from training.config import ConfigError

if TYPE_CHECKING:
    from training.run import RunPlan

FLAG = "test.resolutions"
CSV_NAME = "resolutions.csv"
CSV_COLUMNS = ("resolution", "trained_at", "test_acc", "test_loss")


def requested_resolutions(cfg: DictConfig) -> list[int] | None:
    """The resolutions of ``test.resolutions``, checked: ``None`` (off) or a list of distinct integers > 0.

    Raises:
        ConfigError: naming ``test.resolutions``.
    """
    value = OmegaConf.select(cfg, FLAG, default=None)
    if value is None:
        return None
    values = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    shown = values if isinstance(values, list) else value
    if (
        not isinstance(values, list)
        or not values
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values)
    ):
        raise ConfigError(
            f"{FLAG} must be a list of positive integers (image sides, sequence lengths or sample rates, in the units "
            f"of the dataset's resolution flag), e.g. {FLAG}=[20,40,80], or null; got {shown!r}."
        )
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ConfigError(f"{FLAG}={values} lists {', '.join(map(str, repeated))} more than once; list each once.")
    return values


def option_flag(datamodule: CCNNDataModule) -> str:
    """The flag that sets the dataset's resolution, e.g. ``dataset.params.seq_length``."""
    return f"dataset.params.{datamodule.resolution_option}"


def config_at(cfg: DictConfig, option: str, value: int) -> DictConfig:
    """A copy of ``cfg`` with ``dataset.params.<option>`` set to ``value``; ``cfg`` itself is left as it is."""
    changed = copy.deepcopy(cfg)
    with open_dict(changed):
        OmegaConf.update(changed, f"dataset.params.{option}", value, force_add=True)
    return changed


def datamodule_at(cfg: DictConfig, datamodule: CCNNDataModule, value: int) -> CCNNDataModule:
    """The run's datamodule with its resolution option at ``value`` (constructed only: nothing is read).

    Raises:
        ConfigError: the dataset refuses the value (e.g. PathFinder at a side the release does not hold).
    """
    assert datamodule.resolution_option is not None
    try:
        return build_datamodule(config_at(cfg, datamodule.resolution_option, value))
    except ConfigError as error:
        raise ConfigError(f"{FLAG}: {value} cannot be used: {error}") from error


def check_pooling(cfg: DictConfig, size: Sequence[int], what: str) -> None:
    """Refuse a size that the network's max-pools (``net.downsampling``) cannot reduce: each pool of
    ``net.downsampling_size`` needs at least that many positions along every axis.

    Args:
        cfg: the run's flags.
        size: the spatial size of one example.
        what: names the size in the message, e.g. ``test.resolutions: 2``.
    """
    pools, pool = len(cfg.net.downsampling), cfg.net.downsampling_size
    current = tuple(size)
    for done in range(pools):
        if min(current) < pool:
            raise ConfigError(
                f"{what} gives inputs of size {tuple(size)}, too small for net.downsampling="
                f"{list(cfg.net.downsampling)}: after {done} max-pool(s) of net.downsampling_size={pool} they have "
                f"{min(current)} position(s) along an axis, and a pool needs {pool}. Use a size of at least "
                f"{pool**pools} (or fewer pools)."
            )
        current = tuple(n // pool for n in current)


def check_resolutions(cfg: DictConfig, datamodule: CCNNDataModule) -> None:
    """Every check of ``test.resolutions`` that needs no data: the list, the dataset's support for resolutions, each
    value (by the dataset's own constructor) and its size after the network's pools; and the training size's pools.

    Raises:
        ConfigError: one line naming ``test.resolutions`` (or the training resolution's flag) and the fix.
    """
    option = datamodule.resolution_option
    training = (
        f"{option_flag(datamodule)}={getattr(datamodule, option)}" if option else f"dataset.name={cfg.dataset.name}"
    )
    check_pooling(cfg, datamodule.meta.size, training)
    resolutions = requested_resolutions(cfg)
    if resolutions is None:
        return
    refusal = datamodule.resolution_refusal()
    if refusal is not None:
        raise ConfigError(f"{FLAG}={resolutions} cannot be used with dataset.name={cfg.dataset.name}: {refusal}.")
    for value in resolutions:
        check_pooling(cfg, datamodule_at(cfg, datamodule, value).meta.size, f"{FLAG}: {value}")


def check_resolution_data(cfg: DictConfig, datamodule: CCNNDataModule) -> None:
    """Prepare (find, download or generate) and load the data at each resolution of ``test.resolutions``, so that
    missing or corrupt files are found before the run folder exists. Only the first process, the one that evaluates.

    Raises:
        DataError: naming the file or folder at fault.
    """
    resolutions = requested_resolutions(cfg)
    if resolutions is None or rank_zero_only.rank != 0:
        return
    for value in resolutions:
        other = datamodule_at(cfg, datamodule, value)
        other.prepare_data()
        other.setup()


@contextmanager
def _quiet_trainer_setup() -> Iterator[None]:
    """Keep Lightning from announcing the devices again for the evaluation trainer (the run's trainer did)."""
    names = ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero")
    loggers = [logging.getLogger(name) for name in names]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for log, level in zip(loggers, levels):
            log.setLevel(level)


def evaluation_trainer(plan: RunPlan, trainer: pl.Trainer) -> pl.Trainer:
    """A trainer that runs the test loop as the run's trainer does (device, precision, batch limit, determinism)
    but logs, saves and prints nothing: its results go into the run's metrics under their own names."""
    device = trainer.strategy.root_device
    cfg = plan.cfg
    with _quiet_trainer_setup():
        return pl.Trainer(
            accelerator=plan.accelerator,
            devices=[device.index] if device.type == "cuda" and device.index is not None else 1,
            precision=plan.precision,  # type: ignore[arg-type]
            deterministic=cfg.deterministic,
            benchmark=not cfg.deterministic,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_test_batches=cfg.train.limit_test_batches,
            default_root_dir=str(plan.folder),
        )


def resolutions_table(option: str, trained_at: int, rows: Sequence[tuple[int, float, float]]) -> str:
    """The printed table: one line per resolution, accuracy in %, the training resolution marked."""
    lines = [
        f"Test accuracy at other resolutions (dataset.params.{option}; trained at {trained_at}):",
        f"  {option:>12}  {'test acc %':>10}  {'test loss':>10}",
    ]
    for value, acc, loss in rows:
        mark = "  (training resolution)" if value == trained_at else ""
        lines.append(f"  {value:>12}  {100 * acc:>10.2f}  {loss:>10.4f}{mark}")
    return "\n".join(lines)


def write_csv(path: Path, trained_at: int, rows: Sequence[tuple[int, float, float]]) -> None:
    """``<run>/resolutions.csv``: ``resolution, trained_at, test_acc, test_loss`` (accuracy as a fraction), written
    aside and moved into place, so that the file is complete or absent."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows((value, trained_at, repr(acc), repr(loss)) for value, acc, loss in rows)
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text(text.getvalue())
    os.replace(partial, path)


def evaluate_resolutions(plan: RunPlan, trainer: pl.Trainer) -> dict[str, float]:
    """Evaluate the run's model on the test split at each resolution of ``test.resolutions``.

    Call it after the run's own test (the weights it evaluated are those evaluated here). Only the first process
    evaluates; the others return no metrics.

    Returns:
        ``test@<resolution>/acc`` and ``test@<resolution>/loss`` for each resolution; empty when the flag is null.
    """
    resolutions = requested_resolutions(plan.cfg)
    if resolutions is None or not trainer.is_global_zero:
        return {}
    datamodule = plan.datamodule
    option = datamodule.resolution_option
    assert option is not None  # check_resolutions refused the run otherwise
    trained_at = getattr(datamodule, option)
    evaluator = evaluation_trainer(plan, trainer)
    rows: list[tuple[int, float, float]] = []
    for value in resolutions:
        results: dict[str, Any] = evaluator.test(
            plan.module, datamodule=datamodule_at(plan.cfg, datamodule, value), verbose=False
        )[0]
        rows.append((value, float(results["test/acc"]), float(results["test/loss"])))
    write_csv(plan.folder / CSV_NAME, trained_at, rows)
    print(resolutions_table(option, trained_at, rows), flush=True)
    metrics: dict[str, float] = {}
    for value, acc, loss in rows:
        metrics |= {f"test@{value}/acc": acc, f"test@{value}/loss": loss}
    return metrics


__all__ = [
    "CSV_NAME",
    "check_resolution_data",
    "check_resolutions",
    "evaluate_resolutions",
    "requested_resolutions",
]
