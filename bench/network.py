"""Network benchmark: one training step (forward + backward) of the paper's CCNNs, built from their presets.

Run ``python -m bench.network [--quick] [--device cpu|cuda] [--batch 16] [--markdown] [--precision 32|bf16]
[--compile]``. Each case builds the network of ``cfg/experiment/<task>/<variant>.yaml`` from the dataset's metadata
(no data files), feeds random inputs of the task's shape, and reports the median milliseconds of forward + loss +
backward, the peak memory of one step and the throughput. The original implementation's times on this project's
2-core CPU machine (from the speed issue) are printed beside ours.

``python -m bench.network --volumes [--quick]`` measures the 3D network instead (the OrganMNIST3D CCNN-4,140 preset
on 28^3 and 64^3 volumes) with FFT and with direct convolutions, steps alternated, and checks the FFT/direct
crossover rule (``ckconv.functional.FFT_CROSSOVER_TAPS``) on it: for each kernel size, whether ``use_fft="auto"``
picks the path that was faster.
"""

from __future__ import annotations

if __name__ == "__main__":  # as a command: refuse a bad command line at once, not after 6 s of imports
    from bench.cli import parse

    parse("network", description=__doc__)

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from bench.cli import VOLUME_BATCHES, parse, run_measurements
from bench.timing import (
    Measurement,
    Table,
    apply_setup_flags,
    machine_description,
    measure,
    measure_pair,
    render,
)
from ckconv import CONV_TYPES
from ckconv.functional import FFT_CROSSOVER_TAPS, prefers_fft
from datamodules import DataMeta

# (task, variant) -> the original code's forward+backward ms at batch 16 on the 2-core CPU machine (speed issue).
ORIGINAL_CPU_MS: dict[tuple[str, str], str] = {
    ("smnist", "ccnn_4_140"): "~400",
    ("smnist", "ccnn_6_380"): "~2100-2500",
    ("scifar10", "ccnn_4_140"): "~560",
    ("cifar10", "ccnn_4_140"): "~8400-10500",
}
CASES: tuple[tuple[str, str], ...] = tuple(ORIGINAL_CPU_MS)
CONFIG_DIR = Path(__file__).resolve().parent.parent / "cfg"


@dataclass(frozen=True)
class Repeats:
    target_s: float = 6.0
    min_repeats: int = 3
    max_repeats: int = 20


def build_case(task: str, variant: str, overrides: Sequence[str] = ()) -> tuple[torch.nn.Module, DataMeta]:
    """The ClassificationModule of a preset and its data metadata (no data read)."""
    from training.build import build_datamodule, build_module
    from training.config.compose import compose

    cfg = compose([f"experiment={task}/{variant}", *overrides])
    meta = build_datamodule(cfg).meta
    return build_module(cfg, meta), meta


def random_batch(meta: DataMeta, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    if meta.vocab_size is not None:
        shape = (batch, 2, *meta.size) if meta.paired else (batch, *meta.size)
        x = torch.randint(0, meta.vocab_size, shape, generator=generator)
    else:
        x = torch.randn(batch, meta.in_channels, *meta.size, generator=generator)
    y = torch.randint(0, meta.num_classes, (batch,), generator=generator)
    return x.to(device), y.to(device)


def training_step(
    module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, precision: str, compiled: bool
) -> Callable[[], None]:
    """Forward, loss and backward of one batch (parameters' gradients cleared each time)."""
    net = torch.compile(module.net) if compiled else module.net
    dtype = torch.bfloat16 if precision == "bf16" else None

    def step() -> None:
        module.zero_grad(set_to_none=True)
        with torch.autocast(device_type=x.device.type, dtype=dtype, enabled=dtype is not None):
            logits = net(x)
        loss, _ = module.loss_and_predictions(logits, y)
        loss.backward()

    return step


def run(
    device: torch.device,
    batch: int = 16,
    cases: Sequence[tuple[str, str]] = CASES,
    precision: str = "32",
    compiled: bool = False,
    repeats: Repeats | None = None,
) -> Table:
    table = Table(
        title=f"Training step (forward + backward), batch {batch}, {precision}-bit"
        + (", torch.compile" if compiled else ""),
        columns=["preset", "shape", "parameters", "ms / step", "samples / s", "peak MiB", "original ms (CPU)"],
    )
    for task, variant in cases:
        torch.manual_seed(0)
        module, meta = build_case(task, variant)
        module.to(device).train()
        x, y = random_batch(meta, batch, device)
        result = measure(training_step(module, x, y, precision, compiled), device, repeats or Repeats())
        assert result.ms is not None
        table.rows.append(
            [
                f"{task}/{variant}",
                "x".join(map(str, (meta.in_channels, *meta.size))),
                sum(p.numel() for p in module.parameters()),
                result.ms,
                1e3 * batch / result.ms,
                result.mem_mib,
                ORIGINAL_CPU_MS.get((task, variant), "-") if device.type == "cpu" else "-",
            ]
        )
    table.notes.append(f"Machine: {machine_description(device)}.")
    return table


# ---------------------------------------------------------------------------------------------------------------
# 3D: FFT against direct convolution on volumes
# ---------------------------------------------------------------------------------------------------------------
VOLUME_PRESET = ("organmnist3d", "ccnn_4_140")


@dataclass(frozen=True)
class Volumes:
    """What the 3D benchmark measures. ``full()`` is the table in bench/README.md, ``quick()`` a smoke subset.

    Attributes:
        sides: ``(side, batch)`` per volume shape (``--sides`` picks among them; with ``--quick``, any side at
            batch 1).
        mask_inits: initial mask widths, from the narrowest (fewest taps after the crop) to the widest; ``None`` is
            the preset's own. On the preset's 29-tap grid, 0.04 crops the kernels to 3^3 (27 taps: the shipped 3D
            crossover), 0.075 (the 6,380 presets' width) to 5^3, and the 4,140 preset's 0.75 keeps all 29^3.
        overrides: further flags (the quick mode shrinks the network).
        direct_limit_s: skip a direct case whose cost, predicted from the last measured direct case of the same
            shape scaled by the taps, exceeds this.
    """

    sides: tuple[tuple[int, int], ...] = tuple(VOLUME_BATCHES.items())
    mask_inits: tuple[float | None, ...] = (0.04, 0.075, None)
    overrides: tuple[str, ...] = ()
    direct_limit_s: float = 30.0
    repeats: Repeats = Repeats(target_s=6.0, min_repeats=2, max_repeats=10)

    @staticmethod
    def full() -> Volumes:
        return Volumes()

    @staticmethod
    def quick() -> Volumes:
        return Volumes(
            sides=((28, 1),),
            mask_inits=(0.04, None),  # 5-tap kernels: cropped to 1 tap (direct), or 5^3 (FFT)
            overrides=("net.no_hidden=4", "net.no_blocks=1", "kernel.no_hidden=4", "kernel.size=5"),
            direct_limit_s=1.0,
            repeats=Repeats(target_s=0.05, min_repeats=1, max_repeats=2),
        )


def kernel_taps(module: torch.nn.Module, size: Sequence[int]) -> tuple[int, ...]:
    """Taps per dimension of the first block's convolution for an input of ``size`` (after the mask's crop)."""
    layers = [m for m in module.net.blocks.modules() if isinstance(m, tuple(CONV_TYPES.values()))]
    probe = torch.empty(1, layers[0].in_channels, *size, device=next(module.parameters()).device)
    with torch.no_grad():
        return tuple(layers[0].kernel_for(probe).shape[2:])


def run_volumes(device: torch.device, volumes: Volumes | None = None) -> Table:
    """One training step of the 3D preset with ``conv.use_fft=True`` and ``False``, alternated, per shape and width."""
    volumes = volumes or Volumes.full()
    task, variant = VOLUME_PRESET
    table = Table(
        title=f"3D network ({task}/{variant}) training step, FFT against direct convolution",
        columns=[
            "shape",
            "batch",
            "mask init",
            "taps after crop",
            "auto picks",
            "FFT ms",
            "direct ms",
            "direct/FFT",
            "FFT peak MiB",
            "direct peak MiB",
            "auto picked the faster",
        ],
    )
    for side, batch in volumes.sides:
        last_direct: tuple[int, float] | None = None  # (taps, seconds) of the last measured direct case here
        for mask_init in volumes.mask_inits:
            flags = [f"dataset.params.resolution={side}", *volumes.overrides]
            flags += [] if mask_init is None else [f"mask.init_value={mask_init}"]
            steps, meta, taps = [], None, ()
            for use_fft in (True, False):
                torch.manual_seed(0)  # the same weights on both paths
                module, meta = build_case(task, variant, [*flags, f"conv.use_fft={use_fft}"])
                module.to(device).train()
                x, y = random_batch(meta, batch, device)
                taps = kernel_taps(module, meta.size)
                steps.append(training_step(module, x, y, "32", compiled=False))
            n_taps = math.prod(taps)
            if last_direct is not None and last_direct[1] * n_taps / last_direct[0] > volumes.direct_limit_s:
                fft, direct, ratio = measure(steps[0], device, volumes.repeats), Measurement(ms=None), None
            else:
                fft, direct, ratio = measure_pair(steps[0], steps[1], device, volumes.repeats)
                last_direct = (n_taps, direct.ms / 1e3)  # type: ignore[operator]
            auto = "fft" if prefers_fft(taps) else "direct"
            faster = "fft" if ratio is None or ratio > 1.0 else "direct"
            assert meta is not None
            table.rows.append(
                [
                    "x".join(map(str, (meta.in_channels, *meta.size))),
                    batch,
                    "preset" if mask_init is None else f"{mask_init:g}",
                    f"{'x'.join(map(str, taps))} = {n_taps}",
                    auto,
                    fft.ms,
                    direct.ms,
                    ratio,
                    fft.mem_mib,
                    direct.mem_mib,
                    "yes" if auto == faster else "no",
                ]
            )
    table.notes += [
        f"Every layer of the network has the same kernel size at initialisation; auto picks FFT from "
        f"{FFT_CROSSOVER_TAPS[3]} taps in 3D (ckconv.functional.FFT_CROSSOVER_TAPS). direct/FFT is the median of the "
        "per-pair ratios of alternated steps.",
        f"skipped: the direct step would take more than {volumes.direct_limit_s:g} s, predicted from the last measured "
        "direct case of the same shape scaled by the taps; it counts as an FFT win.",
        f"Machine: {machine_description(device)}.",
    ]
    return table


def volumes_to_measure(quick: bool, sides: Sequence[int] | None, direct_limit_s: float | None) -> Volumes:
    """What ``--volumes`` measures: the full or quick plan, narrowed to ``--sides`` (the quick plan takes any side,
    at batch 1, with its small network), with ``--direct-limit`` in place of the plan's limit."""
    volumes = Volumes.quick() if quick else Volumes.full()
    if sides:
        chosen = set(sides)
        plan = tuple((side, 1) for side in sorted(chosen)) if quick else volumes.sides
        volumes = replace(volumes, sides=tuple(s for s in plan if s[0] in chosen))
    if direct_limit_s is not None:
        volumes = replace(volumes, direct_limit_s=direct_limit_s)
    return volumes


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.network``: 0 when the table is printed, 2 for a bad command line, 1 for a failure."""
    args = parse("network", argv, __doc__)

    def work() -> None:
        apply_setup_flags(args)
        device = torch.device(args.device)
        if args.volumes:
            volumes = volumes_to_measure(args.quick, args.sides, args.direct_limit)
            print(render(run_volumes(device, volumes), args.markdown))
            return
        cases = CASES[:1] if args.quick else CASES
        repeats = Repeats(target_s=0.5, min_repeats=1, max_repeats=2) if args.quick else Repeats()
        batch = 16 if args.batch is None else args.batch
        table = run(device, batch, cases, args.precision or "32", args.compile, repeats)
        print(render(table, args.markdown))

    return run_measurements(work)


if __name__ == "__main__":
    sys.exit(main())
