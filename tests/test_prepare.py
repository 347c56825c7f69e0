"""``python -m datamodules.prepare``: fetch when needed, verify, extract, check, and say where and how big."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torchvision.datasets import CIFAR10, MNIST

from datamodules import datamodule_class, download, lra_common, mnist1d
from datamodules.base import DataError
from datamodules.download import file_digest
from datamodules.prepare import dataset_names, folder_size, human_size, main, parse_arguments
from tests.conftest import interruptible, main_env, tree
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


def test_a_dataset_that_cannot_be_fetched_exits_1_naming_the_url_in_one_line(tmp_path, capsys, monkeypatch):
    with local_http_server(tmp_path) as server:
        monkeypatch.setattr(MNIST, "mirrors", [f"{server.url}/nothing/", f"{server.url}/nowhere/"])
        assert main(["MNIST", "--data-dir", str(tmp_path / "data")]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: MNIST: every mirror failed for train-images-idx3-ubyte.gz: ")  # MNIST once
    assert f"{server.url}/nothing/train-images-idx3-ubyte.gz" in line and "HTTP 404" in line
    assert f"{server.url}/nowhere/train-images-idx3-ubyte.gz" in line
    assert not (tmp_path / "data").exists()


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
    assert len(err) == 1 and err[0].startswith("error: ListOps: Could not download http://127.0.0.1:9/lra_release.gz")


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
    assert err.splitlines() == [f"error: {name}: {str(run.value).removeprefix(f'{name}: ')}"]  # name said once


# ------------------------------------------------------------------------------------ refused: exit 2, one line


def refused(argv: list[str], capsys) -> str:
    """The one stderr line of a refused command line (exit 2, nothing on stdout)."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    out, err = capsys.readouterr()
    assert exited.value.code == 2 and out == ""
    [line] = err.splitlines()
    assert line.startswith("error: ") and line.endswith("(see python -m datamodules.prepare --help)")
    return line


@pytest.mark.parametrize(
    ("argv", "culprit"),
    [
        (["mnist"], "unknown dataset 'mnist' (did you mean MNIST?)"),  # the same name in another case
        (["CIFAR1O"], "unknown dataset 'CIFAR1O' (did you mean CIFAR10?)"),
        (["ImageNet"], "unknown dataset 'ImageNet'; one of: MNIST1D, MNIST, "),  # nothing close: the choices
        ([], "the following arguments are required: dataset"),
        (["MNIST1D", "--datadir", "d"], "unknown option --datadir (did you mean --data-dir?)"),
        (["--datadir=d", "MNIST1D"], "unknown option --datadir (did you mean --data-dir?)"),
        (["--datadir", "d", "MNIST1D"], "unknown option --datadir (did you mean --data-dir?)"),  # not dataset 'd'
        (["MNIST1D", "--data"], "unknown option --data (did you mean --data-dir?)"),  # never an abbreviation
        (["MNIST1D", "CIFAR10"], "unexpected argument 'CIFAR10': give one dataset"),
    ],
)
def test_a_bad_command_line_is_refused_in_one_line_naming_the_culprit(tmp_path, capsys, monkeypatch, argv, culprit):
    monkeypatch.chdir(tmp_path)  # the default --data-dir, data/, is not created either
    assert culprit in refused([*argv, *(["--data-dir", "d"] if "--data-dir" not in argv else [])], capsys)
    assert not any(tmp_path.iterdir())


def test_a_good_command_line_checks_its_data_dir_without_a_trace(tmp_path, monkeypatch):
    """The writability check writes and removes a file there, and puts the folder's modification time back."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mine.txt").write_text("a user's file")
    os.utime(tmp_path / "data", ns=(1_000_000_000, 2_000_000_000))
    before = tree(tmp_path)
    assert parse_arguments(["MNIST", "--data-dir", str(tmp_path / "data")]).data_dir == tmp_path / "data"
    assert parse_arguments(["MNIST", "--data-dir", str(tmp_path / "data" / "new")]).dataset == "MNIST"
    assert tree(tmp_path) == before


def test_every_dataset_name_is_accepted_with_all_and_lra():
    assert {"MNIST1D", "MNIST", "CIFAR10", "ListOps", "AAN", "PathFinder", "LRA", "all"} <= set(dataset_names())


def test_a_data_dir_that_is_a_file_or_inside_one_is_refused(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    line = refused(["CIFAR10", "--data-dir", str(blocker)], capsys)
    assert f"error: --data-dir {blocker} is a file, not a folder" in line
    line = refused(["MNIST1D", "--data-dir", str(blocker / "data")], capsys)
    assert f"--data-dir {blocker / 'data'} cannot be created: {blocker} is a file, not a folder" in line
    assert blocker.read_text() == "not a folder" and [p.name for p in tmp_path.iterdir()] == ["a_file"]


def test_a_data_dir_that_is_a_broken_link_is_refused_as_such(tmp_path, capsys):
    link = tmp_path / "data"
    link.symlink_to(tmp_path / "unmounted" / "data")
    assert f"--data-dir {link} is a broken link, not a folder" in refused(["MNIST1D", "--data-dir", str(link)], capsys)
    assert [p.name for p in tmp_path.iterdir()] == ["data"] and not (tmp_path / "unmounted").exists()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_a_data_dir_where_nothing_can_be_written_is_refused_before_anything_is_prepared(capsys):
    """/proc refuses root too: the check tries to write a file rather than read permission bits. MNIST-1D used to
    be generated, fail to be cached, and be reported 'ready ... (generated and cached, 0.0 B)' with exit 0."""
    line = refused(["MNIST1D", "--data-dir", "/proc/ccnn-data"], capsys)
    assert "--data-dir /proc/ccnn-data is not writable: cannot create a file in /proc (" in line


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permission bits")
def test_a_read_only_data_dir_is_refused(tmp_path, capsys):
    folder = tmp_path / "read_only"
    folder.mkdir(mode=0o555)
    try:
        line = refused(["MNIST1D", "--data-dir", str(folder / "data")], capsys)
    finally:
        folder.chmod(0o755)
    assert f"--data-dir {folder / 'data'} is not writable: cannot create a file in {folder} (" in line
    assert not any(folder.iterdir())


# ------------------------------------------------------------------------------ failed: exit 1, one line each


def test_a_present_copy_is_ready_whatever_a_run_would_hold_out_for_validation(tmp_path, capsys):
    """Runs hold out dataset.params.val_size (5000 for MNIST) training images; prepare has no such flag, and a small
    copy is the run's setting to adapt, not a fault of the data: it is checked holding out one image."""
    write_mnist(tmp_path, n_train=20, n_test=5)
    before = tree(tmp_path)
    assert main(["MNIST", "--data-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith(f"MNIST: ready in {tmp_path / 'MNIST' / 'raw'} (torchvision")
    assert tree(tmp_path) == before


def test_a_hand_placed_file_that_fails_its_checksum_is_named_and_left_as_it_is(tmp_path, capsys, monkeypatch):
    """It used to be deleted without a word, and the download's error then said to place the file by hand at the
    path it had just been deleted from. No mirror is tried: none would mend a file on this side."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    placed = raw / "train-images-idx3-ubyte.gz"
    placed.write_bytes(b"a copy cut short")
    before = tree(tmp_path)
    with local_http_server(tmp_path / "served") as server:
        monkeypatch.setattr(MNIST, "mirrors", [f"{server.url}/a/", f"{server.url}/b/"])
        assert main(["MNIST", "--data-dir", str(tmp_path)]) == 1
        assert server.requests == []
    [line] = capsys.readouterr().err.splitlines()
    expected_md5 = dict(MNIST.resources)[placed.name]
    assert line.startswith(f"error: MNIST: {placed} is already there but fails its checksum (md5 ")
    assert f"expected {expected_md5}" in line and "left as it is" in line
    assert tree(tmp_path) == before and placed.read_bytes() == b"a copy cut short"


def test_a_hand_placed_corrupt_archive_is_named_and_left_as_it_is(tmp_path, capsys, monkeypatch):
    archive = tmp_path / CIFAR10.filename
    archive.write_bytes(b"not the archive")
    before = tree(tmp_path)
    with local_http_server(tmp_path / "served") as server:
        monkeypatch.setattr(CIFAR10, "url", f"{server.url}/{CIFAR10.filename}")
        assert main(["CIFAR10", "--data-dir", str(tmp_path)]) == 1
        assert server.requests == []
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: CIFAR10: {archive} is already there but fails its checksum (md5 ")
    assert f"expected {CIFAR10.tgz_md5}" in line
    assert tree(tmp_path) == before


def _small_mnist1d(num_samples: int, data_seed: int, seq_length: int) -> dict[str, torch.Tensor]:
    """A stand-in for the generator (seconds of CPU): 8 training and 2 test examples."""
    return {"x": torch.zeros(8, seq_length), "y": torch.arange(8) % 10, "x_test": torch.zeros(2, seq_length),
            "y_test": torch.arange(2)}  # fmt: skip


def test_a_generated_dataset_whose_cache_cannot_be_written_is_not_reported_ready(tmp_path, capsys, monkeypatch):
    """A run goes on without its cache (a warning); prepare, whose line says 'generated and cached', fails."""
    monkeypatch.setattr(mnist1d, "generate_mnist1d", _small_mnist1d)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)  # the cache's write, once the data folder passed its check
    assert main(["MNIST1D", "--data-dir", str(tmp_path / "data")]) == 1
    out, err = capsys.readouterr()
    [line] = err.splitlines()
    assert out == "" and line.startswith(f"error: MNIST1D: Could not write cache file {tmp_path / 'data' / 'MNIST1D'}")
    assert "(No space left on device)" in line
    assert not (tmp_path / "data").exists()  # no cache file, whole or partial, nor the folders made for it


# ----------------------------------------------------------------------------- interrupted: exit 130, one line


class _InterruptedBar:
    """tqdm's place in download_url: Ctrl-C arrives once the first block is in the .part file."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __enter__(self) -> _InterruptedBar:
        return self

    def __exit__(self, *exc_info) -> None:
        return None

    def update(self, n: int) -> None:
        raise KeyboardInterrupt


def test_ctrl_c_during_a_download_is_one_line_exit_130_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    served = tmp_path / "served"
    written = write_mnist(served, n_train=20, n_test=5)
    monkeypatch.setattr(MNIST, "resources", [(f"{p.name}.gz", file_digest(f"{p}.gz", "md5")) for p in written.files])
    monkeypatch.setattr(download, "tqdm", _InterruptedBar)
    data = tmp_path / "data"
    with local_http_server(served) as server:
        monkeypatch.setattr(MNIST, "mirrors", [f"{server.url}/MNIST/raw/"])
        assert main(["MNIST", "--data-dir", str(data)]) == 130
        assert len(server.requests) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.splitlines() == [
        "error: interrupted; nothing half-written was left (datasets reported ready stay ready)"
    ]
    assert not data.exists()  # neither the .part file nor the folders made for it


def test_ctrl_c_while_a_dataset_is_generated_is_one_line_exit_130(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(mnist1d, "generate_mnist1d", interrupted)
    assert main(["MNIST1D", "--data-dir", str(tmp_path)]) == 130
    assert len(capsys.readouterr().err.splitlines()) == 1 and not any(tmp_path.iterdir())


# ------------------------------------------------------------------- as a user runs it: before torch is loaded


def prepare_py(*args: str, cwd: Path, **options) -> subprocess.Popen:
    """``python -m datamodules.prepare <args>`` in a process of its own, started from ``cwd``."""
    command = [sys.executable, *options.pop("python_options", []), "-m", "datamodules.prepare", *args]
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    return subprocess.Popen(command, cwd=cwd, env=main_env(), preexec_fn=interruptible, **streams, **options)


def test_a_refusal_comes_before_torch_is_imported(tmp_path):
    """The package imports torch and Lightning (6 s on a loaded machine) only when a datamodule class is used, so a
    mistake is refused at once; -X importtime lists every module the process imported."""
    process = prepare_py("mnist", "--data-dir", "d", cwd=tmp_path, python_options=["-X", "importtime"])
    out, err = process.communicate(timeout=60)
    imported = {line.split("|")[-1].strip() for line in err.splitlines() if line.startswith("import time:")}
    [line] = [line for line in err.splitlines() if not line.startswith("import time:")]
    assert process.returncode == 2 and out == ""
    assert line.startswith("error: ") and "mnist" in line and "MNIST" in line  # the culprit and the closest name
    assert "datamodules" in imported and not {"torch", "pytorch_lightning"} & imported
    assert not any(tmp_path.iterdir())


def test_ctrl_c_while_torch_loads_is_one_line_and_exit_130(tmp_path):
    """SIGINT once the process has started importing torch (its first module is listed by -X importtime): the
    interrupt lands inside main, not in the package's import, where Python printed a 40-line traceback."""
    process = prepare_py("MNIST", "--data-dir", "data", cwd=tmp_path, python_options=["-X", "importtime"])
    lines = []
    for line in process.stderr:  # type: ignore[union-attr]
        lines.append(line.rstrip("\n"))
        if line.startswith("import time:") and line.split("|")[-1].strip().startswith("torch"):
            process.send_signal(signal.SIGINT)
            break
    out, err = process.communicate(timeout=60)
    lines += err.splitlines()
    assert process.returncode == 130 and out == ""
    [said] = [line for line in lines if not line.startswith("import time:")]
    assert said.startswith("error: ")
    assert not any(tmp_path.iterdir())
