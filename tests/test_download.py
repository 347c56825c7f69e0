"""download_url and extract_archive against a local HTTP server and hand-built (hostile) archives, next to the
library helpers they replace (torchvision's ``download_url``/``extract_archive``, torch.hub's
``download_url_to_file`` and ``_extract_tar`` that torchaudio uses), to show what those lack; and a real
datamodule's download (CIFAR-10's, the LRA release's) refusing a hostile archive, a cut transfer and a wrong
checksum with nothing left behind."""

from __future__ import annotations

import gzip
import hashlib
import io
import socket
import tarfile
from pathlib import Path

import pytest
import torch.hub
from torchaudio.datasets import utils as torchaudio_utils
from torchvision.datasets import CIFAR10
from torchvision.datasets import utils as torchvision_utils

from datamodules import lra_common
from datamodules.base import DataError
from datamodules.cifar import CIFAR10DataModule
from datamodules.download import (
    CorruptCopyError,
    FolderError,
    download_and_extract,
    download_url,
    extract_archive,
    file_digest,
)
from datamodules.listops import ListOpsDataModule
from tests.fixtures.sequence_files import write_lra_release
from tests.fixtures.vision_files import local_http_server, make_archive, write_cifar10

PAYLOAD = bytes(range(256)) * 64  # 16 KiB


@pytest.fixture
def server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "file.bin").write_bytes(PAYLOAD)
    with local_http_server(served) as state:
        yield state


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ------------------------------------------------------------------------------------------------ checksums
def test_file_checksums_match_hashlib(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(PAYLOAD)
    assert file_digest(path, "md5") == hashlib.md5(PAYLOAD).hexdigest()
    assert file_digest(path, "sha256") == hashlib.sha256(PAYLOAD).hexdigest()


# ------------------------------------------------------------------------------------------------- download
def test_download_writes_the_file_and_verifies_both_checksums(server, tmp_path):
    dest = tmp_path / "out" / "file.bin"
    md5, sha = hashlib.md5(PAYLOAD).hexdigest(), hashlib.sha256(PAYLOAD).hexdigest()
    result = download_url(f"{server.url}/file.bin", dest, md5=md5, sha256=sha, progress=False, timeout=5)
    assert result == dest
    assert dest.read_bytes() == PAYLOAD
    assert leftovers(dest.parent) == ["file.bin"]  # no .part file left behind


def test_download_shows_progress_without_failing(server, tmp_path, capsys):
    dest = tmp_path / "file.bin"
    download_url(f"{server.url}/file.bin", dest, progress=True, timeout=5)
    assert dest.read_bytes() == PAYLOAD


@pytest.mark.parametrize("kind", ["md5", "sha256"])
def test_download_with_wrong_checksum_is_refused_and_leaves_no_file(server, tmp_path, kind):
    dest = tmp_path / "out" / "file.bin"
    with pytest.raises(DataError) as info:
        download_url(f"{server.url}/file.bin", dest, **{kind: "0" * 32}, progress=False, timeout=5)
    assert f"{server.url}/file.bin" in str(info.value) and str(dest) in str(info.value)
    assert not dest.parent.exists()  # not even the folder the download created


def test_a_failed_download_keeps_folders_that_existed_before(server, tmp_path):
    (tmp_path / "data").mkdir()
    dest = tmp_path / "data" / "new" / "deeper" / "file.bin"
    with pytest.raises(DataError):
        download_url(f"{server.url}/missing.bin", dest, progress=False, timeout=5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "served"] and not any((tmp_path / "data").iterdir())


def test_interrupted_download_leaves_no_file_that_passes_as_complete(server, tmp_path):
    server.truncate.add("/file.bin")
    dest = tmp_path / "file.bin"
    with pytest.raises(DataError, match="cut short") as info:
        download_url(f"{server.url}/file.bin", dest, progress=False, timeout=5)
    assert str(dest) in str(info.value)
    assert leftovers(tmp_path) == ["served"]  # neither file.bin nor file.bin.part
    # A later run without checksums must fetch again rather than trust a partial file.
    server.truncate.clear()
    download_url(f"{server.url}/file.bin", dest, progress=False, timeout=5)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests == ["/file.bin", "/file.bin"]


def test_library_downloads_leave_a_cut_transfer_at_the_final_path(server, tmp_path):
    """What download_url adds: torchvision's and torch.hub's helpers accept a transfer cut short as complete."""
    server.truncate.add("/file.bin")
    torchvision_utils.download_url(f"{server.url}/file.bin", tmp_path / "torchvision")
    torch.hub.download_url_to_file(f"{server.url}/file.bin", str(tmp_path / "hub.bin"), progress=False)
    for path in (tmp_path / "torchvision" / "file.bin", tmp_path / "hub.bin"):
        assert path.read_bytes() == PAYLOAD[: len(PAYLOAD) // 2]  # no error, half a file at the final path
    with pytest.raises(DataError, match="cut short"):
        download_url(f"{server.url}/file.bin", tmp_path / "ours.bin", progress=False, timeout=5)
    assert not (tmp_path / "ours.bin").exists()


def test_existing_valid_file_is_not_downloaded_again(server, tmp_path):
    dest = tmp_path / "file.bin"
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    download_url(f"{server.url}/file.bin", dest, md5=md5, progress=False, timeout=5)
    download_url(f"{server.url}/file.bin", dest, md5=md5, progress=False, timeout=5)
    assert server.requests == ["/file.bin"]


def test_existing_file_that_fails_its_checksum_is_refused_and_left_as_it_is(server, tmp_path):
    """Only verified downloads are renamed to dest: a file there that fails is not download_url's, it may be a
    user's hand-placed copy, and is neither deleted nor replaced."""
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"stale")
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    with pytest.raises(CorruptCopyError) as info:
        download_url(f"{server.url}/file.bin", dest, md5=md5, progress=False, timeout=5)
    message = str(info.value)
    assert str(dest) in message and f"expected {md5}" in message and hashlib.md5(b"stale").hexdigest() in message
    assert dest.read_bytes() == b"stale" and leftovers(tmp_path) == ["file.bin", "served"]
    assert server.requests == []  # no mirror will mend a file on this side: a FolderError, not retried
    assert isinstance(info.value, FolderError)


def test_missing_remote_file_raises_data_error_naming_the_url(server, tmp_path):
    dest = tmp_path / "nothing.bin"
    with pytest.raises(DataError, match="404") as info:
        download_url(f"{server.url}/nothing.bin", dest, progress=False, timeout=5)
    assert f"{server.url}/nothing.bin" in str(info.value)
    assert not dest.exists() and not dest.with_suffix(".bin.part").exists()


def test_unreachable_server_raises_data_error(tmp_path):
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dest = tmp_path / "file.bin"
    with pytest.raises(DataError, match=f"127.0.0.1:{port}"):
        download_url(f"http://127.0.0.1:{port}/file.bin", dest, progress=False, timeout=2)
    assert leftovers(tmp_path) == []


# ------------------------------------------------------------------------------------------------ extraction
def make_tar(path: Path, members: list[tarfile.TarInfo], payload: bytes = b"data") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info in members:
            if info.isreg():
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            else:
                tar.addfile(info)
    return path


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


@pytest.mark.parametrize(
    "hostile",
    [
        member("../evil"),
        member("dataset/../../evil"),
        member("dataset/link", tarfile.SYMTYPE, "../../evil"),
        member("dataset/link", tarfile.SYMTYPE, "/etc/passwd"),
        member("dataset/hard", tarfile.LNKTYPE, "../evil"),
        member("dataset/device", tarfile.CHRTYPE),
        member("dataset/fifo", tarfile.FIFOTYPE),
    ],
    ids=["dotdot", "nested_dotdot", "symlink_out", "symlink_abs", "hardlink_out", "device", "fifo"],
)
def test_hostile_tar_members_are_refused_and_nothing_is_extracted(tmp_path, hostile):
    # The hostile member comes last: the harmless member before it must not reach the target either.
    archive = make_tar(tmp_path / "a.tar.gz", [member("dataset/ok.txt"), hostile])
    target = tmp_path / "sandbox" / "target"
    with pytest.raises(DataError, match="Refusing to extract") as info:
        extract_archive(archive, target)
    assert str(archive) in str(info.value) and repr(hostile.name) in str(info.value)
    assert not target.exists()
    assert leftovers(tmp_path / "sandbox") == []  # no temporary folder left either
    assert not (tmp_path / "evil").exists() and not (tmp_path / "sandbox" / "evil").exists()


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink_out"])
def test_library_extraction_writes_outside_the_target_where_ours_refuses_or_stays_inside(tmp_path, kind):
    """What extract_archive adds: torchvision's extract_archive and torchaudio's _extract_tar extract a member
    named ``../evil`` or ``<absolute path>`` outside the target, and a link pointing out of it."""
    outside = tmp_path / "outside_evil"
    hostile = {
        "dotdot": member("../outside_evil"),
        "absolute": member(str(outside)),
        "symlink_out": member("link", tarfile.SYMTYPE, str(outside)),
    }[kind]
    archive = make_tar(tmp_path / "a.tar.gz", [member("ok.txt"), hostile])
    extractors = {
        "torchvision": lambda target: torchvision_utils.extract_archive(str(archive), str(target)),
        "torchaudio": lambda target: torchaudio_utils._extract_tar(str(archive), str(target)),
    }
    for name, extract in extractors.items():
        target = tmp_path / name  # its parent is tmp_path: "../outside_evil" is `outside`
        target.mkdir()
        extract(target)
        if kind == "symlink_out":
            assert (target / "link").readlink() == outside, name  # a link out of the target
        else:
            assert outside.read_bytes() == b"data", name  # written outside the target
            outside.unlink()
    ours = tmp_path / "ours"
    if kind == "absolute":  # the "data" filter makes absolute names relative: the file stays inside
        extract_archive(archive, ours)
        assert (ours / str(outside).lstrip("/")).read_bytes() == b"data"
    else:
        with pytest.raises(DataError, match="Refusing to extract"):
            extract_archive(archive, ours)
        assert not ours.exists()
    assert not outside.exists() and not outside.is_symlink()


def test_absolute_member_names_stay_inside_the_target(tmp_path):
    archive = make_tar(tmp_path / "a.tar.gz", [member("/tmp_evil_absolute/x.txt")])
    target = extract_archive(archive, tmp_path / "target")
    assert (target / "tmp_evil_absolute" / "x.txt").read_bytes() == b"data"
    assert not Path("/tmp_evil_absolute").exists()


def test_symlink_inside_the_target_is_allowed(tmp_path):
    archive = make_tar(
        tmp_path / "a.tar.gz", [member("dataset/ok.txt"), member("dataset/alias", tarfile.SYMTYPE, "ok.txt")]
    )
    target = extract_archive(archive, tmp_path / "target")
    assert (target / "dataset" / "alias").read_bytes() == b"data"


@pytest.mark.parametrize("suffix", [".tar.gz", ".tgz", ".tar"])
def test_normal_archive_extracts_every_file(tmp_path, suffix):
    source = tmp_path / "src" / "dataset"
    (source / "sub").mkdir(parents=True)
    (source / "a.txt").write_text("alpha")
    (source / "sub" / "b.bin").write_bytes(PAYLOAD)
    archive = make_archive(tmp_path / f"dataset{suffix}", source)
    target = tmp_path / "out"
    assert extract_archive(archive, target) == target
    assert (target / "dataset" / "a.txt").read_text() == "alpha"
    assert (target / "dataset" / "sub" / "b.bin").read_bytes() == PAYLOAD
    assert leftovers(tmp_path) == sorted([f"dataset{suffix}", "out", "src"])


def test_extraction_over_a_partial_copy_replaces_its_files_and_keeps_the_users_own(tmp_path):
    # The whole folder was replaced once, deleting the user's notes next to the partial copy; the warning before a
    # download says only files of the same name are replaced.
    source = tmp_path / "src" / "dataset"
    (source / "words").mkdir(parents=True)
    (source / "a.txt").write_text("new")
    (source / "words" / "w.txt").write_text("new")
    archive = make_archive(tmp_path / "d.tar.gz", source)
    copy = tmp_path / "out" / "dataset"
    (copy / "words").mkdir(parents=True)
    (copy / "a.txt").write_text("old, truncated")
    (copy / "my_notes.txt").write_text("mine")
    (copy / "words" / "mine.txt").write_text("mine too")
    extract_archive(archive, tmp_path / "out")
    assert (copy / "a.txt").read_text() == "new" and (copy / "words" / "w.txt").read_text() == "new"
    assert (copy / "my_notes.txt").read_text() == "mine" and (copy / "words" / "mine.txt").read_text() == "mine too"
    assert leftovers(tmp_path / "out") == ["dataset"]  # no temporary folder left either


def test_single_gz_file_is_decompressed(tmp_path):
    archive = tmp_path / "data.bin.gz"
    archive.write_bytes(gzip.compress(PAYLOAD))
    target = extract_archive(archive, tmp_path / "out")
    assert (target / "data.bin").read_bytes() == PAYLOAD


def test_gzipped_tar_named_gz_is_extracted_as_a_tar(tmp_path):
    source = tmp_path / "src" / "release"
    source.mkdir(parents=True)
    (source / "x.tsv").write_text("a\tb\n")
    archive = make_archive(tmp_path / "release.tar.gz", source).rename(tmp_path / "release.gz")
    target = extract_archive(archive, tmp_path / "out")
    assert (target / "release" / "x.tsv").read_text() == "a\tb\n"


def test_truncated_archive_raises_data_error_and_extracts_nothing(tmp_path):
    source = tmp_path / "src" / "dataset"
    source.mkdir(parents=True)
    (source / "big.bin").write_bytes(PAYLOAD * 8)
    archive = make_archive(tmp_path / "d.tar.gz", source)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DataError, match=r"d\.tar\.gz"):
        extract_archive(archive, tmp_path / "sandbox" / "out")
    assert leftovers(tmp_path / "sandbox") == []


# ---------------------------------------------------------------------------- through a datamodule's download
def _hostile_member(tar: tarfile.TarFile) -> None:
    """Append ``../evil``: extracted next to the folder the archive is extracted into."""
    info = member("../evil")
    info.size = 4
    tar.addfile(info, io.BytesIO(b"evil"))


@pytest.mark.parametrize(
    ("fault", "refusal"),
    [
        ("hostile", "Refusing to extract .*'../evil'"),
        ("cut", "was cut short: received"),
        ("checksum", f"failed its checksum \\(md5 [0-9a-f]{{32}}, expected {'0' * 32}\\)"),
    ],
)
def test_a_cifar10_download_that_fails_a_check_is_refused_and_leaves_nothing(tmp_path, monkeypatch, fault, refusal):
    """The real download path (CIFAR10DataModule.fetch: torchvision's URL and archive MD5, pointed at a local
    server): a hostile archive whose MD5 is the recorded one, a transfer cut short, an archive with another MD5."""
    written = write_cifar10(tmp_path / "made", n_per_batch=2, n_test=2)
    archive = tmp_path / "served" / CIFAR10.filename
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(written.folder, arcname=CIFAR10.base_folder)
        if fault == "hostile":
            _hostile_member(tar)
    monkeypatch.setattr(CIFAR10, "tgz_md5", "0" * 32 if fault == "checksum" else file_digest(archive, "md5"))
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    with local_http_server(archive.parent) as server:
        if fault == "cut":
            server.truncate.add(f"/{CIFAR10.filename}")
        monkeypatch.setattr(CIFAR10, "url", f"{server.url}/{CIFAR10.filename}")
        datamodule = CIFAR10DataModule(data_dir=sandbox / "data", batch_size=2, num_workers=0, download=True)
        with pytest.raises(DataError, match=refusal):
            datamodule.prepare_data()
        assert server.requests == [f"/{CIFAR10.filename}"]
    # No cifar-10-batches-py/, no archive or .part file, no temporary folder, no ../evil, not even data/.
    assert leftovers(sandbox) == []


@pytest.mark.parametrize(
    ("fault", "refusal"),
    [
        ("hostile", "Refusing to extract .*'../evil'"),
        ("cut", "was cut short: received"),
        ("release", "listops-1000/basic_train.tsv has 5 non-empty lines, the release 96001"),
    ],
)
def test_an_lra_download_that_fails_a_check_is_refused_and_leaves_nothing(tmp_path, monkeypatch, fault, refusal):
    """LRA publishes no checksum: the length, the archive's members and the release's files are what is checked."""
    archive = tmp_path / "served" / "lra_release.gz"
    lines = write_lra_release(tmp_path / "made", archive, hostile=fault == "hostile")
    if fault != "release":  # "release": the published counts, which the small release does not have
        monkeypatch.setattr(lra_common, "RELEASE_LINES", lines)
    monkeypatch.setattr(lra_common, "PATHFINDER_SETS", ((32, "hard"),))
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    with local_http_server(archive.parent) as server:
        if fault == "cut":
            server.truncate.add("/lra_release.gz")
        monkeypatch.setattr(lra_common, "LRA_URL", f"{server.url}/lra_release.gz")
        with pytest.raises(DataError, match=refusal):
            ListOpsDataModule(data_dir=sandbox / "data", batch_size=2, num_workers=0).prepare_data()
        assert server.requests == ["/lra_release.gz"]
    assert leftovers(sandbox) == []  # no lra_release/, no archive, no temporary folder, no ../evil


def test_a_download_that_cannot_write_its_file_says_so_and_its_clean_up_does_not_hide_it(server, tmp_path):
    # On a read-only file system both the write and the clean-up's unlink fail (EROFS, even for a missing file); the
    # clean-up's error escaped as a traceback. A folder in the place of the partial file fails both ways too.
    part = tmp_path / "file.bin.part"
    part.mkdir()
    with pytest.raises(DataError, match=rf"^Cannot write {part} to download .*Set dataset.data_dir \(prepare: --data"):
        download_url(f"{server.url}/file.bin", tmp_path / "file.bin", progress=False, timeout=5)


def test_an_archive_that_was_there_before_is_not_deleted_when_its_extraction_fails(server, tmp_path):
    """download_and_extract deletes a refused archive only when it downloaded it: one without checksums (as the LRA
    release has none) that was there already is a user's file, named by the error and left as it is."""
    archive = tmp_path / "data" / "release.tar.gz"
    archive.parent.mkdir()
    archive.write_bytes(b"not an archive, but a user's file")
    with pytest.raises(DataError, match=r"Cannot extract .*release\.tar\.gz"):
        download_and_extract(f"{server.url}/release.tar.gz", archive, tmp_path / "data")
    assert archive.read_bytes() == b"not an archive, but a user's file"
    assert leftovers(tmp_path / "data") == ["release.tar.gz"] and server.requests == []
