"""Inference latency: the training-time network, its materialised copy, ONNX Runtime and streaming, on CPU.

Run ``python -m bench.latency [--quick] [--markdown] [--threads 2]``. For each network (the default MNIST-1D model,
as shipped in ``pretrained/mnist1d_ccnn/model.ckpt``, and the sMNIST and CIFAR-10 CCNN-4,140 presets, built from
their configs with their initial weights: no trained checkpoint of them ships) it reports the median milliseconds of
one forward pass, in eval mode under ``torch.no_grad``, at batch 1 and batch 64, of:

- ``eval``: the network as it trains and evaluates today (every kernel sampled from its kernel net at every pass);
- ``materialised``: ``models.materialize.materialize(net, size)`` (fixed kernels, batch norms folded, FFT or direct
  as the layer picks);
- ``ONNX Runtime``: the file ``python -m training.export --format onnx`` writes (direct convolutions), run by
  ONNX Runtime's CPU provider with its default threads;
- ``streaming / sample``: for causal 1D networks, ``models.streaming.StreamingCCNN`` fed one sample at a time: the
  time of one step (a whole sequence streamed, divided by its length).

A second table times the shipped model's evaluation of its whole test split as ``main.py`` runs it today and
through ``models.materialize.MaterializedEvaluation`` (what the evaluation path would call), and compares their
predictions.

Inputs are random, of each task's shape. Kernel sizes follow the masks: the presets' initial masks crop sMNIST's
784-tap kernels to about 60 taps and leave CIFAR-10's 33x33 whole (widths 0.075 and 0.75); trained masks differ.
"""

from __future__ import annotations

if __name__ == "__main__":  # as a command: refuse a bad command line at once, not after 2 s of imports
    from bench.cli import parse

    parse("latency", description=__doc__)

import functools
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from bench.cli import parse, run_measurements
from bench.timing import (
    Table,
    apply_setup_flags,
    machine_description,
    measure,
    measure_pair,
    render,
)
from models.ccnn import CCNN
from models.materialize import materialize
from models.streaming import StreamingCCNN

SHIPPED = Path(__file__).resolve().parent.parent / "pretrained" / "mnist1d_ccnn" / "model.ckpt"
CPU = torch.device("cpu")


@dataclass(frozen=True)
class Repeats:
    target_s: float = 3.0
    min_repeats: int = 3
    max_repeats: int = 30


@dataclass(frozen=True)
class Case:
    name: str
    net: CCNN
    size: tuple[int, ...]
    in_channels: int


def shipped_case() -> Case:
    from training.export import load_checkpoint

    loaded = load_checkpoint(SHIPPED)
    meta = loaded.datamodule.meta
    return Case("default (MNIST-1D, shipped checkpoint)", loaded.net, tuple(meta.size), meta.in_channels)


def preset_case(task: str, variant: str, label: str) -> Case:
    from bench.network import build_case

    torch.manual_seed(0)
    module, meta = build_case(task, variant)
    return Case(label, module.net.eval(), tuple(meta.size), meta.in_channels)


def cases(quick: bool) -> list[Case]:
    if quick:
        return [shipped_case()]
    return [
        shipped_case(),
        preset_case("smnist", "ccnn_4_140", "sMNIST CCNN-4,140 (causal, 784)"),
        preset_case("cifar10", "ccnn_4_140", "CIFAR-10 CCNN-4,140 (32x32)"),
    ]


def onnx_runner(net: CCNN, size: tuple[int, ...], folder: Path) -> Callable[[Tensor], object]:
    from models.exporters import onnx_session, write_onnx

    path = folder / "model.onnx"
    write_onnx(net, size, path)
    session = onnx_session(path)
    return lambda x: session.run(["logits"], {"input": x.numpy()})


def streaming_step_ms(net: CCNN, size: tuple[int, ...], x: Tensor, repeats: int) -> float:
    """Milliseconds per sample of streaming ``x`` one sample at a time (median over whole sequences)."""
    import time

    streaming = StreamingCCNN(net, size[0])
    times = []
    for _ in range(repeats + 1):  # the first is a warm-up
        streaming.reset()
        start = time.perf_counter()
        for t in range(size[0]):
            streaming.step(x[..., t : t + 1])
        times.append((time.perf_counter() - start) / size[0])
    return 1e3 * statistics.median(times[1:])


def median_ms(forward: Callable[[Tensor], object], x: Tensor, repeats: Repeats) -> float:
    ms = measure(functools.partial(forward, x), CPU, repeats, memory=False).ms
    assert ms is not None
    return ms


def run(quick: bool = False, batches: Sequence[int] = (1, 64), repeats: Repeats | None = None) -> Table:
    repeats = repeats or (Repeats(0.5, 2, 5) if quick else Repeats())
    table = Table(
        title="Inference latency (median ms per forward pass, CPU, eval mode, no_grad)",
        columns=["network", "batch", "eval", "materialised", "speed-up", "ONNX Runtime", "streaming / sample"],
    )
    with tempfile.TemporaryDirectory() as folder, torch.no_grad():
        for case in cases(quick):
            net = case.net.eval()
            fixed = materialize(net, case.size)
            ort = onnx_runner(net, case.size, Path(folder))
            causal = case.net.data_dim == 1 and getattr(case.net.conv1, "causal", False)
            for batch in batches:
                x = torch.randn(batch, case.in_channels, *case.size, generator=torch.Generator().manual_seed(0))
                # eval and materialised in alternation: the speed-up is the median of the pairs' ratios, which load
                # from other processes hits alike.
                timed_eval, timed_fixed, speedup = measure_pair(
                    functools.partial(net, x), functools.partial(fixed, x), CPU, repeats
                )
                eval_ms, fixed_ms = timed_eval.ms, timed_fixed.ms
                ort_ms = median_ms(ort, x, repeats)
                stream_ms = streaming_step_ms(net, case.size, x, 1 if quick else 3) if causal else float("nan")
                table.rows.append([case.name, batch, eval_ms, fixed_ms, f"{1 / speedup:.2f}x", ort_ms, stream_ms])
    table.notes.append(f"Machine: {machine_description(CPU)}.")
    table.notes.append("speed-up: eval / materialised, the median ratio of passes timed in alternation.")
    table.notes.append("streaming / sample: one step of a sequence fed one sample at a time (causal 1D networks).")
    return table


def evaluation(data_dir: Path | None = None) -> Table:
    """The shipped model's evaluation of its whole MNIST-1D test split, in the run's test batches, as ``main.py``
    evaluates today (kernels sampled at every batch) and through ``models.materialize.MaterializedEvaluation``
    (kernels sampled once), with the predictions compared."""
    import time

    from models.materialize import MaterializedEvaluation
    from training.export import check_inputs, load_checkpoint

    loaded = load_checkpoint(SHIPPED, data_dir)
    check_inputs(loaded, tuple(loaded.datamodule.meta.size))  # reads the data
    data, batch = loaded.datamodule.test_set, loaded.datamodule.test_batch_size
    assert data is not None
    x = torch.stack([data[i][0] for i in range(len(data))])  # type: ignore[arg-type]
    net, materialised = loaded.net, MaterializedEvaluation(loaded.net)
    table = Table(
        title=f"Evaluating the shipped model on its {len(x)} test examples (batches of {batch}), CPU",
        columns=["path", "seconds (median of 5)", "speed-up", "same predictions"],
    )
    reference = None
    for name, forward in (("today (kernels sampled per batch)", net), ("MaterializedEvaluation", materialised)):
        times, predictions = [], None
        for _ in range(6):  # the first is a warm-up (and, materialised, builds the copy: counted in the others)
            materialised.clear()
            start = time.perf_counter()
            with torch.inference_mode():
                predictions = torch.cat([forward(part).argmax(-1) for part in torch.split(x, batch)])
            times.append(time.perf_counter() - start)
        seconds = statistics.median(times[1:])
        reference = reference if reference is not None else (seconds, predictions)
        same = bool(torch.equal(predictions, reference[1]))
        table.rows.append([name, seconds, f"{reference[0] / seconds:.2f}x", "yes" if same else "NO"])
    table.notes.append(f"Machine: {machine_description(CPU)}.")
    return table


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.latency``: 0 when the tables are printed, 2 for a bad command line, 1 for a failure."""
    args = parse("latency", argv, __doc__)

    def work() -> None:
        apply_setup_flags(args)
        print(render(run(quick=args.quick), args.markdown))
        if not args.quick:
            print(render(evaluation(args.data_dir), args.markdown))

    return run_measurements(work)


if __name__ == "__main__":
    sys.exit(main())
