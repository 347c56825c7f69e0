"""The layer benchmark: quick mode runs in-process and yields complete tables; the crossover picks the right value.
The benchmarks' command lines: a bad one is refused in one line, exit 2, before anything is measured."""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

import bench.latency
import bench.layers
import bench.network
from argcheck.command_line import EXIT_REFUSED
from bench.cli import VOLUME_BATCHES, parse, run_measurements
from bench.layers import (
    SECTIONS,
    Config,
    conservative_crossover,
    crossover,
    kernels_1d,
    kernels_upto,
    render,
    run,
)
from bench.network import Volumes, volumes_to_measure
from ckconv.functional import FFT_CROSSOVER_TAPS, prefers_fft


@pytest.fixture(scope="module")
def quick_report():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        return run(quick=True, device="cpu", sections=SECTIONS)
    finally:
        torch.set_num_threads(threads)


def _table(report, prefix: str):
    matches = [t for t in report.tables if t.title.startswith(prefix)]
    assert len(matches) == 1, [t.title for t in report.tables]
    return matches[0]


def _positive(values) -> bool:
    return all(isinstance(v, float) and v > 0 and math.isfinite(v) for v in values)


def test_quick_layer_table(quick_report):
    cfg = Config.quick()
    table = _table(quick_report, "SeparableFlexConv")
    expected = len(cfg.mask_inits) * (len(cfg.layer_lengths_1d) + len(cfg.layer_sizes_2d) * len(cfg.layer_kernels_2d))
    assert len(table.rows) == expected
    assert table.column("input")[0] == f"{cfg.layer_lengths_1d[0]} causal"
    assert _positive(table.column("ms"))
    assert _positive(table.column("peak MiB"))
    assert set(table.column("path")) <= {"fft", "direct"}


def test_quick_conv_tables(quick_report):
    cfg = Config.quick()
    one = _table(quick_report, "1D depthwise")
    assert one.column("taps") == kernels_1d(cfg.lengths_1d[0])
    assert _positive(one.column("FFT ms"))
    assert all(v is None or v > 0 for v in one.column("direct ms"))
    two = _table(quick_report, "2D depthwise")
    assert two.column("taps") == [k * k for k in kernels_upto(cfg.kernels_2d, cfg.sizes_2d[0])]
    assert _positive(two.column("FFT ms"))
    assert set(quick_report.crossover) == {1, 2}
    text = render(two, markdown=True)
    assert text.count("\n| ") == len(two.rows) + 1  # header and one line per row


def test_quick_round_trip_table(quick_report):
    table = _table(quick_report, "1D FFT convolution")
    assert table.column("L") == list(Config.quick().lengths_1d)
    for name in ("fwd conv ms", "fwd round trip ms", "fwd ratio", "fwd+bwd conv ms", "fwd+bwd ratio"):
        assert _positive(table.column(name)), name


def test_kernel_lists():
    assert kernels_1d(784) == [3, 7, 15, 31, 63, 127, 255, 511, 784]
    assert kernels_1d(1024) == [3, 7, 15, 31, 63, 127, 255, 511, 1023, 1024]
    assert kernels_upto((3, 5, 33, 49), 32) == [3, 5, 32]


def test_crossover_on_synthetic_timings():
    # FFT flat at 10 ms, direct linear in taps: direct wins up to 63, FFT from 127 on.
    timings = [(k, 10.0, 0.1 * k) for k in (3, 7, 15, 31, 63, 127, 255)]
    assert crossover(timings) == 127
    # Order does not matter; a skipped (too slow) direct case counts as an FFT win.
    assert crossover([*reversed(timings), (511, 10.0, None)]) == 127
    # A noisy FFT win at a small kernel followed by a direct win does not count.
    assert crossover([(3, 1.0, 2.0), (7, 3.0, 2.0), (15, 3.0, 4.0), (31, 3.0, 8.0)]) == 15
    # FFT faster everywhere, or never faster.
    assert crossover([(3, 1.0, 2.0), (7, 1.0, 3.0)]) == 3
    assert crossover([(3, 5.0, 2.0), (7, 5.0, 3.0)]) is None
    assert conservative_crossover([127, 255, None, 63]) == 255
    assert conservative_crossover([None]) is None


def test_shipped_crossover_sends_large_2d_kernels_to_fft():
    assert prefers_fft((33, 33))
    assert prefers_fft((65, 65))
    assert not prefers_fft((3, 3))
    assert not prefers_fft((3,))
    assert set(FFT_CROSSOVER_TAPS) == {1, 2, 3}


# ---------------------------------------------------------------------------------------------------------------
# Command lines: a bad one is refused in one line naming the option, exit 2, before anything is measured
# ---------------------------------------------------------------------------------------------------------------
COMMANDS = {"layers": bench.layers, "network": bench.network, "latency": bench.latency}

BAD_COMMAND_LINES = [
    ("layers", ["--device", "tpu"], "--device"),
    ("layers", ["--quick", "--device", "cuda"], "--device"),  # no GPU (torch.cuda.is_available patched to False)
    ("layers", ["--threads", "0"], "--threads"),
    ("layers", ["--threads", "-3"], "--threads"),
    ("layers", ["--threads", "many"], "--threads"),
    ("layers", ["--sections", "foo"], "--sections"),
    ("layers", ["--sections", ","], "--sections"),
    ("layers", ["--fast"], "--fast"),
    ("layers", ["--mark"], "--mark"),  # an abbreviation of --markdown is not taken for it
    ("network", ["--quick", "--batch", "0"], "--batch"),
    ("network", ["--batch", "-4"], "--batch"),
    ("network", ["--batch", "big"], "--batch"),
    ("network", ["--precision", "16"], "--precision"),
    ("network", ["--quick", "--device", "cuda"], "--device"),
    ("network", ["--volumes", "--sides", "32"], "--sides"),
    ("network", ["--quick", "--sides", "28"], "--sides"),  # without --volumes it would be ignored
    ("network", ["--direct-limit", "5"], "--direct-limit"),
    ("network", ["--volumes", "--quick", "--direct-limit", "-1"], "--direct-limit"),
    ("network", ["--volumes", "--direct-limit", "0"], "--direct-limit"),
    ("network", ["--volumes", "--direct-limit", "nan"], "--direct-limit"),
    ("network", ["--volumes", "--batch", "4"], "--batch"),
    ("network", ["--volumes", "--precision", "bf16"], "--precision"),
    ("network", ["--volumes", "--compile"], "--compile"),
    ("network", ["--gpu"], "--gpu"),
    ("latency", ["--quick", "--threads", "0"], "--threads"),
    ("latency", ["--quick", "--data-dir", "{file}"], "--data-dir"),
    ("latency", ["--quick", "--data-dir", "{missing}"], "--data-dir"),  # --quick reads no data
    ("latency", ["--data-dir", "{file}"], "--data-dir"),
    ("latency", ["--data-dir", ""], "--data-dir"),
    ("latency", ["--fast"], "--fast"),
    ("latency", ["extra"], "extra"),
]


@pytest.mark.parametrize(("command", "argv", "option"), BAD_COMMAND_LINES)
def test_bad_command_line_is_refused_in_one_line_before_measuring(command, argv, option, tmp_path, monkeypatch, capsys):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    argv = [a.format(file=afile, missing=tmp_path / "missing") for a in argv]
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    module = COMMANDS[command]

    def measure(*args, **kwargs):
        raise AssertionError("a refused command line reached the measurements")

    monkeypatch.setattr(module, "run_measurements", measure)
    with pytest.raises(SystemExit) as refused:
        module.main(argv)
    assert refused.value.code == EXIT_REFUSED
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].strip(), captured.err
    assert option in lines[0]
    assert captured.out == ""
    assert list(work.iterdir()) == []
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        ("layers", ["--quick", "--sections", "conv, layer,conv", "--threads", "1"]),
        ("network", ["--quick", "--batch", "4", "--precision", "bf16", "--compile"]),
        ("network", ["--volumes", "--quick", "--sides", "64", "--direct-limit", "inf"]),
        ("latency", ["--data-dir", "{missing}"]),  # MNIST-1D is generated and cached there, as main.py does
    ],
)
def test_good_command_line_reaches_the_measurements(command, argv, tmp_path, monkeypatch):
    argv = [a.format(missing=tmp_path / "missing") for a in argv]
    module = COMMANDS[command]
    reached = []
    monkeypatch.setattr(module, "run_measurements", lambda work: reached.append(work) or 0)
    assert module.main(argv) == 0
    assert len(reached) == 1


def test_layer_sections_are_parsed_in_order_without_repeats():
    assert parse("layers", ["--sections", "conv, layer,conv"]).sections == ("conv", "layer")
    assert parse("layers", []).sections == SECTIONS


def test_network_defaults_and_volumes_plan():
    args = parse("network", [])
    assert (args.batch, args.precision, args.compile) == (None, None, False)  # main fills in 16 and "32"
    full = Volumes.full()
    assert full.sides == tuple(VOLUME_BATCHES.items())  # the sides --sides may name
    assert volumes_to_measure(False, None, None) == full
    assert volumes_to_measure(False, [64, 28, 28], None).sides == full.sides
    assert volumes_to_measure(False, [64], 7.5) == replace(full, sides=((64, 1),), direct_limit_s=7.5)
    # --quick measures whichever sides are asked for, at batch 1, with its small network.
    assert volumes_to_measure(True, None, None) == Volumes.quick()
    assert volumes_to_measure(True, [64, 28], None).sides == ((28, 1), (64, 1))


def test_out_of_memory_while_measuring_is_one_line_and_exit_1(capsys):
    def work() -> None:
        raise torch.OutOfMemoryError("CUDA out of memory.\nTried to allocate 2.00 GiB")

    assert run_measurements(work) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "out of memory" in lines[0]


def test_interrupt_while_measuring_is_one_line_and_exit_130(capsys):
    def work() -> None:
        raise KeyboardInterrupt

    assert run_measurements(work) == 130
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_bug_while_measuring_keeps_its_traceback():
    def work() -> None:
        raise ZeroDivisionError("a bug")

    with pytest.raises(ZeroDivisionError):
        run_measurements(work)


def test_commands_refuse_before_torch_is_imported():
    # As commands (python -m bench.<name>), the modules parse their command line before their imports load torch.
    script = (
        "import runpy, sys\n"
        "for name, bad in (('layers', '--threads=0'), ('network', '--batch=0'), ('latency', '--fast')):\n"
        "    sys.argv = [name, bad]\n"
        "    try:\n"
        "        runpy.run_module(f'bench.{name}', run_name='__main__')\n"
        "    except SystemExit as stop:\n"
        "        assert stop.code == 2, stop.code\n"
        "    assert 'torch' not in sys.modules, name\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert len(done.stderr.splitlines()) == 3
