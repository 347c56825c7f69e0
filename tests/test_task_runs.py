"""Short trainings through ``python main.py`` on every dataset, with the data in each layout users already have
(torchvision's, torchaudio's, the original CCNN code's, the LRA release's, S4's): each run finds the files as
they are, trains, validates and tests, and downloads nothing.

"Downloads nothing" is checked twice: the data folder holds exactly the files written before the run (the
preprocessing cache aside), and every proxy variable points at a local server that records any request (it
answers none), so an attempted download would both be seen and fail. Fixture files are small copies in the real
formats; torchvision's MD5 checks accept them through the documented test hook (``tests/fixtures/vision_files``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import REPO
from tests.fixtures import sequence_files as sf
from tests.fixtures import vision_files as vf

SMALL = [
    "net.no_hidden=8",
    "net.no_blocks=1",
    "kernel.no_hidden=8",
    "kernel.no_layers=2",
    "no_workers=0",
    "train.epochs=1",
    "train.batch_size=4",
]
FINAL = re.compile(r"Final: (?P<metrics>.*)  \(outputs: (?P<folder>.*)\)")

pytestmark = pytest.mark.slow


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` but the preprocessing cache, with its size and modification time."""
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in folder.rglob("*")
        if path.is_file() and path.relative_to(folder).parts[0] != "cache"
    }


def run_main(tmp_path: Path, data_dirs: list[Path], flags: list[str]) -> dict[str, dict[str, float]]:
    """Run ``main.py -m`` with every proxy pointed at a recording server; returns each job's final metrics by
    ``<dataset.name>@<dataset.data_dir>``, after checking that nothing was requested or written to the data."""
    before = {folder: snapshot(folder) for folder in data_dirs}
    with vf.local_http_server(tmp_path) as proxy:
        proxies = {key: proxy.url for key in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")}
        env = {k: v for k, v in os.environ.items() if k.lower() != "no_proxy"}
        result = subprocess.run(
            [sys.executable, "main.py", "-m", *SMALL, *flags, f"hydra.sweep.dir={tmp_path / 'runs'}"],
            cwd=REPO,
            env={**env, **proxies, "WANDB_MODE": "disabled"},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert proxy.requests == []
    assert {folder: snapshot(folder) for folder in data_dirs} == before
    metrics = {}
    for match in FINAL.finditer(result.stdout):
        folder = Path(match["folder"])
        assert (folder / "checkpoints" / "last.ckpt").is_file()
        config = OmegaConf.load(folder / "config.yaml")
        values = dict(item.split("=") for item in match["metrics"].split(", "))
        metrics[f"{config.dataset.name}@{Path(config.dataset.data_dir).name}"] = {
            k: float(v) for k, v in values.items()
        }
    return metrics


def assert_fraction_of(value: float, count: int) -> None:
    """``value`` (printed with 4 decimals) is k / ``count`` with 0 <= k <= count: an accuracy over exactly ``count``
    examples."""
    assert 0.0 <= value <= 1.0, f"{value} is no accuracy"
    assert abs(value * count - round(value * count)) <= count * 5e-5, f"{value} is no multiple of 1/{count}"


def test_image_datasets_train_from_torchvision_layout(tmp_path):
    data = tmp_path / "data"
    names = vf.write_image_datasets(data)
    flags = [f"dataset.name={','.join(names)}", f"dataset.data_dir={data}", "dataset.params.val_size=4"]
    metrics = run_main(tmp_path, [data], [*flags, "kernel.size=9"])
    assert sorted(metrics) == sorted(f"{name}@data" for name in names)
    for values in metrics.values():
        assert_fraction_of(values["test/acc"], 8)
        assert_fraction_of(values["val/acc"], 4)


def test_the_issue_command_finds_mnist_in_torchvision_raw_and_processed_folders(tmp_path):
    """``python main.py dataset.name=MNIST dataset.data_type=sequence dataset.data_dir=<data_dir>`` with the four
    files in ``<data_dir>/MNIST/raw/``: it used to download again (and fail offline). The same with torchvision
    0.8's ``MNIST/processed/`` instead, a second job of the same process (the project's earlier ``MNIST/*.gz`` is
    read in process, ``tests/test_datamodules_vision.py``)."""
    folders = {layout: tmp_path / layout for layout in ("torchvision", "legacy")}
    for layout, folder in folders.items():
        vf.write_mnist(folder, n_train=24, n_test=8, layout=layout)
    flags = [
        "dataset.name=MNIST",
        "dataset.data_type=sequence",
        f"dataset.data_dir={','.join(map(str, folders.values()))}",
    ]
    flags += ["dataset.params.permuted=True", "dataset.params.val_size=8", "conv.causal=True"]
    metrics = run_main(tmp_path, list(folders.values()), flags)
    assert sorted(metrics) == sorted(f"MNIST@{layout}" for layout in folders)
    for values in metrics.values():
        assert_fraction_of(values["test/acc"], 8)
        assert_fraction_of(values["val/acc"], 8)
    assert len({values["test/acc"] for values in metrics.values()}) == 1  # the same images, the same run


def test_speech_commands_trains_from_torchaudio_original_and_earlier_layouts(tmp_path):
    folders = {layout: tmp_path / layout for layout in sf.SPEECH_COMMANDS_FOLDERS}
    for layout, folder in folders.items():
        sf.write_speech_commands(folder, n_per_word=3, layout=layout)
    flags = ["dataset.name=SpeechCommands", "dataset.params.mfcc=True", "conv.causal=True"]
    metrics = run_main(
        tmp_path, list(folders.values()), [*flags, f"dataset.data_dir={','.join(map(str, folders.values()))}"]
    )
    assert sorted(metrics) == sorted(f"SpeechCommands@{layout}" for layout in folders)
    for values in metrics.values():
        assert_fraction_of(values["test/acc"], 10)
        assert_fraction_of(values["val/acc"], 10)


def test_lra_tasks_and_imdb_train_from_the_release_nested_s4_and_torchtext_layouts(tmp_path):
    data = tmp_path / "data"  # one folder, each task in another layout
    sf.write_listops(data, n=12, layout="release")
    sf.write_aan(data, n=8, layout="s4")
    sf.write_pathfinder(data, resolution=32, n=20, layout="nested")
    sf.write_imdb(data, n=5, layout="torchtext")
    tests = {"ListOps": 6, "AAN": 4, "PathFinder": 2, "IMDB": 10}
    metrics = run_main(tmp_path, [data], [f"dataset.name={','.join(tests)}", f"dataset.data_dir={data}"])
    assert sorted(metrics) == sorted(f"{name}@data" for name in tests)
    for key, values in metrics.items():
        assert_fraction_of(values["test/acc"], tests[key.split("@")[0]])


def _missing_cifar10(data: Path) -> tuple[list[str], list[str]]:
    """No CIFAR-10 under ``data`` (a copy elsewhere, which must not be found)."""
    vf.write_cifar10(data.parent / "elsewhere")
    expected = [
        f"CIFAR10 data not found under {data}",
        f"layout at {data / 'cifar-10-batches-py'}: expects data_batch_1, data_batch_2",
        f"python -m datamodules.prepare CIFAR10 --data-dir {data}",
    ]
    return ["dataset.name=CIFAR10"], expected


def _partial_speech_commands(data: Path) -> tuple[list[str], list[str]]:
    """Every folder of the torchaudio layout is there, but yes/ is empty and a listed validation clip is gone."""
    written = sf.write_speech_commands(data, n_per_word=3)
    for clip in (written["folder"] / "yes").glob("*.wav"):
        clip.unlink()
    gone = next(name for name in written["val"] if name.startswith("no/"))
    (written["folder"] / gone).unlink()
    expected = [
        f"Speech Commands under {written['folder']} is incomplete: the word folder {written['folder'] / 'yes'} holds",
        f"clips that validation_list.txt and testing_list.txt name are missing: {gone}.",
    ]
    return ["dataset.name=SpeechCommands", "dataset.params.mfcc=True"], expected


@pytest.mark.parametrize("case", [_missing_cifar10, _partial_speech_commands], ids=["missing", "partial"])
def test_missing_or_partial_data_with_downloads_off_is_refused_in_one_line_naming_every_path(tmp_path, case):
    data = tmp_path / "data"
    flags, expected = case(data)
    before = snapshot(data) if data.exists() else None
    no_download = ["dataset.download=False", f"dataset.data_dir={data}", f"train.output_dir={tmp_path / 'run'}"]
    result = subprocess.run(
        [sys.executable, "main.py", *SMALL, *flags, *no_download],
        cwd=REPO,
        env={**os.environ, "WANDB_MODE": "disabled"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert all(part in errors[0] for part in expected), errors[0]
    assert not (tmp_path / "run").exists()
    # Nothing written to the data folder either: no cache, no download.
    assert (snapshot(data) if data.exists() else None) == before and not (data / "cache").exists()
