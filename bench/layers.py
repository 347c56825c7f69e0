"""Layer benchmark: SeparableFlexConv, FFT vs direct depthwise convolution, the crossover, and an FFT round trip.

Run ``python -m bench.layers [--quick] [--device cpu|cuda] [--markdown]``. Every timing is the median over repeats,
after warm-up, of one forward plus backward pass, in milliseconds. Peak memory is what the torch allocator hands out
during one forward plus backward pass beyond what was already allocated (inputs, parameters), in MiB:
``torch.cuda.max_memory_allocated`` on GPU, and on CPU the peak of the running sum of the allocation and free events
that ``torch.profiler`` records (``profile_memory=True``). It is not the process RSS (no allocator caching, no
library workspaces outside torch's allocator). See bench/README.md.
"""

from __future__ import annotations

if __name__ == "__main__":  # as a command: refuse a bad command line at once, not after 2 s of imports
    from bench.cli import parse

    parse("layers", description=__doc__)

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from bench.cli import LAYER_SECTIONS, parse, run_measurements
from bench.timing import (
    Measurement,
    Table,
    apply_setup_flags,
    machine_description,
    measure,
    measure_pair,
    render,
)
from ckconv.conv import SeparableFlexConv
from ckconv.functional import FFT_CROSSOVER_TAPS, direct_conv, fast_fft_size, fft_conv, prefers_fft

BATCH = 8
CHANNELS = 32


# ---------------------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Config:
    """What to measure. ``full()`` is the benchmark in bench/README.md, ``quick()`` a tiny smoke subset."""

    lengths_1d: tuple[int, ...]
    sizes_2d: tuple[int, ...]
    sizes_3d: tuple[int, ...]
    layer_lengths_1d: tuple[int, ...]
    layer_sizes_2d: tuple[int, ...]
    layer_kernels_2d: tuple[int | str, ...]
    mask_inits: tuple[float, ...]
    kernels_2d: tuple[int, ...] = (3, 5, 7, 9, 11, 15, 21, 33, 49, 65, 97)
    kernels_3d: tuple[int, ...] = (3, 5, 7, 9, 11, 16)
    target_s: float = 1.5  # time spent on the repeats of one case
    min_repeats: int = 3
    max_repeats: int = 15
    direct_limit_s: float = 3.0  # skip direct cases whose previous (smaller) kernel predicts more than this
    batch: int = BATCH
    channels: int = CHANNELS

    @staticmethod
    def full() -> Config:
        return Config(
            lengths_1d=(784, 1024, 4096, 16000),
            sizes_2d=(32, 64, 96),
            sizes_3d=(16,),
            layer_lengths_1d=(784, 1024, 4096, 16000),
            layer_sizes_2d=(32, 64, 96),
            layer_kernels_2d=("same", 33),
            mask_inits=(0.075, 1.0),
        )

    @staticmethod
    def quick() -> Config:
        return Config(
            lengths_1d=(256,),
            sizes_2d=(16,),
            sizes_3d=(),
            layer_lengths_1d=(256,),
            layer_sizes_2d=(16,),
            layer_kernels_2d=("same",),
            mask_inits=(1.0,),
            kernels_2d=(3, 16),
            target_s=0.05,
            min_repeats=2,
            max_repeats=3,
            direct_limit_s=0.5,
            batch=2,
            channels=4,
        )


def kernels_1d(length: int) -> list[int]:
    """3, 7, 15, 31, ... (2^j - 1) below ``length``, then ``length`` itself (the "same" kernel)."""
    ks = [2**j - 1 for j in range(2, 32) if 2**j - 1 < length]
    return [*ks, length]


def kernels_upto(candidates: Sequence[int], size: int) -> list[int]:
    """The candidates below ``size``, then ``size`` itself."""
    return [*[k for k in candidates if k < size], size]


# ---------------------------------------------------------------------------------------------------------------
# 1. SeparableFlexConv forward + backward
# ---------------------------------------------------------------------------------------------------------------
def _layer_step(layer: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        layer.zero_grad(set_to_none=True)
        x.grad = None
        layer(x).sum().backward()

    return step


def bench_layer(cfg: Config, device: torch.device) -> Table:
    table = Table(
        "SeparableFlexConv forward+backward (MAGNet kernel, batch "
        f"{cfg.batch}, {cfg.channels} -> {cfg.channels} channels)",
        ["input", "kernel", "mask init", "taps after crop", "path", "ms", "peak MiB"],
    )
    cases: list[tuple[tuple[int, ...], int | str, dict]] = []
    for length in cfg.layer_lengths_1d:
        cases.append(((length,), "same", {"causal": True, "use_fft": True}))
    for size in cfg.layer_sizes_2d:
        for kernel in cfg.layer_kernels_2d:
            cases.append(((size, size), kernel, {"causal": False, "use_fft": "auto"}))
    for spatial, kernel, kwargs in cases:
        for mask_init in cfg.mask_inits:
            torch.manual_seed(0)
            layer = SeparableFlexConv(
                cfg.channels,
                cfg.channels,
                len(spatial),
                kernel_size=kernel,
                input_size=spatial,
                mask_options={"init_value": mask_init},
                kernel_type="MAGNet",
                **kwargs,
            ).to(device)
            layer.train()
            x = torch.randn(cfg.batch, cfg.channels, *spatial, device=device, requires_grad=True)
            taps = layer.mask.cropped_kernel_size(layer.kernel_size)
            path = "fft" if prefers_fft(taps, kwargs["use_fft"]) else "direct"
            m = measure(_layer_step(layer, x), device, cfg)
            kernel_name = "x".join(map(str, layer.kernel_size)) + (f' ("{kernel}")' if isinstance(kernel, str) else "")
            table.rows.append(
                [
                    "x".join(map(str, spatial)) + (" causal" if kwargs["causal"] else ""),
                    kernel_name,
                    f"{mask_init:g}",
                    "x".join(map(str, taps)),
                    path,
                    m.ms,
                    m.mem_mib,
                ]
            )
    table.notes.append(
        "1D: causal, use_fft=True. 2D: centred, use_fft='auto' (path from FFT_CROSSOVER_TAPS = "
        f"{FFT_CROSSOVER_TAPS}). Input requires grad; the step is layer(x).sum().backward(), kernel network included."
    )
    return table


# ---------------------------------------------------------------------------------------------------------------
# 2. FFT vs direct depthwise convolution
# ---------------------------------------------------------------------------------------------------------------
def _conv_step(impl: Callable[..., Tensor], x: Tensor, w: Tensor, causal: bool) -> Callable[[], None]:
    def step() -> None:
        x.grad = None
        w.grad = None
        impl(x, w, causal=causal, groups=x.shape[1]).sum().backward()

    return step


@dataclass
class ConvResult:
    data_dim: int
    size: int
    kernel: int
    fft: Measurement
    direct: Measurement
    ratio: float | None = None  # median over alternated pairs of direct time / FFT time; None when skipped

    @property
    def taps(self) -> int:
        return self.kernel**self.data_dim


def bench_conv(cfg: Config, device: torch.device, data_dim: int, size: int, kernels: Sequence[int]) -> list[ConvResult]:
    """FFT and direct depthwise convolution of a ``(batch, channels, size^d)`` input for each kernel ``k^d``."""
    causal = data_dim == 1
    results: list[ConvResult] = []
    last_direct: tuple[int, float] | None = None  # (taps, seconds) of the last measured direct case
    for k in kernels:
        torch.manual_seed(0)
        x = torch.randn(cfg.batch, cfg.channels, *([size] * data_dim), device=device, requires_grad=True)
        w = torch.randn(cfg.channels, 1, *([k] * data_dim), device=device, requires_grad=True)
        # Direct cost grows linearly with the taps: skip once the last measured case predicts more than the limit.
        # The prediction only decides what to skip; nothing predicted is reported.
        taps = k**data_dim
        fft_step = _conv_step(fft_conv, x, w, causal)
        if last_direct is not None and last_direct[1] * taps / last_direct[0] > cfg.direct_limit_s:
            fft, direct, ratio = measure(fft_step, device, cfg), Measurement(ms=None), None
        else:
            fft, direct, ratio = measure_pair(fft_step, _conv_step(direct_conv, x, w, causal), device, cfg)
            last_direct = (taps, direct.ms / 1e3)
        results.append(ConvResult(data_dim, size, k, fft, direct, ratio))
    return results


def conv_table(results: Sequence[ConvResult], cfg: Config) -> Table:
    d = results[0].data_dim
    table = Table(
        f"{d}D depthwise convolution forward+backward, FFT vs direct (batch {cfg.batch}, {cfg.channels} channels"
        + (", causal)" if d == 1 else ", centred)"),
        ["input", "kernel", "taps", "FFT ms", "direct ms", "direct/FFT", "FFT peak MiB", "direct peak MiB"],
    )
    for r in results:
        table.rows.append(
            [
                "x".join([str(r.size)] * d),
                "x".join([str(r.kernel)] * d),
                r.taps,
                r.fft.ms,
                r.direct.ms,
                r.ratio,
                r.fft.mem_mib,
                r.direct.mem_mib,
            ]
        )
    table.notes.append(
        "FFT and direct repeats alternate; direct/FFT is the median of the per-pair ratios (robust to load from other "
        "processes), and it decides the crossover."
    )
    table.notes.append(
        f"skipped: the direct case would take more than {cfg.direct_limit_s:g} s per step, predicted from the last "
        "measured (smaller) kernel; not measured and not extrapolated."
    )
    return table


# ---------------------------------------------------------------------------------------------------------------
# 3. Crossover
# ---------------------------------------------------------------------------------------------------------------
def crossover(timings: Sequence[tuple[int, float, float | None]]) -> int | None:
    """Smallest tested kernel size (taps) from which FFT is faster than direct for every larger tested kernel.

    Args:
        timings: ``(taps, fft_ms, direct_ms)`` per kernel; ``direct_ms`` None means the direct case was skipped
            because it was too slow, which counts as a win for FFT.

    Returns:
        The taps of the first kernel of the final run of FFT wins, or None when FFT loses at the largest kernel.
    """
    result: int | None = None
    for taps, fft_ms, direct_ms in sorted(timings, key=lambda t: t[0]):
        fft_wins = direct_ms is None or fft_ms < direct_ms
        if not fft_wins:
            result = None
        elif result is None:
            result = taps
    return result


def conservative_crossover(per_size: Sequence[int | None]) -> int | None:
    """The largest of the per-size crossovers: below it, direct was at least as fast at some tested size."""
    found = [c for c in per_size if c is not None]
    return max(found) if found else None


def crossover_table(results_by_dim: dict[int, list[list[ConvResult]]]) -> tuple[Table, dict[int, int | None]]:
    table = Table(
        "FFT/direct crossover (smallest tested taps from which FFT is faster, for all larger tested kernels)",
        ["dims", "input", "crossover taps", "last direct win (taps)"],
    )
    chosen: dict[int, int | None] = {}
    for d, per_size in sorted(results_by_dim.items()):
        values = []
        for results in per_size:
            # Paired ratios decide: FFT "costs" 1, direct costs its median ratio to FFT.
            timings = [(r.taps, 1.0, r.ratio) for r in results]
            c = crossover(timings)
            values.append(c)
            below = [t for t, f, dm in timings if dm is not None and dm <= f]
            table.rows.append(
                [f"{d}D", "x".join([str(results[0].size)] * d), c if c is not None else "none", max(below, default="-")]
            )
        chosen[d] = conservative_crossover(values)
        table.rows.append([f"{d}D", "conservative (max)", chosen[d] if chosen[d] is not None else "none", ""])
    table.notes.append(
        'use_fft="auto" takes the FFT path when prod(kernel_size) >= FFT_CROSSOVER_TAPS[d]; shipped: '
        f"{FFT_CROSSOVER_TAPS}. 33x33 (1089 taps) under auto: "
        f"{'FFT' if prefers_fft((33, 33)) else 'direct'}."
    )
    return table, chosen


# ---------------------------------------------------------------------------------------------------------------
# 4. FFT convolution vs a plain rfft/irfft round trip
# ---------------------------------------------------------------------------------------------------------------
def _round_trip(n_fft: int, length: int) -> Callable[[Tensor], Tensor]:
    def fn(x: Tensor) -> Tensor:
        return torch.fft.irfft(torch.fft.rfft(x, n=n_fft), n=n_fft)[..., :length]

    return fn


def bench_round_trip(cfg: Config, device: torch.device) -> Table:
    table = Table(
        f"1D FFT convolution (full-length causal kernel) vs a plain rfft/irfft round trip "
        f"(batch {cfg.batch}, {cfg.channels} channels)",
        [
            "L",
            "FFT size",
            "fwd conv ms",
            "fwd round trip ms",
            "fwd ratio",
            "fwd+bwd conv ms",
            "fwd+bwd round trip ms",
            "fwd+bwd ratio",
            "round trip n=L fwd+bwd ms",
            "fwd+bwd ratio vs n=L",
        ],
    )
    for length in cfg.lengths_1d:
        torch.manual_seed(0)
        x = torch.randn(cfg.batch, cfg.channels, length, device=device, requires_grad=True)
        w = torch.randn(cfg.channels, 1, length, device=device, requires_grad=True)
        n_fft = fast_fft_size(2 * length - 1)
        rt = _round_trip(n_fft, length)
        rt_short = _round_trip(length, length)

        def conv_fwd(x: Tensor = x, w: Tensor = w) -> None:
            with torch.no_grad():
                fft_conv(x, w, causal=True, groups=x.shape[1])

        def rt_fwd(x: Tensor = x, rt: Callable = rt) -> None:
            with torch.no_grad():
                rt(x)

        def rt_step(x: Tensor = x, rt: Callable = rt) -> None:
            x.grad = None
            rt(x).sum().backward()

        def rt_short_step(x: Tensor = x, rt: Callable = rt_short) -> None:
            x.grad = None
            rt(x).sum().backward()

        conv_f = measure(conv_fwd, device, cfg, memory=False).ms
        rt_f = measure(rt_fwd, device, cfg, memory=False).ms
        conv_fb = measure(_conv_step(fft_conv, x, w, True), device, cfg, memory=False).ms
        rt_fb = measure(rt_step, device, cfg, memory=False).ms
        rt_short_fb = measure(rt_short_step, device, cfg, memory=False).ms
        table.rows.append(
            [
                length,
                n_fft,
                conv_f,
                rt_f,
                conv_f / rt_f,
                conv_fb,
                rt_fb,
                conv_fb / rt_fb,
                rt_short_fb,
                conv_fb / rt_short_fb,
            ]
        )
    table.notes.append(
        "Round trip: irfft(rfft(x, n), n) of the same (batch, channels, L) tensor with n = the FFT size the "
        "convolution uses (>= 2L - 1, so no wrap-around); the last two columns use n = L (circular, no padding). "
        "The convolution also transforms the kernel and multiplies, so its ideal ratio vs the padded round trip is "
        "a little above 1."
    )
    return table


# ---------------------------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Report:
    machine: str
    tables: list[Table]
    crossover: dict[int, int | None]


SECTIONS = LAYER_SECTIONS


def run(
    quick: bool = False,
    device: str = "cpu",
    sections: Sequence[str] = SECTIONS,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Run the benchmark and return its tables (printing them is left to the caller)."""
    cfg = Config.quick() if quick else Config.full()
    dev = torch.device(device)
    tables: list[Table] = []
    chosen: dict[int, int | None] = {}

    def emit(table: Table) -> None:
        tables.append(table)
        if progress is not None:
            progress(render(table, markdown=False))

    if "layer" in sections:
        emit(bench_layer(cfg, dev))
    if "conv" in sections:
        by_dim: dict[int, list[list[ConvResult]]] = {}
        for d, sizes in ((1, cfg.lengths_1d), (2, cfg.sizes_2d), (3, cfg.sizes_3d)):
            for size in sizes:
                ks = kernels_1d(size) if d == 1 else kernels_upto(cfg.kernels_2d if d == 2 else cfg.kernels_3d, size)
                by_dim.setdefault(d, []).append(bench_conv(cfg, dev, d, size, ks))
            if by_dim.get(d):
                emit(conv_table([r for results in by_dim[d] for r in results], cfg))
        table, chosen = crossover_table(by_dim)
        emit(table)
    if "roundtrip" in sections:
        emit(bench_round_trip(cfg, dev))
    return Report(machine_description(dev), tables, chosen)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.layers``: 0 when the tables are printed, 2 for a bad command line, 1 for a failure."""
    args = parse("layers", argv, __doc__)

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def work() -> None:
        apply_setup_flags(args)
        start = time.perf_counter()
        report = run(args.quick, args.device, args.sections, progress=progress if args.markdown else None)
        out = [f"Machine: {report.machine}", ""]
        out += [render(t, args.markdown) for t in report.tables]
        if report.crossover:
            out.append(f"Measured crossover (taps): {report.crossover}")
        out.append(f"Total benchmark time: {time.perf_counter() - start:.0f} s")
        print("\n".join(out))

    return run_measurements(work)


if __name__ == "__main__":
    sys.exit(main())
