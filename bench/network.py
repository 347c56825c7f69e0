"""Network benchmark: one training step (forward + backward) of the paper's CCNNs, built from their presets.

Run ``python -m bench.network [--quick] [--device cpu|cuda] [--batch 16] [--markdown] [--precision 32|bf16]
[--compile]``. Each case builds the network of ``cfg/experiment/<task>/<variant>.yaml`` from the dataset's metadata
(no data files), feeds random inputs of the task's shape, and reports the median milliseconds of forward + loss +
backward, the peak memory of one step and the throughput. The original implementation's times on this project's
2-core CPU machine (from the speed issue) are printed beside ours.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.timing import Table, add_setup_flags, apply_setup_flags, machine_description, measure, render
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
    from hydra import compose, initialize_config_dir

    from training.build import build_datamodule, build_module

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={task}/{variant}", *overrides])
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
        loss, _ = module._loss_and_predictions(logits, y)
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


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--precision", default="32", choices=["32", "bf16"])
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--quick", action="store_true", help="only sMNIST CCNN-4,140, few repeats")
    add_setup_flags(parser)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    apply_setup_flags(args)
    cases = CASES[:1] if args.quick else CASES
    repeats = Repeats(target_s=0.5, min_repeats=1, max_repeats=2) if args.quick else Repeats()
    table = run(torch.device(args.device), args.batch, cases, args.precision, args.compile, repeats)
    print(render(table, args.markdown))


if __name__ == "__main__":
    main()
