"""Short trainings through ``python main.py`` (its entry function, in this process) on every dataset, with the data in
each layout users already have (torchvision's, torchaudio's, the original CCNN code's, the LRA release's, S4's): each
run finds the files as they are, trains, validates and tests, and downloads nothing.

"Downloads nothing" is checked twice: the data folder holds exactly the files written before the run (the
preprocessing cache aside), and every proxy variable points at a local server that records any request (it
answers none), so an attempted download would both be seen and fail. Fixture files are small copies in the real
formats; torchvision's MD5 checks accept them through the documented test hook (``tests/fixtures/vision_files``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import run_main, tree
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


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` but the preprocessing cache, with its size and modification time."""
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in folder.rglob("*")
        if path.is_file() and path.relative_to(folder).parts[0] != "cache"
    }


def train_jobs(tmp_path: Path, data_dirs: list[Path], flags: list[str], monkeypatch) -> dict[str, dict[str, float]]:
    """Run ``main.py -m`` with every proxy pointed at a recording server; returns each job's final metrics
    (``results.json``) by ``<dataset.name>@<dataset.data_dir>``, after checking that nothing was requested or written
    to the data."""
    before = {folder: snapshot(folder) for folder in data_dirs}
    sweep = tmp_path / "runs"
    with vf.local_http_server(tmp_path) as proxy:
        for key in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
            monkeypatch.setenv(key, proxy.url)
        for key in ("no_proxy", "NO_PROXY"):
            monkeypatch.delenv(key, raising=False)
        result = run_main("-m", *SMALL, *flags, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert proxy.requests == []
    assert {folder: snapshot(folder) for folder in data_dirs} == before
    metrics = {}
    for job in sorted(folder for folder in sweep.iterdir() if (folder / "config.yaml").is_file()):
        assert (job / "checkpoints" / "last.ckpt").is_file()
        config = OmegaConf.load(job / "config.yaml")
        metrics[f"{config.dataset.name}@{Path(config.dataset.data_dir).name}"] = json.loads(
            (job / "results.json").read_text()
        )
    return metrics


def assert_fraction_of(value: float, count: int) -> None:
    """``value`` (printed with 4 decimals) is k / ``count`` with 0 <= k <= count: an accuracy over exactly ``count``
    examples."""
    assert 0.0 <= value <= 1.0, f"{value} is no accuracy"
    assert abs(value * count - round(value * count)) <= count * 5e-5, f"{value} is no multiple of 1/{count}"


@pytest.mark.slow
def test_image_datasets_train_from_torchvision_layout(tmp_path, monkeypatch):
    data = tmp_path / "data"
    names = vf.write_image_datasets(data)
    flags = [f"dataset.name={','.join(names)}", f"dataset.data_dir={data}", "dataset.params.val_size=4"]
    metrics = train_jobs(tmp_path, [data], [*flags, "kernel.size=9"], monkeypatch)
    assert sorted(metrics) == sorted(f"{name}@data" for name in names)
    for values in metrics.values():
        assert_fraction_of(values["test/acc"], 8)
        assert_fraction_of(values["val/acc"], 4)


def test_the_issue_command_finds_mnist_in_torchvision_raw_and_processed_folders(tmp_path, monkeypatch):
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
    metrics = train_jobs(tmp_path, list(folders.values()), flags, monkeypatch)
    assert sorted(metrics) == sorted(f"MNIST@{layout}" for layout in folders)
    for values in metrics.values():
        assert_fraction_of(values["test/acc"], 8)
        assert_fraction_of(values["val/acc"], 8)
    assert len({values["test/acc"] for values in metrics.values()}) == 1  # the same images, the same run


def test_speech_commands_trains_from_torchaudio_original_and_earlier_layouts(tmp_path, monkeypatch):
    folders = {layout: tmp_path / layout for layout in sf.SPEECH_COMMANDS_FOLDERS}
    for layout, folder in folders.items():
        sf.write_speech_commands(folder, n_per_word=3, layout=layout)
    flags = ["dataset.name=SpeechCommands", "dataset.params.mfcc=True", "conv.causal=True"]
    flags.append(f"dataset.data_dir={','.join(map(str, folders.values()))}")
    metrics = train_jobs(tmp_path, list(folders.values()), flags, monkeypatch)
    assert sorted(metrics) == sorted(f"SpeechCommands@{layout}" for layout in folders)
    for values in metrics.values():
        assert_fraction_of(values["test/acc"], 10)
        assert_fraction_of(values["val/acc"], 10)


@pytest.mark.slow
def test_lra_tasks_and_imdb_train_from_the_release_nested_s4_and_torchtext_layouts(tmp_path, monkeypatch):
    data = tmp_path / "data"  # one folder, each task in another layout
    sf.write_listops(data, n=12, layout="release")
    sf.write_aan(data, n=8, layout="s4")
    sf.write_pathfinder(data, resolution=32, n=20, layout="nested")
    sf.write_imdb(data, n=5, layout="torchtext")
    tests = {"ListOps": 6, "AAN": 4, "PathFinder": 2, "IMDB": 10}
    metrics = train_jobs(tmp_path, [data], [f"dataset.name={','.join(tests)}", f"dataset.data_dir={data}"], monkeypatch)
    assert sorted(metrics) == sorted(f"{name}@data" for name in tests)
    for key, values in metrics.items():
        assert_fraction_of(values["test/acc"], tests[key.split("@")[0]])


def _missing_cifar10(data: Path) -> tuple[list[str], list[Path]]:
    """No CIFAR-10 under ``data`` (a copy elsewhere, which must not be found)."""
    vf.write_cifar10(data.parent / "elsewhere")
    return ["dataset.name=CIFAR10"], [data / "cifar-10-batches-py"]  # where the files were looked for


def _partial_speech_commands(data: Path) -> tuple[list[str], list[Path]]:
    """Every folder of the torchaudio layout is there, but yes/ is empty and a listed validation clip is gone."""
    written = sf.write_speech_commands(data, n_per_word=3)
    for clip in (written["folder"] / "yes").glob("*.wav"):
        clip.unlink()
    gone = next(name for name in written["val"] if name.startswith("no/"))
    (written["folder"] / gone).unlink()
    return ["dataset.name=SpeechCommands", "dataset.params.mfcc=True"], [written["folder"] / "yes", Path(gone)]


@pytest.mark.parametrize("case", [_missing_cifar10, _partial_speech_commands], ids=["missing", "partial"])
def test_missing_or_partial_data_with_downloads_off_is_refused_in_one_line_naming_every_path(tmp_path, case):
    data = tmp_path / "data"
    flags, named = case(data)
    before = tree(tmp_path)
    no_download = ["dataset.download=False", f"dataset.data_dir={data}", f"train.output_dir={tmp_path / 'run'}"]
    result = run_main(*SMALL, *flags, *no_download, cwd=tmp_path)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    [line] = result.error_lines()
    assert line.startswith("error: ") and all(str(path) in line for path in named), line
    assert "elsewhere" not in line  # the copy outside dataset.data_dir was not taken
    # Nothing written: no run folder, no cache, no download.
    assert tree(tmp_path) == before
