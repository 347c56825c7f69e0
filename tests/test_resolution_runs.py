"""Train at one resolution and test at others through ``python main.py`` (its entry function, in this process), for
every dataset that has a resolution, on fixture files in the real formats: each run writes ``resolutions.csv``, reports
``test@<resolution>/acc`` and ``/loss`` in its results, and its test at the training resolution equals the normal test
exactly. Refusals print one line naming the flag, exit 2 and write nothing."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import run_main, tree
from tests.fixtures import sequence_files as sf
from tests.fixtures import vision_files as vf
from tests.test_medmnist3d import write_medmnist3d
from tests.test_task_runs import SMALL as TASK_RUN_FLAGS
from tests.test_task_runs import assert_fraction_of

SMALL = [*TASK_RUN_FLAGS, "dataset.download=False"]


def final_metrics(run: Path) -> dict[str, float]:
    """The run's final metrics: ``<run>/results.json``."""
    return json.loads((run / "results.json").read_text())


def check_resolutions(run: Path, trained_at: int, resolutions: list[int], test_examples: int) -> list[dict]:
    """``resolutions.csv`` lists every resolution in order with the training one, its values are those logged, each
    accuracy is over the whole test split, and at the training resolution the test is the normal one."""
    with open(run / "resolutions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["resolution"]) for r in rows] == resolutions
    assert {int(r["trained_at"]) for r in rows} == {trained_at}
    metrics = final_metrics(run)
    for row in rows:
        value = row["resolution"]
        assert float(row["test_acc"]) == metrics[f"test@{value}/acc"]
        assert float(row["test_loss"]) == metrics[f"test@{value}/loss"]
        assert_fraction_of(float(row["test_acc"]), test_examples)
    if trained_at in resolutions:
        assert metrics[f"test@{trained_at}/acc"] == metrics["test/acc"]
        assert metrics[f"test@{trained_at}/loss"] == metrics["test/loss"]
    return rows


@pytest.mark.slow
def test_images_train_at_16_pixels_and_test_at_half_and_twice_that(tmp_path):
    data = tmp_path / "data"
    names = vf.write_image_datasets(data)
    result = run_main(
        "-m",
        *SMALL,
        f"dataset.name={','.join(names)}",
        f"dataset.data_dir={data}",
        "dataset.params.val_size=4",
        "dataset.params.resolution=16",
        "test.resolutions=[8,16,32]",
        f"hydra.sweep.dir={tmp_path / 'runs'}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    jobs = [job for job in (tmp_path / "runs").iterdir() if job.is_dir()]
    runs = {OmegaConf.load(job / "config.yaml").dataset.name: job for job in jobs}
    assert sorted(runs) == sorted(names)
    for run in runs.values():
        check_resolutions(run, 16, [8, 16, 32], 8)
    assert result.stdout.count("(dataset.params.resolution; trained at 16)") == 4  # each job's table, printed


def test_mnist1d_trained_at_40_then_its_checkpoint_evaluated_at_20_and_80(tmp_path):
    flags = [*SMALL, "dataset.params.num_samples=200", "dataset.params.val_size=20", f"dataset.data_dir={tmp_path}"]
    flags += ["kernel.bandlimit=1.0", "test.resolutions=[20,40,80]"]
    trained = run_main(*flags, f"train.output_dir={tmp_path / 'trained'}", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    rows = check_resolutions(tmp_path / "trained", 40, [20, 40, 80], 40)
    checkpoint = tmp_path / "trained" / "checkpoints" / "best.ckpt"
    evaluation = [*flags, "train.do=False", "pretrained.load=True", f"pretrained.filename={checkpoint}"]
    evaluated = run_main(*evaluation, f"train.output_dir={tmp_path / 'evaluated'}", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert check_resolutions(tmp_path / "evaluated", 40, [20, 40, 80], 40) == rows  # the same weights, the same rows
    assert "(dataset.params.seq_length; trained at 40)" in evaluated.stdout  # the evaluation's table, printed


def test_speech_commands_trained_at_8_khz_tested_at_4_8_and_16_khz_with_causal_fourier_kernels(tmp_path):
    sf.write_speech_commands(tmp_path, n_per_word=3)
    result = run_main(
        *SMALL,
        "dataset.name=SpeechCommands",
        f"dataset.data_dir={tmp_path}",
        "dataset.params.sample_rate=8000",
        "conv.causal=True",
        "kernel.type=FourierNet",
        "test.resolutions=[4000,8000,16000]",
        f"train.output_dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    check_resolutions(tmp_path / "run", 8000, [4000, 8000, 16000], 10)


def test_pathfinder_trained_at_32_tested_on_the_releases_64_pixel_images_with_siren_kernels(tmp_path):
    for resolution in (32, 64):
        sf.write_pathfinder(tmp_path / "data", resolution=resolution, n=20)
    result = run_main(
        *SMALL,
        "dataset.name=PathFinder",
        "kernel.type=SIREN",
        "dataset.data_dir=data",
        "test.resolutions=[32,64]",
        "train.output_dir=run",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    check_resolutions(tmp_path / "run", 32, [32, 64], 2)


def test_medmnist3d_trained_at_28_cubed_tested_at_64_cubed_with_mlp_kernels(tmp_path):
    for resolution in (28, 64):
        write_medmnist3d(tmp_path / "data" / "MedMNIST", resolution=resolution)
    result = run_main(
        *SMALL,
        "dataset.name=OrganMNIST3D",
        "kernel.type=MLP",
        "dataset.data_dir=data",
        "kernel.size=5",  # 11 taps per axis at 64^3: the same extent
        "test.resolutions=[28,64]",
        "train.output_dir=run",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    check_resolutions(tmp_path / "run", 28, [28, 64], 6)


def test_blobs3d_trained_at_8_cubed_tested_at_6_and_12_cubed_with_direct_gabornet_convolutions(tmp_path):
    result = run_main(
        *SMALL,
        "dataset.name=Blobs3D",
        "conv.use_fft=False",
        "kernel.type=GaborNet",
        f"dataset.data_dir={tmp_path}",
        "dataset.params.resolution=8",
        "dataset.params.num_samples=40",
        "dataset.params.val_size=4",
        "test.resolutions=[6,8,12]",
        f"train.output_dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    check_resolutions(tmp_path / "run", 8, [6, 8, 12], 8)


# ---------------------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    ("flags", "culprit"),
    [
        (["dataset.name=MNIST", "dataset.data_type=sequence", "test.resolutions=[14,28]"], "test.resolutions"),
        (["test.resolutions=[20,0]"], "test.resolutions"),
        # Beyond the machine's memory: refused before MNIST-1D's generator or Blobs3D's renderer would run.
        (["test.resolutions=[40,100000000]"], "test.resolutions"),
        (["experiment=blobs3d/ccnn_2_16", "test.resolutions=[100000]"], "test.resolutions"),
        (["dataset.name=SpeechCommands", "test.resolutions=[1]"], "test.resolutions"),  # too coarse for the kernels
        (["dataset.name=MNIST", "dataset.data_type=sequence", "train.coarse_batches=0.5"], "train.coarse_batches"),
        (["train.coarse_batches=1.5"], "train.coarse_batches"),
        (["test.update_bn=False"], "test.update_bn"),  # it changes nothing without test.resolutions
        # 5 pools of 2 need 32 positions: 40 has them, the coarsest training batches (20) do not.
        (["net.downsampling=[0,1,2,3,4]", "net.no_blocks=5", "train.coarse_batches=0.5"], "train.coarse_batches"),
    ],
    ids=[
        "flattened images",
        "zero",
        "memory 1D",
        "memory 3D",
        "one sample",
        "coarse flattened",
        "coarse range",
        "update_bn alone",
        "coarse pools",
    ],
)
def test_refusals_are_one_line_naming_the_flag_exit_2_and_write_nothing(tmp_path, flags, culprit):
    result = run_main(*SMALL, *flags, cwd=tmp_path)  # data, outputs/: relative to the working directory
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    [line] = result.error_lines()
    assert line.startswith("error: ") and culprit in line, line
    assert tree(tmp_path) == {}
