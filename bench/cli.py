"""The benchmarks' command lines, parsed and checked without torch (the design's run policy): a bad one is refused
in one line naming the option, exit 2, before anything is measured; a failure while measuring is one line, exit 1.

Each benchmark module calls :func:`parse` first thing when it runs as a command, before its own imports load torch
(about 2 s, 6 s with the network's builders), so that a refusal comes at once; its ``main`` parses again (cheap) to
get the arguments. Only ``--device cuda`` needs torch to be checked, and imports nothing else for it.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from argcheck.command_line import OneLineParser, positive_float, positive_int

LAYER_SECTIONS = ("layer", "conv", "roundtrip")
VOLUME_BATCHES = {28: 2, 64: 1}  # side -> batch of the 3D benchmark (bench.network.Volumes.full)
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def _sections(text: str) -> tuple[str, ...]:
    """``--sections``: comma-separated names of :data:`LAYER_SECTIONS`, at least one, in the order given."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in LAYER_SECTIONS]
    if unknown or not names:
        what = f"not a section: {', '.join(unknown)}" if unknown else f"{text!r} names no section"
        raise argparse.ArgumentTypeError(f"{what}; choose from {','.join(LAYER_SECTIONS)}")
    return tuple(dict.fromkeys(names))


def _folder(text: str) -> Path:
    """``--data-dir``: a path that is a folder, or none yet (MNIST-1D is generated and cached there, as by
    ``main.py``); a file is refused, since nothing could be cached in it."""
    if not text:
        raise argparse.ArgumentTypeError("is empty; pass a folder")
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is not a folder")
    return path


def _setup_flags(parser: argparse.ArgumentParser) -> None:
    """The flags every benchmark shares: CPU threads and the host allocator (``bench.timing.apply_setup_flags``)."""
    parser.add_argument("--threads", type=positive_int, default=2, help="torch CPU threads, >= 1 (default 2)")
    parser.add_argument(
        "--glibc-default-malloc",
        action="store_true",
        help="leave glibc's malloc thresholds as they are (training raises them: training/run/allocator.py)",
    )


def _layers(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], str | None]:
    parser.add_argument("--quick", action="store_true", help="tiny subset (smoke test, seconds)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--markdown", action="store_true", help="print the tables as markdown")
    _setup_flags(parser)
    parser.add_argument(
        "--sections",
        type=_sections,
        default=LAYER_SECTIONS,
        help=f"comma-separated subset of {','.join(LAYER_SECTIONS)} (default: all)",
    )
    return lambda args: None  # every option stands alone


def _network(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], str | None]:
    # --batch and --precision default to None so that one given with --volumes (its own batch per side, float32
    # eager steps) is refused instead of ignored; main fills in 16 and "32".
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch", type=positive_int, default=None, help="examples per step (default 16)")
    parser.add_argument("--precision", default=None, choices=["32", "bf16"], help="default 32")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network")
    parser.add_argument(
        "--quick", action="store_true", help="only sMNIST CCNN-4,140 (with --volumes: a tiny 3D network), few repeats"
    )
    parser.add_argument("--volumes", action="store_true", help="the 3D network, FFT against direct convolution")
    parser.add_argument(
        "--sides", type=int, nargs="+", choices=tuple(VOLUME_BATCHES), help="with --volumes: only these volume sides"
    )
    parser.add_argument(
        "--direct-limit",
        type=positive_float,
        default=None,
        help="with --volumes: skip direct steps predicted to take more than this many seconds (> 0)",
    )
    _setup_flags(parser)
    parser.add_argument("--markdown", action="store_true")

    def check(args: argparse.Namespace) -> str | None:
        if not args.volumes:
            for option, value in (("--sides", args.sides), ("--direct-limit", args.direct_limit)):
                if value is not None:
                    return f"{option} applies to the 3D benchmark only; add --volumes or drop {option}"
            return None
        ignored = [f"--batch {args.batch}"] if args.batch is not None else []
        ignored += [f"--precision {args.precision}"] if args.precision is not None else []
        ignored += ["--compile"] if args.compile else []
        if ignored:
            batches = ", ".join(f"{side}^3 at {batch}" for side, batch in VOLUME_BATCHES.items())
            return f"{ignored[0]} does not apply to --volumes (float32 eager steps, batch per side: {batches}); drop it"
        return None

    return check


def _latency(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], str | None]:
    parser.add_argument("--quick", action="store_true", help="the shipped model only, few repeats (a smoke test)")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    parser.add_argument(
        "--data-dir",
        type=_folder,
        default=None,
        help="where MNIST-1D is cached for the evaluation table (default: the shipped run's); not with --quick",
    )
    _setup_flags(parser)

    def check(args: argparse.Namespace) -> str | None:
        if args.quick and args.data_dir is not None:
            # The quick run times random inputs and evaluates nothing: a folder passed would be read by nothing.
            return (
                f"--data-dir {args.data_dir}: --quick reads no data (it skips the evaluation table); "
                "drop --data-dir or --quick"
            )
        return None

    return check


# Each command's options, added to its parser; what it returns checks options against each other (a refusal's line,
# or None).
_COMMANDS: dict[str, Callable[[argparse.ArgumentParser], Callable[[argparse.Namespace], str | None]]] = {
    "layers": _layers,
    "network": _network,
    "latency": _latency,
}


def _cuda_missing() -> bool:
    import torch  # only for --device cuda: the one check that needs it

    with warnings.catch_warnings():  # a broken driver warns here; the refusal below says it in its one line
        warnings.simplefilter("ignore")
        return not torch.cuda.is_available()


def parse(command: str, argv: Sequence[str] | None = None, description: str | None = None) -> argparse.Namespace:
    """The arguments of ``python -m bench.<command>``, checked; a bad command line exits 2 with one line.

    Args:
        command: ``layers``, ``network`` or ``latency``.
        argv: the arguments (default ``sys.argv[1:]``).
        description: the ``--help`` text (the benchmark module's docstring).
    """
    parser = OneLineParser(
        prog=f"python -m bench.{command}",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check = _COMMANDS[command](parser)
    args = parser.parse_args(argv)
    problem = check(args)
    if problem is not None:
        parser.error(problem)
    if getattr(args, "device", "cpu") == "cuda" and _cuda_missing():
        parser.error("--device cuda: torch finds no CUDA GPU (torch.cuda.is_available() is False); use --device cpu")
    return args


def run_measurements(work: Callable[[], None]) -> int:
    """Run a benchmark's ``work``: 0 when done; one line on stderr otherwise, with exit 1 when it ran out of memory,
    130 when interrupted, and the project's code for its known errors (2: a checkpoint or data refused). Any other
    error is a bug and keeps its traceback."""
    import torch

    from training.cli import report

    try:
        work()
    except KeyboardInterrupt:
        print("error: interrupted; nothing after the tables printed so far was measured", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (MemoryError, torch.OutOfMemoryError) as error:
        detail = " ".join(str(error).split()) or type(error).__name__
        print(f"error: out of memory while measuring: {detail}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as error:
        return report(error)
    return 0
