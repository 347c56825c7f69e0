"""``python -m datamodules.prepare``: fetch when needed, verify, extract, check, and say where and how big."""

from __future__ import annotations

from pathlib import Path

import pytest
from torchvision.datasets import MNIST

from datamodules import datamodule_class, lra_common
from datamodules.base import DataError
from datamodules.download import file_digest
from datamodules.prepare import folder_size, human_size, main
from tests.fixtures.sequence_files import (
    write_aan,
    write_imdb,
    write_listops,
    write_lra_release,
    write_pathfinder,
    write_speech_commands,
)
from tests.fixtures.vision_files import local_http_server, write_cifar10, write_mnist


def test_human_size_uses_powers_of_1024():
    sizes = (512, 1536, 3 * 1024**2, 7.7 * 1024**3, 5 * 1024**4)
    assert [human_size(n) for n in sizes] == ["512.0 B", "1.5 KB", "3.0 MB", "7.7 GB", "5120.0 GB"]


def test_present_dataset_is_checked_and_reported_without_a_download(tmp_path, capsys, monkeypatch):
    written = write_cifar10(tmp_path, n_per_batch=1001, n_test=4)  # read with the defaults: 5000 held out
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # any download attempt would fail loudly
    assert main(["CIFAR10", "--data-dir", str(tmp_path)]) == 0
    size = human_size(folder_size(written.folder))
    expected = f"CIFAR10: ready in {written.folder} (torchvision (also the original CCNN code's) layout, {size})"
    assert capsys.readouterr().out.strip() == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar-10-batches-py"]


def test_missing_dataset_is_downloaded_with_a_progress_bar(tmp_path, capsys, monkeypatch):
    served = tmp_path / "served"
    written = write_mnist(served, n_train=5001, n_test=5)  # read with the defaults: 5000 held out
    monkeypatch.setattr(MNIST, "resources", [(f"{p.name}.gz", file_digest(f"{p}.gz", "md5")) for p in written.files])
    with local_http_server(served) as server:
        monkeypatch.setattr(MNIST, "mirrors", [f"{server.url}/MNIST/raw/"])
        assert main(["MNIST", "--data-dir", str(tmp_path / "data")]) == 0
        assert len(server.requests) == 4
    out, err = capsys.readouterr()
    raw = tmp_path / "data" / "MNIST" / "raw"
    assert out.strip().startswith(f"MNIST: ready in {raw} (torchvision (also the original CCNN code's) layout, ")
    assert "train-images-idx3-ubyte.gz: 100%" in err  # tqdm's bar


def test_a_dataset_that_cannot_be_fetched_exits_1_naming_the_url(tmp_path, capsys, monkeypatch):
    with local_http_server(tmp_path) as server:
        monkeypatch.setattr(MNIST, "mirrors", [f"{server.url}/nothing/"])
        assert main(["MNIST", "--data-dir", str(tmp_path / "data")]) == 1
    err = capsys.readouterr().err
    assert f"{server.url}/nothing/train-images-idx3-ubyte.gz" in err and "HTTP 404" in err


@pytest.fixture
def lra_release(tmp_path, monkeypatch) -> Path:
    """A small LRA release archive (ListOps, AAN, one Pathfinder folder), with the release checks set to it."""
    archive = tmp_path / "served" / "lra_release.gz"
    monkeypatch.setattr(lra_common, "RELEASE_LINES", write_lra_release(tmp_path / "made", archive))
    monkeypatch.setattr(lra_common, "PATHFINDER_SETS", ((32, "hard"),))
    return archive


def test_lra_downloads_the_release_once_and_reports_every_task_folder(tmp_path, lra_release, capsys, monkeypatch):
    data = tmp_path / "data"
    with local_http_server(lra_release.parent) as server:
        monkeypatch.setattr(lra_common, "LRA_URL", f"{server.url}/lra_release.gz")
        assert main(["LRA", "--data-dir", str(data)]) == 0
        assert main(["LRA", "--data-dir", str(data)]) == 0  # present: found, not downloaded again
        assert server.requests == ["/lra_release.gz"]
    lines = [line for line in capsys.readouterr().out.splitlines() if "ready in" in line]
    assert [line.split(":")[0] for line in lines] == ["ListOps", "AAN", "PathFinder resolution=32 difficulty=hard"] * 2
    assert f"ListOps: ready in {data / 'lra_release' / 'listops-1000'} (LRA release (also the original" in lines[0]


def test_lra_in_the_s4_layout_is_reported_where_it_is_without_a_download(tmp_path, capsys, monkeypatch):
    write_listops(tmp_path, n=4, layout="s4")
    write_aan(tmp_path, n=4, layout="s4")
    write_pathfinder(tmp_path, n=6, layout="s4")
    monkeypatch.setattr(lra_common, "PATHFINDER_SETS", ((32, "hard"),))
    monkeypatch.setattr(lra_common, "LRA_URL", "http://127.0.0.1:9/never-contacted")
    assert main(["LRA", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"ListOps: ready in {tmp_path / 'listops'} (S4 (state-spaces) layout" in out
    assert f"ready in {tmp_path / 'pathfinder' / 'pathfinder32' / 'curv_contour_length_14'} (S4" in out


def test_command_line_reports_speech_commands_in_torchaudio_layout(tmp_path, capsys):
    written = write_speech_commands(tmp_path, n_per_word=3)
    assert main(["SpeechCommands", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"SpeechCommands: ready in {written['folder']} (torchaudio layout, ")


def test_lra_that_cannot_be_fetched_fails_once_not_once_per_task(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(lra_common, "LRA_URL", "http://127.0.0.1:9/lra_release.gz")
    assert main(["LRA", "--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ListOps: Could not download http://127.0.0.1:9/lra_release.gz")


def test_generated_dataset_is_generated_and_cached(data_dir, capsys):
    assert main(["MNIST1D", "--data-dir", str(data_dir)]) == 0
    [line] = capsys.readouterr().out.splitlines()
    cached = list((data_dir / "MNIST1D").glob("mnist1d-*.pt"))
    assert cached and str(data_dir / "MNIST1D") in line  # where it is, and how big:
    assert human_size(folder_size(data_dir / "MNIST1D")) in line


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _damage(name: str, root: Path) -> None:
    """Write dataset ``name`` under ``root`` with every expected path present but its data partial or corrupt."""
    if name == "MNIST":  # an IDX file cut in half: its header promises more images than it holds
        _truncate(write_mnist(root, n_train=20, n_test=5).files[0])
    elif name == "CIFAR10":  # a batch that fails torchvision's MD5 check
        _truncate(write_cifar10(root, n_per_batch=2, n_test=2).files[1])
    elif name == "SpeechCommands":  # a word folder emptied
        folder = write_speech_commands(root, n_per_word=3)["folder"]
        for clip in (folder / "yes").glob("*.wav"):
            clip.unlink()
    else:  # IMDB with no negative training review
        write_imdb(root, n=3)
        for review in (root / "aclImdb" / "train" / "neg").glob("*.txt"):
            review.unlink()


@pytest.mark.parametrize("name", ["MNIST", "CIFAR10", "SpeechCommands", "IMDB"])
def test_a_copy_whose_paths_exist_but_whose_data_is_corrupt_or_partial_is_not_ready(tmp_path, capsys, name):
    """prepare reads every split as a run does, and fails with the run's one-line message."""
    _damage(name, tmp_path)
    with pytest.raises(DataError) as run:
        datamodule_class(name)(data_dir=tmp_path, num_workers=0, download=False).setup()
    assert main([name, "--data-dir", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert "ready" not in out
    assert err.splitlines() == [f"{name}: {run.value}"]


def test_a_data_dir_that_is_a_file_is_refused_in_one_line_with_exit_2(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(SystemExit) as exited:
        main(["CIFAR10", "--data-dir", str(blocker)])
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(f"error: --data-dir {blocker} is a file, not a folder")
    assert blocker.read_text() == "not a folder"
