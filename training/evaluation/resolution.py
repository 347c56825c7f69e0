"""Zero-shot evaluation at other resolutions: ``test.resolutions=[...]`` evaluates the run's model, after its usual
validation and test, on the test split of the same data sampled at each listed resolution.

A resolution is a value of the dataset's resolution option (``CCNNDataModule.resolution_option``): an image side in
pixels (``dataset.params.resolution``: MNIST, CIFAR, STL-10, PathFinder, MedMNIST 3D, Blobs3D), a sequence length
(``dataset.params.seq_length``: MNIST-1D) or a sample rate in Hz (``dataset.params.sample_rate``: Speech Commands).
The model is the one the run evaluated: each continuous kernel is sampled on the grid of its input, the same extent
with more or fewer taps (``ckconv.conv``). The test split is read by a datamodule built from the run's flags with only
the resolution option changed, so everything else (normalisation, splits, batch size) is the run's.

BatchNorm (``test.update_bn``, on by default): a layer's activations on another grid have other statistics than on
the training grid (a coarser grid passes less of each kernel's band), and the running mean and variance gathered in
training no longer centre and scale them. At each resolution but the training one, the statistics are recomputed from
the training split at that resolution (``torch.optim.swa_utils.update_bn``: one pass without labels or gradients, as
many batches as ``train.limit_train_batches`` allows), the model tested, and the training statistics put back; the
weights never change. Measured on MNIST-1D trained at 40 (experiments/README.md), 3 seeds: at 20, 80% with the
training statistics against 86% recomputed for a network trained with ``train.coarse_batches=0.3``.

A run checks the list in :func:`check_resolutions`, each resolution's kernel grids and the memory its evaluation
needs in :func:`check_resolutions_fit` (``training.evaluation.memory``), and loads the data of each resolution in
:func:`check_resolution_data`, all in ``training.run.plan.plan_run``, before anything is written; after the run's own
test, :func:`evaluate_resolutions` evaluates, prints the table, writes ``<run>/resolutions.csv`` and returns the
metrics ``test@<resolution>/acc`` and ``test@<resolution>/loss``, which the run logs with its other final metrics.
"""

from __future__ import annotations

import copy
import csv
import io
import itertools
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.utilities import rank_zero_only
from torch import nn
from torch.optim.swa_utils import update_bn

from datamodules import CCNNDataModule
from training.build import build_datamodule
from training.config.checks import ConfigError
from training.evaluation.memory import (
    conv_layers,
    data_bytes,
    device_available,
    format_bytes,
    held_examples,
    host_available,
    largest_fitting,
    layer_taps,
    network_bytes,
)

log = logging.getLogger(__name__)

FLAG = "test.resolutions"
CSV_NAME = "resolutions.csv"
CSV_COLUMNS = ("resolution", "trained_at", "test_acc", "test_loss")


def requested_resolutions(cfg: DictConfig) -> list[int] | None:
    """The resolutions of ``test.resolutions`` (checked with the other flags: ``training.config.checks``)."""
    value = OmegaConf.select(cfg, FLAG, default=None)
    return None if value is None else list(OmegaConf.to_container(value))  # type: ignore[arg-type]


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
    value (by the dataset's own constructor) and its size after the network's pools; the training size's pools; and
    for ``train.coarse_batches``, the dataset's support for resolutions and the pools at half the training side.

    Raises:
        ConfigError: one line naming ``test.resolutions`` (or the training resolution's flag, or
            ``train.coarse_batches``) and the fix.
    """
    option = datamodule.resolution_option
    training = (
        f"{option_flag(datamodule)}={getattr(datamodule, option)}" if option else f"dataset.name={cfg.dataset.name}"
    )
    check_pooling(cfg, datamodule.meta.size, training)
    refusal = datamodule.resolution_refusal()
    if cfg.train.coarse_batches > 0:  # training batches on grids down to half the training side
        if refusal is not None:
            raise ConfigError(
                f"train.coarse_batches={cfg.train.coarse_batches} cannot be used with dataset.name="
                f"{cfg.dataset.name}: {refusal}; use train.coarse_batches=0."
            )
        coarsest = tuple(max(2, round(n / 2)) for n in datamodule.meta.size)
        check_pooling(cfg, coarsest, f"train.coarse_batches={cfg.train.coarse_batches} (a side of {coarsest})")
    resolutions = requested_resolutions(cfg)
    if resolutions is None:
        return
    if refusal is not None:
        raise ConfigError(f"{FLAG}={resolutions} cannot be used with dataset.name={cfg.dataset.name}: {refusal}.")
    for value in resolutions:
        check_pooling(cfg, datamodule_at(cfg, datamodule, value).meta.size, f"{FLAG}: {value}")


def check_kernel_grid(cfg: DictConfig, net: nn.Module, trained: Sequence[int], size: Sequence[int], what: str) -> None:
    """Refuse a size at which a continuous kernel can no longer be resampled: a layer whose input had two positions
    or more along an axis in training has one, or whose kernel had several taps there keeps one (its whole extent
    lies within one sample spacing of the new grid). ``ckconv`` gives such a tap the kernel's sum over its training
    taps (the limit of its rescaling by ``(k - 1) / (s - 1)``), so the layer would compute a pointwise product, no
    longer a convolution. Discrete kernels keep their taps at any size and are not refused.

    Args:
        cfg: the run's flags (for the message).
        net: the run's network.
        trained: the spatial size of one training example.
        size: the spatial size of one example at the resolution.
        what: names the size in the message, e.g. ``test.resolutions: 1``.
    """
    for index, ((layer, at_train), (_, at)) in enumerate(zip(conv_layers(net, trained), conv_layers(net, size))):
        if not layer.continuous:
            continue
        taps_train, taps = layer_taps(layer, at_train), layer_taps(layer, at)
        for axis in range(len(at)):
            few_positions = at[axis] < 2 <= at_train[axis]
            one_tap = taps[axis] == 1 < taps_train[axis]
            if few_positions or one_tap:
                seen = f"{at[axis]} position(s)" if few_positions else f"a kernel of 1 tap (of {taps_train[axis]})"
                raise ConfigError(
                    f"{what} gives inputs of size {tuple(size)}, too coarse for the network's continuous kernels: "
                    f"convolution layer {index} (conv.type={cfg.conv.type}) would see {seen} along axis {axis}, where "
                    f"it saw {at_train[axis]} position(s) and {taps_train[axis]} taps in training, and a kernel "
                    "of one tap is a product with the kernel's sum, pointwise, no longer a convolution. Use a larger "
                    "value."
                )


@dataclass(frozen=True)
class MemoryNeed:
    """What the evaluation at one resolution needs (``training.evaluation.memory``), in bytes."""

    batch: int  # the evaluation batch
    network: int  # its peak through the network
    data: int | None  # the data held at that resolution; None: not known before the run's data is read

    def over(self, host: int, device: int | None) -> tuple[int, int, str] | None:
        """(needed, available, where) for the first limit exceeded, or ``None``: on a GPU (``device`` given) the
        network runs in the device's memory and the data stays on the host; on a CPU both share the host's."""
        data = self.data or 0
        if device is not None and self.network > device:
            return self.network, device, "on the GPU (free memory)"
        needed = data if device is not None else data + self.network
        return (needed, host, "on this machine (MemAvailable)") if needed > host else None


def memory_need(datamodule: CCNNDataModule, net: nn.Module, examples: int | None) -> MemoryNeed:
    """The estimate for evaluating ``net`` on ``datamodule`` (at the resolution it is constructed with).

    Args:
        examples: the examples the run's datamodule holds once it has read its data (:func:`held_examples`); a
            batch holds no more than the test split (fewer than all examples), so it bounds the batch too.
    """
    batch = datamodule.test_batch_size if examples is None else max(1, min(datamodule.test_batch_size, examples))
    return MemoryNeed(batch, network_bytes(net, datamodule.meta.size, batch), data_bytes(datamodule, examples))


def check_memory(
    cfg: DictConfig, datamodule: CCNNDataModule, net: nn.Module, accelerator: str, examples: int | None = None
) -> None:
    """Refuse a resolution whose evaluation needs more memory than the machine has available now (the estimate of
    ``training.evaluation.memory``: nothing is allocated).

    Args:
        cfg: the run's flags.
        datamodule: the run's datamodule.
        net: the run's network.
        accelerator: ``"gpu"`` or ``"cpu"`` (``training.run.devices.select_accelerator``).
        examples: the examples the run's datamodule holds once it has read its data (:func:`held_examples`).

    Raises:
        ConfigError: one line naming the resolution, the estimate, the limit and what to lower.
    """
    resolutions = requested_resolutions(cfg)
    host = host_available()
    if resolutions is None or host is None:
        return
    device = device_available() if accelerator == "gpu" else None
    for value in resolutions:
        need = memory_need(datamodule_at(cfg, datamodule, value), net, examples)
        over = need.over(host, device)
        if over is None:
            continue
        needed, available, where = over
        parts = f"one evaluation batch of {need.batch} through the network: {format_bytes(need.network)}"
        if need.data:
            parts = f"the test data at {value}: {format_bytes(need.data)}; {parts}"
        # Where the data is not counted yet (Speech Commands' clips), a largest value would promise too much.
        fits = None if need.data is None else _largest_fitting(cfg, datamodule, net, examples, host, device, value)
        fix = "a smaller value" if fits is None else f"a value of at most about {fits}"
        if cfg.test.batch_size_multiplier > 1:
            fix += f" or a smaller test.batch_size_multiplier (now {cfg.test.batch_size_multiplier})"
        raise ConfigError(
            f"{FLAG}: {value} needs about {format_bytes(needed)} to evaluate ({parts}), more than the "
            f"{format_bytes(available)} available {where}; use {fix}."
        )


def _largest_fitting(
    cfg: DictConfig,
    datamodule: CCNNDataModule,
    net: nn.Module,
    examples: int | None,
    host: int,
    device: int | None,
    refused: int,
) -> int | None:
    """The largest value between the training resolution and ``refused`` whose estimate fits, by bisection (the
    estimate grows with the resolution); ``None`` when the training resolution does not fit either, or when the
    dataset takes only some values (PathFinder's and MedMNIST's published sides)."""

    def fits(value: int) -> bool:
        return memory_need(datamodule_at(cfg, datamodule, value), net, examples).over(host, device) is None

    try:
        return largest_fitting(fits, getattr(datamodule, datamodule.resolution_option), refused)
    except ConfigError:
        return None


def check_resolutions_fit(cfg: DictConfig, datamodule: CCNNDataModule, net: nn.Module, accelerator: str) -> None:
    """The checks of ``test.resolutions`` that need the network but no data: each resolution's kernel grids
    (:func:`check_kernel_grid`) and the memory of its evaluation (:func:`check_memory`; the data of Speech
    Commands, counted in clips, again in :func:`check_resolution_data`).

    Raises:
        ConfigError: one line naming ``test.resolutions`` and the fix.
    """
    resolutions = requested_resolutions(cfg)
    if resolutions is None:
        return
    for value in resolutions:
        size = datamodule_at(cfg, datamodule, value).meta.size
        check_kernel_grid(cfg, net, datamodule.meta.size, size, f"{FLAG}: {value}")
    check_memory(cfg, datamodule, net, accelerator)


def check_resolution_data(cfg: DictConfig, datamodule: CCNNDataModule, net: nn.Module, accelerator: str) -> None:
    """Prepare (find, download or generate) and load the data at each resolution of ``test.resolutions``, so that
    missing or corrupt files are found before the run folder exists. Only the first process, the one that evaluates.
    Call it once the run's own data is loaded: the memory check is made again first, with the examples counted.

    Raises:
        ConfigError: the evaluation at a resolution needs more memory than is available (:func:`check_memory`).
        DataError: naming the file or folder at fault.
    """
    resolutions = requested_resolutions(cfg)
    if resolutions is None or rank_zero_only.rank != 0:
        return
    check_memory(cfg, datamodule, net, accelerator, held_examples(datamodule))
    for value in resolutions:
        other = datamodule_at(cfg, datamodule, value)
        other.prepare_data()
        other.setup()


def evaluation_trainer(cfg: DictConfig, folder: Path, trainer: pl.Trainer) -> pl.Trainer:
    """A trainer that runs the test loop as the run's trainer does (device, precision, batch limit, determinism)
    but logs, saves and prints nothing: its results go into the run's metrics under their own names."""
    device = trainer.strategy.root_device
    return pl.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=[device.index] if device.type == "cuda" and device.index is not None else 1,
        precision=trainer.precision,  # type: ignore[arg-type]
        deterministic=cfg.deterministic,
        benchmark=not cfg.deterministic,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_test_batches=cfg.train.limit_test_batches,
        default_root_dir=str(folder),
    )


def calibration_batches(limit: int | float, available: int) -> int:
    """The training batches ``train.limit_train_batches`` lets a pass use, as Lightning counts them: a whole number
    of batches (at most those there are), or a fraction of them (at least one)."""
    if isinstance(limit, int):
        return min(limit, available)
    return max(1, int(available * limit))


@contextmanager
def statistics_at(cfg: DictConfig, net: nn.Module, datamodule: CCNNDataModule, device: torch.device) -> Iterator[None]:
    """``net``'s BatchNorm statistics recomputed from ``datamodule``'s training split for the body of the ``with``;
    every buffer of ``net`` is put back as it was on leaving, also when the body raises. A network without
    BatchNorm is left as it is.

    The pass draws its randomness (dropout, augmentations) from a generator seeded with the run's seed, forked from
    the global one, so a checkpoint evaluated later gets the statistics the run got, and the run's own random
    stream is left where it was."""
    datamodule.prepare_data()
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()  # the first epoch's order, a function of the seed alone
    batches = calibration_batches(cfg.train.limit_train_batches, len(loader))
    saved = [buffer.clone() for buffer in net.buffers()]
    accelerators = (
        [torch.cuda.current_device() if device.index is None else device.index] if device.type == "cuda" else []
    )
    try:
        with torch.random.fork_rng(devices=accelerators):
            torch.manual_seed(cfg.seed)
            update_bn(itertools.islice(loader, batches), net.to(device), device=device)
        yield
    finally:
        for buffer, value in zip(net.buffers(), saved, strict=True):
            buffer.copy_(value)


def discrete_kernel_note(cfg: DictConfig, net: nn.Module, trained_at: int, resolutions: Sequence[int]) -> str | None:
    """The note printed under the table when the network's kernels are discrete and a resolution differs from the
    training one: such a kernel keeps its taps on any grid, so its extent relative to the signal changes with the
    grid. Comparing discrete baselines at other resolutions is legitimate (the FlexConv paper does), but these rows
    do not evaluate the same kernels resampled, as they do for continuous ones. ``None`` otherwise."""
    other = [value for value in resolutions if value != trained_at]
    layers = [layer for layer, _ in conv_layers(net, (1,) * net.data_dim)]
    if not other or any(layer.continuous for layer in layers):
        return None
    taps = "x".join(map(str, layers[0].kernel_size))
    scales = ", ".join(f"at {value}: {trained_at / value:.3g}x" for value in other)
    return (
        f"Note: conv.type={cfg.conv.type} has discrete kernels, which keep their {taps} taps at every resolution, so a "
        f"kernel covers another part of the signal than in training ({scales} the part it covered at {trained_at}): "
        f"these rows test the same taps on other extents, not the same kernels resampled as continuous ones are."
    )


def resolutions_table(
    option: str, trained_at: int, rows: Sequence[tuple[int, float, float]], note: str | None = None
) -> str:
    """The printed table: one line per resolution, accuracy in %, the training resolution marked; then ``note``."""
    lines = [
        f"Test accuracy at other resolutions (dataset.params.{option}; trained at {trained_at}):",
        f"  {option:>12}  {'test acc %':>10}  {'test loss':>10}",
    ]
    for value, acc, loss in rows:
        mark = "  (training resolution)" if value == trained_at else ""
        lines.append(f"  {value:>12}  {100 * acc:>10.2f}  {loss:>10.4f}{mark}")
    if note is not None:
        lines.append(note)
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


def evaluate_resolutions(
    cfg: DictConfig, datamodule: CCNNDataModule, module: pl.LightningModule, folder: Path, trainer: pl.Trainer
) -> dict[str, float]:
    """Evaluate the run's model on the test split at each resolution of ``test.resolutions``.

    Call it after the run's own test (the weights it evaluated are those evaluated here). Only the first process
    evaluates; the others return no metrics.

    Returns:
        ``test@<resolution>/acc`` and ``test@<resolution>/loss`` for each resolution; empty when the flag is null.
    """
    resolutions = requested_resolutions(cfg)
    if resolutions is None or not trainer.is_global_zero:
        return {}
    option = datamodule.resolution_option
    assert option is not None  # check_resolutions refused the run otherwise
    trained_at = getattr(datamodule, option)
    evaluator = evaluation_trainer(cfg, folder, trainer)
    device = evaluator.strategy.root_device
    rows: list[tuple[int, float, float]] = []
    for value in resolutions:
        other = datamodule_at(cfg, datamodule, value)
        recompute = cfg.test.update_bn and value != trained_at
        with statistics_at(cfg, module.net, other, device) if recompute else nullcontext():  # type: ignore[arg-type]
            results: dict[str, Any] = evaluator.test(module, datamodule=other, verbose=False)[0]
        rows.append((value, float(results["test/acc"]), float(results["test/loss"])))
    write_csv(folder / CSV_NAME, trained_at, rows)
    note = discrete_kernel_note(cfg, module.net, trained_at, resolutions)  # type: ignore[arg-type]
    log.info(resolutions_table(option, trained_at, rows, note))
    metrics: dict[str, float] = {}
    for value, acc, loss in rows:
        metrics |= {f"test@{value}/acc": acc, f"test@{value}/loss": loss}
    return metrics


__all__ = [
    "CSV_NAME",
    "check_memory",
    "check_resolution_data",
    "check_resolutions",
    "check_resolutions_fit",
    "evaluate_resolutions",
    "requested_resolutions",
]
