"""The memory an evaluation at another resolution needs, estimated before anything is allocated, so that a value of
``test.resolutions`` that the machine cannot hold is refused in one line instead of hanging in the data generator,
swapping, or dying in the allocator after the run has trained.

The estimate has two parts, both computed from sizes alone (nothing is allocated):

- the data: what the datamodule holds once it has read its splits at that resolution, as the datamodule itself says
  (``held_bytes``). Datasets made in memory hold every split at that resolution: MNIST-1D's generator builds all
  ``num_samples`` signals as float64 NumPy arrays (three copies at its peak), Blobs3D renders all its scenes, Speech
  Commands resamples every clip. Image datasets hold their stored images and resize one image at a time as the loader
  reads it, so their data does not grow with the resolution.
- the network: the peak of one evaluation batch (:func:`network_bytes`), the largest over the convolution layers,
  each at the size its input has after the pools before it. For an FFT convolution the buffers of
  ``ckconv.functional.fft_conv`` at the layer's FFT size ``M`` (the input zero-padded per axis to
  ``min_fft_size(n, k, start)``, e.g. ``n + k // 2`` for centred kernels): the input's spectrum, the product
  spectrum, the inverse transform's working copy and its output, ``B x C x M`` float32 values each, and the kernel's
  spectrum; for a direct convolution the input padded by ``k - 1`` per axis; plus the layer's input and its norm, and
  the kernel itself with the kernel network's hidden features at every tap. A continuous kernel counts with every tap
  of the grid (the mask's crop is learnt, and training may widen it to the whole grid), so for masked kernels the
  estimate is an upper bound (``tests/test_resolution_memory.py`` measures how close it is).

The limit is the memory available now: ``MemAvailable`` of ``/proc/meminfo`` (lowered to what a cgroup's
``memory.max`` leaves) for the data and, on a CPU, the network; on a GPU the network's part is compared with the
device's free memory (``torch.cuda.mem_get_info``). Where neither can be read (not Linux), nothing is refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

from ckconv import CONV_TYPES
from ckconv.functional import anchor_index, min_fft_size, prefers_fft
from datamodules import CCNNDataModule

FLOAT_BYTES = 4  # float32: activations, and the FFT, which runs in float32 even under autocast
# Batch-sized buffers of one FFT convolution at its padded size M, in units of B x C x M float32 values (an rfft
# half-spectrum of complex values holds about as many bytes as the M real values it transforms), per data dimension:
# the input's spectrum, the product spectrum and the inverse's output in 1D; torch's transforms over several axes add
# a complex working copy to the forward and to the inverse transform. Measured: the peak of ckconv's fft_conv alone
# (B=16, C=140, 16384 / 128^2 / 26^3 inputs) is 3.0, 5.1 and 5.3 units.
FFT_BUFFERS = {1: 3, 2: 5, 3: 5}
# A dense kernel mixes the channels per frequency (torch.einsum): it transposes the input spectrum and its result.
DENSE_FFT_BUFFERS = 2
# A direct convolution holds its input padded by k - 1 per axis, oneDNN's reordered copy of it, and its output in
# oneDNN's layout before the copy back (measured: 6 units of B x C x n for a dense 1D layer with 9 taps).
DIRECT_BUFFERS = 3
# Batch-sized activations at the layer's input size alive around its convolution: the block's input (kept for the
# residual sum), its norm, and the output the convolution writes or (FFT) the pointwise mixer's copy of its window.
ACTIVATIONS = 3
_MEMINFO = Path("/proc/meminfo")
_CGROUP = Path("/sys/fs/cgroup")


def format_bytes(count: float) -> str:
    """``1.5 GB``-style, in powers of 1000 (as ``free -h --si`` and the kernel's meminfo in kB)."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB", "EB"):
        if count < 1000 or unit == "EB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------------------------- the network
def conv_layers(net: nn.Module, size: Sequence[int]) -> Iterator[tuple[nn.Module, tuple[int, ...]]]:
    """Every convolution layer of a CCNN with the spatial size of its input when the network's input has ``size``:
    the stem's at ``size``, the blocks' at the size left by the max-pools before them."""
    convolutions = tuple(CONV_TYPES.values())
    current = tuple(size)
    yield net.conv1, current
    for child in net.blocks:
        if isinstance(child, nn.MaxPool1d | nn.MaxPool2d | nn.MaxPool3d):
            pool = child.kernel_size if isinstance(child.kernel_size, int) else child.kernel_size[0]
            current = tuple(max(1, n // pool) for n in current)  # as models.ccnn tracks it
            continue
        for layer in child.modules():
            if isinstance(layer, convolutions):
                yield layer, current


def layer_taps(layer: nn.Module, size: Sequence[int]) -> tuple[int, ...]:
    """Taps per axis of ``layer``'s kernel for an input of ``size``: a continuous kernel is resampled to keep its
    extent (before the mask's crop); a discrete one keeps its taps."""
    return layer.kernel_size_for(size) if layer.continuous else tuple(layer.kernel_size)


def layer_bytes(layer: nn.Module, size: Sequence[int], batch: int) -> int:
    """Peak bytes of one evaluation batch through ``layer`` at input ``size`` (module docstring)."""
    taps = layer_taps(layer, size)
    n, k = math.prod(size), math.prod(taps)
    c_in = layer.in_channels
    c_conv = layer.in_channels if layer.separable else layer.out_channels  # before the pointwise mixer, if any
    c_kernel = c_in if layer.separable else c_in * layer.out_channels
    values = ACTIVATIONS * batch * max(c_in, c_conv) * n
    if prefers_fft(taps, layer.use_fft):
        starts = [t - 1 - anchor_index(t, layer.causal) for t in taps]
        padded = math.prod(min_fft_size(a, t, s) for a, t, s in zip(size, taps, starts))
        buffers = FFT_BUFFERS[len(size)] + (0 if layer.separable else DENSE_FFT_BUFFERS)
        values += buffers * batch * max(c_in, c_conv) * padded
        values += c_kernel * (k + padded)  # the kernel's flipped copy and its spectrum
    else:
        padded = math.prod(a + t - 1 for a, t in zip(size, taps))
        values += DIRECT_BUFFERS * batch * c_in * padded
    if layer.continuous:
        # The kernel net's output, its masked copy and its hidden features at every training tap, then the kernel
        # resampled to this grid's taps: bounded by the larger of the two grids.
        values += (2 * c_kernel + 2 * layer.kernel_net.hidden_channels) * max(k, math.prod(layer.kernel_size))
    return FLOAT_BYTES * values


def network_bytes(net: nn.Module, size: Sequence[int], batch: int) -> int:
    """Peak bytes of one evaluation batch of ``batch`` inputs of spatial ``size``: the largest layer's."""
    return max(layer_bytes(layer, at, batch) for layer, at in conv_layers(net, size))


# ---------------------------------------------------------------------------------------------------- the data
def data_bytes(datamodule: CCNNDataModule, examples: int | None = None) -> int | None:
    """Bytes ``datamodule`` holds, at its resolution, once it has read its data (its own
    :meth:`~datamodules.base.CCNNDataModule.held_bytes`); ``None`` where that is not known yet.

    Args:
        datamodule: the datamodule at the resolution to evaluate (constructed only).
        examples: how many examples the run's own datamodule holds in all its splits, once it has read them; the
            same examples are held at every resolution.
    """
    return datamodule.held_bytes(examples)


def held_examples(datamodule: CCNNDataModule) -> int | None:
    """Examples in all splits of a datamodule that has read its data, else ``None``."""
    splits = (datamodule.train_set, datamodule.val_set, datamodule.test_set)
    if any(split is None for split in splits):
        return None
    return sum(len(split) for split in splits)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------- the limit
def largest_fitting(fits: Callable[[int], bool], low: int, high: int) -> int | None:
    """The largest size in ``[low, high)`` for which ``fits`` holds, by bisection (a need that grows with the size:
    ``fits`` holds up to some size and fails above it); ``None`` when ``fits(low)`` fails or ``low >= high``."""
    if low >= high or not fits(low):
        return None
    while high - low > 1:  # fits(low), not fits(high)
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def host_available() -> int | None:
    """Bytes the host can give this process now: ``MemAvailable``, at most what the cgroup's ``memory.max`` leaves;
    ``None`` where ``/proc/meminfo`` cannot be read."""
    try:
        lines = _MEMINFO.read_text().splitlines()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    if "MemAvailable" not in fields:
        return None
    available = int(fields["MemAvailable"].split()[0]) * 1024  # meminfo's kB are KiB
    try:  # cgroup v2: a container's limit, which MemAvailable (the whole machine's) does not see
        limit = (_CGROUP / "memory.max").read_text().strip()
        if limit != "max":
            available = min(available, int(limit) - int((_CGROUP / "memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return max(available, 0)


def device_available() -> int:
    """Free bytes of the current CUDA device."""
    free, _total = torch.cuda.mem_get_info()
    return free
