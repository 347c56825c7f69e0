"""Kernel pictures: every panel on the layer's whole grid of positions in [-1, 1], each layer's own mask drawn from its
learned width, axes and colour bars, and ``python -m training.plot_kernels`` (run in this process through its
``main``), which writes new files only, never into pretrained/."""

from __future__ import annotations

import math
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from ckconv import CKConv, FlexConv, SeparableFlexConv
from models.plot_kernels import KernelPlotCallback, kernel_view, picture_epochs, plot_kernels
from tests.conftest import REPO, SHIPPED, tree
from training.plot_kernels import main

GRID_40 = torch.linspace(-1.0, 1.0, 40)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def gaussian(x: torch.Tensor, width: float) -> torch.Tensor:
    """FlexConv's centred mask, written out (MASK_EPS = 1e-8 is far below the tolerance)."""
    return torch.exp(-0.5 * x**2 / width**2)


def labelled(ax, label: str) -> list:
    return [line for line in ax.get_lines() if line.get_label() == label]


def row_axes(fig, rows: int, columns: int) -> list[list]:
    """The subplot grid (colour bars, which matplotlib appends to fig.axes, left out)."""
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == rows * columns
    return [panels[r * columns : (r + 1) * columns] for r in range(rows)]


@pytest.fixture
def net_1d() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        SeparableFlexConv(2, 3, 1, input_size=40, mask_options={"init_value": 0.1}),
        SeparableFlexConv(3, 3, 1, input_size=40, mask_options={"init_value": 0.5}),
    )


# ---------------------------------------------------------------------------------------------------------------------
# 1D
# ---------------------------------------------------------------------------------------------------------------------
def test_mask_panel_of_each_layer_is_that_layers_mask_on_the_whole_grid(net_1d):
    rows = row_axes(plot_kernels(net_1d, max_channels=2), rows=2, columns=3)
    drawn = []
    for row, layer in zip(rows, net_1d):
        (line,) = labelled(row[-1], "mask")
        x, y = torch.tensor(line.get_xdata()), torch.tensor(line.get_ydata())
        torch.testing.assert_close(x, GRID_40)
        torch.testing.assert_close(y, gaussian(GRID_40, layer.mask.width.item()), atol=1e-6, rtol=0)
        drawn.append(y)
    assert not torch.allclose(drawn[0], drawn[1], atol=0.1)  # a narrow and a wide mask look different
    # sigma 0.1 keeps |x| <= 0.1 * sqrt(2 ln 10) = 0.2146, i.e. 4 taps on each side of 0 (step 2/39): 8 of 40.
    assert rows[0][-1].get_title() == "mask: σ=0.100, 8/40 taps"  # 3 significant digits, as every width is shown
    assert rows[1][-1].get_title().startswith("mask: σ=0.500, ")


def test_kernel_panel_draws_the_layers_kernel_at_its_kept_positions_under_the_mask(net_1d):
    rows = row_axes(plot_kernels(net_1d, max_channels=2), rows=2, columns=3)
    layer, ax = net_1d[0], rows[0][1]  # channel 1 of the narrow layer
    with torch.no_grad():
        kernel = layer.sample_kernel((40,))[1, 0]  # (8,): the taps the crop keeps
    kept = slice(16, 24)
    (line,) = labelled(ax, "kernel")
    torch.testing.assert_close(torch.tensor(line.get_xdata()), GRID_40[kept])
    torch.testing.assert_close(torch.tensor(line.get_ydata()), kernel)
    upper, lower = labelled(ax, "mask")  # the mask dashed over the kernel, scaled to its peak
    envelope = kernel.abs().max() * gaussian(GRID_40, 0.1)
    torch.testing.assert_close(torch.tensor(upper.get_ydata()), envelope, atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.tensor(lower.get_ydata()), -envelope, atol=1e-6, rtol=0)
    assert len(ax.patches) == 2  # the cropped taps on both sides are shaded


def test_every_panel_has_a_position_axis_over_minus_one_to_one_and_labels(net_1d):
    rows = row_axes(plot_kernels(net_1d, max_channels=2), rows=2, columns=3)
    for r, row in enumerate(rows):
        for ax in row:
            low, high = ax.get_xlim()
            assert low <= -1.0 and high >= 1.0 and list(ax.get_xticks()) == [-1.0, 0.0, 1.0]
            assert ax.get_xlabel() == ("position" if r == 1 else "")
        assert row[0].get_ylabel() == f"{r}\nkernel" and row[-1].get_ylabel() == "mask"
        assert row[-1].get_ylim() == (0.0, 1.05)


def test_kernel_view_keeps_the_layers_kernel_size_when_it_differs_from_the_input_size():
    torch.manual_seed(0)
    layer = CKConv(1, 1, 1, kernel_size=9, input_size=40)
    view = kernel_view("conv", layer)
    assert view.size == (9,) and view.mask is None
    with torch.no_grad():
        torch.testing.assert_close(view.kernels[0], layer.sample_kernel((40,))[0, 0])
    torch.testing.assert_close(view.positions[0], torch.linspace(-1.0, 1.0, 9))


def test_a_layer_without_mask_has_no_mask_panel():
    torch.manual_seed(0)
    fig = plot_kernels(nn.Sequential(CKConv(1, 2, 1, input_size=20)), max_channels=2)
    (row,) = row_axes(fig, rows=1, columns=3)
    assert not row[-1].axison and row[-1].get_title() == "no mask" and not row[-1].get_lines()
    assert labelled(row[0], "kernel") and not labelled(row[0], "mask")


# ---------------------------------------------------------------------------------------------------------------------
# 2D and 3D
# ---------------------------------------------------------------------------------------------------------------------
def test_2d_kernels_are_images_over_the_position_grid_with_colour_bars_and_the_mask_contours():
    torch.manual_seed(0)
    layer = FlexConv(2, 2, 2, input_size=(12, 12), mask_options={"init_value": 0.3})
    with torch.no_grad():
        layer.mask.width.copy_(torch.tensor([0.5, 0.25]))  # taller than wide
    fig = plot_kernels(nn.Sequential(layer), max_channels=2)
    (row,) = row_axes(fig, rows=1, columns=3)
    assert sum(ax.get_label() == "<colorbar>" for ax in fig.axes) == 2  # one for the kernels, one for the mask
    view = kernel_view("0", layer, max_channels=2)
    half = 1.0 / 11  # half the grid step: pixel centres sit at the tap positions
    for c, ax in enumerate(row[:2]):
        (image,) = ax.get_images()
        torch.testing.assert_close(torch.tensor(image.get_array().filled(math.nan)), view.kernels[c], equal_nan=True)
        assert image.get_extent() == pytest.approx([-1 - half, 1 + half, -1 - half, 1 + half])
        assert ax.collections  # the mask's contours over the kernel
        assert ax.get_xlabel() == "position (width)"
    assert row[0].get_ylabel() == "0\nposition (height)"
    (mask_image,) = row[-1].get_images()
    grid = torch.linspace(-1.0, 1.0, 12)
    by_hand = gaussian(grid, 0.5)[:, None] * gaussian(grid, 0.25)[None, :]
    torch.testing.assert_close(torch.tensor(mask_image.get_array()), by_hand, atol=1e-6, rtol=0)
    kept = torch.isfinite(view.kernels[0])
    assert kept.any(dim=1).sum() > kept.any(dim=0).sum()  # the crop keeps more rows than columns


def test_3d_kernels_are_shown_by_their_middle_slice_in_depth():
    torch.manual_seed(0)
    layer = SeparableFlexConv(2, 2, 3, input_size=(7, 7, 7), mask_options={"init_value": 0.4})
    (row,) = row_axes(plot_kernels(nn.Sequential(layer), max_channels=1), rows=1, columns=2)
    view = kernel_view("0", layer, max_channels=1)
    (image,) = row[0].get_images()
    torch.testing.assert_close(torch.tensor(image.get_array().filled(math.nan)), view.kernels[0, 3], equal_nan=True)
    assert row[0].get_ylabel().startswith("0, depth 0.00\n")


# ---------------------------------------------------------------------------------------------------------------------
# python -m training.plot_kernels
# ---------------------------------------------------------------------------------------------------------------------
def plot_command(*args: str, capsys) -> tuple[int, str, list[str]]:
    """``python -m training.plot_kernels <args>`` in this process: exit code (a bad command line exits as
    ``argparse`` does), what it printed, its error lines."""
    try:
        code = main(list(args))
    except SystemExit as exited:
        code = exited.code
    printed = capsys.readouterr()
    return code, printed.out, [line for line in printed.err.splitlines() if line.strip()]


def test_the_command_writes_under_outputs_of_the_current_folder_and_prints_each_layers_width(
    tmp_path, monkeypatch, capsys
):
    pretrained_before = sorted(p.name for p in SHIPPED.parent.iterdir())
    monkeypatch.chdir(tmp_path)
    code, printed, errors = plot_command(str(SHIPPED), "--channels", "2", capsys=capsys)
    assert (code, errors) == (0, [])
    out = tmp_path / "outputs" / "kernels" / "pretrained_mnist1d_ccnn_model.png"  # outputs/: ignored by git
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and str(out) in printed
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == [
        str(out.relative_to(tmp_path))  # no temporary left beside it
    ]
    assert sorted(p.name for p in SHIPPED.parent.iterdir()) == pretrained_before
    widths = dict(re.findall(r"^(\S+): mask σ=([0-9.]+), ", printed, re.M))
    assert all(len(width.replace("0.", "", 1)) == 3 for width in widths.values()), widths  # 0.160 beside 0.173
    state = torch.load(SHIPPED, map_location="cpu", weights_only=False)["state_dict"]
    learned = {key.removeprefix("net.").removesuffix(".mask.width"): value for key, value in state.items()}
    learned = {name: float(value) for name, value in learned.items() if name in widths}
    assert set(widths) == {"conv1", "blocks.0.conv", "blocks.1.conv", "blocks.2.conv", "blocks.3.conv"} == set(learned)
    for name, width in widths.items():
        assert float(width) == pytest.approx(learned[name], rel=5e-3)
    # The shipped model learned different widths per layer (0.16 to 0.57): its mask panels differ.
    assert max(learned.values()) > 3 * min(learned.values())


def test_a_picture_inside_pretrained_is_refused_in_one_line_and_nothing_is_written(tmp_path, monkeypatch, capsys):
    target = SHIPPED.parent / "kernels.png"
    before = tree(SHIPPED.parent)
    monkeypatch.chdir(tmp_path)
    code, _, errors = plot_command(str(SHIPPED), "--out", str(target), capsys=capsys)
    assert code == 2
    [line] = errors
    assert line.startswith("error: ") and str(target) in line, line
    assert tree(SHIPPED.parent) == before and tree(tmp_path) == {}


def test_run_from_inside_pretrained_without_out_the_default_picture_is_refused_and_named(monkeypatch, capsys):
    monkeypatch.chdir(SHIPPED.parent)
    before = tree(SHIPPED.parent)
    code, _, errors = plot_command(str(SHIPPED), capsys=capsys)
    assert code == 2
    [line] = errors
    assert str(SHIPPED.parent / "outputs" / "kernels") in line, line  # the default picture's place
    assert tree(SHIPPED.parent) == before


def test_an_out_that_exists_or_lies_in_no_folder_is_refused_and_nothing_changes(tmp_path, capsys):
    existing = tmp_path / "kernels.png"
    existing.write_bytes(b"someone's picture")
    before = tree(tmp_path)
    for out, named in ((existing, existing), (tmp_path / "missing" / "k.png", tmp_path / "missing")):
        code, _, errors = plot_command(str(SHIPPED), "--out", str(out), capsys=capsys)
        assert code == 2
        [line] = errors
        assert str(named) in line, line
    assert tree(tmp_path) == before and existing.read_bytes() == b"someone's picture"


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="not a git checkout")
def test_the_repositorys_own_outputs_folder_is_ignored_by_git():
    ignored = subprocess.run(["git", "check-ignore", "-q", "outputs/kernels/x.png"], cwd=REPO, timeout=60)
    assert ignored.returncode == 0  # the README's command, run from the repository, leaves git status clean


def test_a_checkpoint_that_does_not_exist_is_named(tmp_path, capsys):
    code, _, errors = plot_command(str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "k.png"), capsys=capsys)
    assert code == 2
    [line] = errors
    assert str(tmp_path / "missing.ckpt") in line, line
    assert tree(tmp_path) == {}


def test_default_pictures_of_runs_with_the_same_time_or_job_never_overwrite_each_other(tmp_path, monkeypatch, capsys):
    # Runs of two days at the same time, or job 0 of two multiruns, once mapped to one name: the second replaced the
    # first. Run the command again and it writes a third picture beside them.
    monkeypatch.chdir(tmp_path)
    runs = [tmp_path / "outputs" / day / "10-00-00" for day in ("2026-12-01", "2026-12-02")]
    for run in runs:
        (run / "checkpoints").mkdir(parents=True)
        (run / "checkpoints" / "best.ckpt").write_bytes(SHIPPED.read_bytes())
    for run in (*runs, runs[0]):
        assert plot_command(str(run / "checkpoints" / "best.ckpt"), "--channels", "1", capsys=capsys)[0] == 0
    assert sorted(p.name for p in (tmp_path / "outputs" / "kernels").iterdir()) == [
        "2026-12-01_10-00-00_best.png",
        "2026-12-01_10-00-00_best_1.png",
        "2026-12-02_10-00-00_best.png",
    ]


def test_bad_command_lines_are_refused_in_one_line_naming_the_culprit_and_nothing_is_written(
    tmp_path, monkeypatch, capsys
):
    # All but the last were refused after 6-7 s of imports; now before torch is imported (see
    # tests/test_export.py::test_refusals_that_need_no_torch_do_not_import_it).
    monkeypatch.chdir(tmp_path)
    Path("taken.png").write_bytes(b"someone's picture")
    Path("adir.png").mkdir()
    ckpt = str(SHIPPED)
    cases = [
        ([], "checkpoint"),
        ([ckpt, "--channels", "0"], "--channels"),
        ([ckpt, "--channels", "-2"], "--channels"),
        ([ckpt, "--channels", "many"], "--channels"),
        ([ckpt, "--output", "k.png"], "--output"),  # a misspelt option is refused, not guessed
        ([ckpt, "--chan", "2"], "--chan"),  # nor taken from an abbreviation
        ([ckpt, "--out", "k.txt"], "--out k.txt"),
        ([ckpt, "--out", "kplot"], "--out kplot"),
        ([ckpt, "--out", "k.pdf"], "--out k.pdf"),
        ([ckpt, "--out", "taken.png"], "taken.png"),
        ([ckpt, "--out", "nodir/k.png"], "nodir"),
        ([ckpt, "--out", "adir.png"], "adir.png"),
        ([ckpt, "--out", "/proc/k.png"], "/proc/k.png"),
        (["missing.ckpt", "--out", "k.png"], "missing.ckpt"),
        (["adir.png", "--out", "k.png"], "checkpoint adir.png"),
        # Read from the checkpoint: the shipped network's widest layer has 64 kernel channels. 100000 drew those 64
        # for 26 s without saying so.
        ([ckpt, "--out", "k.png", "--channels", "100000"], "--channels 100000"),
    ]
    before = tree(tmp_path)
    for argv, culprit in cases:
        code, _, errors = plot_command(*argv, capsys=capsys)
        assert code == 2, (argv, errors)
        [line] = errors
        assert line.startswith("error: ") and culprit in line, (argv, line)
    assert tree(tmp_path) == before and Path("taken.png").read_bytes() == b"someone's picture"
    assert "pass 1 to 64" in line  # the largest value that draws something


def test_more_channels_than_a_layer_has_draw_the_widest_layers_channels_only(net_1d):
    # --channels 1000 made a figure of 1001 columns per layer: gigabytes, for three channels.
    figure, exact = plot_kernels(net_1d, max_channels=1000), plot_kernels(net_1d, max_channels=3)
    assert len(figure.axes) == len(exact.axes) == 2 * (3 + 1)  # two layers: three channels and the mask each
    assert tuple(figure.get_size_inches()) == tuple(exact.get_size_inches())


# ---------------------------------------------------------------------------------------------------------------------
# During training
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("epochs", "expected"),
    [(38, [8, 15, 23, 30, 38]), (210, [42, 84, 126, 168, 210]), (5, [1, 2, 3, 4, 5]), (3, [1, 2, 3]), (1, [1])],
)
def test_pictures_end_equal_shares_of_the_run_the_last_at_its_final_epoch(epochs, expected):
    assert picture_epochs(epochs, pictures=5) == expected


def test_the_callback_draws_the_pictures_of_its_schedule_and_only_those(net_1d, tmp_path):
    callback = KernelPlotCallback(tmp_path / "kernels", pictures=3, max_channels=1)
    for epoch in range(10):
        trainer = SimpleNamespace(current_epoch=epoch, max_epochs=10, is_global_zero=True, loggers=[], global_step=0)
        callback.on_train_epoch_end(trainer, SimpleNamespace(net=net_1d))  # type: ignore[arg-type]
    drawn = sorted(path.name for path in (tmp_path / "kernels").iterdir())
    assert (
        drawn
        == [f"epoch_{e - 1:04d}.png" for e in picture_epochs(10, 3)]
        == ["epoch_0002.png", "epoch_0006.png", "epoch_0009.png"]
    )
