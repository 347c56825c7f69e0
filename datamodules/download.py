"""Verified, atomic downloads and checked extraction: what the ecosystem's helpers lack.

* ``torchvision.datasets.utils.download_url`` writes straight to the final path and never compares the bytes
  received with ``Content-Length``: a cut transfer leaves a truncated file there, accepted as complete when no MD5
  is given. ``torch.hub.download_url_to_file`` (torchaudio's) renames only a finished download but never checks
  the length either, and verifies SHA-256 only (MNIST, CIFAR and STL-10 publish MD5s). Here a download streams
  into ``<dest>.part``, renamed only once the bytes received match the server's ``Content-Length`` (when it sends
  one) and the file matches the checksums the caller gives (each datamodule says which it has, if any).
* ``torchvision.datasets.utils.extract_archive`` and torchaudio's ``_extract_tar`` extract without the standard
  library's member filter (a ``..`` path or a link out of the target writes outside it) and straight into the
  target (an interrupted extraction looks complete). Here extraction goes through ``tarfile``'s ``"data"`` filter
  into a temporary sibling folder, checked there (``check``) and moved into place only once complete.

``tests/test_download.py`` shows each difference against the library functions.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tqdm.auto import tqdm

from datamodules.base import DataError

_CHUNK = 1 << 20


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
    """Hex digest (``"md5"``, ``"sha256"``, ...) of a file."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, algorithm).hexdigest()


def _checksum_error(path: Path, md5: str | None, sha256: str | None) -> str | None:
    """Describe how ``path`` fails its expected checksums; ``None`` when it passes (or none is given)."""
    for algorithm, expected in (("md5", md5), ("sha256", sha256)):
        if expected is not None and (got := file_digest(path, algorithm)) != expected.lower():
            return f"{algorithm} {got}, expected {expected}"
    return None


def download_url(
    url: str,
    dest: Path,
    md5: str | None = None,
    sha256: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest`` atomically, verifying its length (against ``Content-Length``, when the server
    sends one) and the checksums given; an existing ``dest`` that passes the checksums (any, without checksums:
    only complete downloads are renamed to it) is kept as it is.

    An existing ``dest`` that fails them is refused, never deleted or replaced: only verified downloads are renamed
    to ``dest``, so this function did not put it there; it may be a user's hand-placed copy (truncated in transfer,
    or another version), which they may want to keep or mend, and which a refetch would silently destroy.

    Args:
        url: the address to fetch (any scheme urllib supports).
        dest: final path of the file; its parent folder is created.
        md5: expected hex MD5 of the file, or ``None``.
        sha256: expected hex SHA-256 of the file, or ``None``.
        progress: show a tqdm progress bar.
        timeout: seconds to wait for the connection and for each read.

    Returns:
        ``dest``.

    Raises:
        DataError: the transfer failed or was cut short, or the file failed its checksum. No file is left
            behind.
        CorruptCopyError: ``dest`` was already there and fails the checksums; it is left as it is.
    """
    dest = Path(dest)
    if dest.is_file():
        if (problem := _checksum_error(dest, md5, sha256)) is None:
            return dest
        raise CorruptCopyError(
            f"{dest} is already there but fails its checksum ({problem}): a truncated or different copy, left as "
            f"it is. Delete it to download it again from {url}, or replace it with a good copy."
        )
    created = missing_folders(dest.parent)  # removed again if the download fails: a failure leaves nothing behind
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FolderError(
            f"Cannot create {dest.parent} to download {url} into ({error.strerror or error}). "
            "Set dataset.data_dir to a writable folder."
        ) from error
    part = dest.with_suffix(dest.suffix + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
            length = response.headers.get("Content-Length")
            expected = int(length) if length is not None and length.isdigit() else None
            received = 0
            with tqdm(total=expected, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
                while block := response.read(_CHUNK):
                    out.write(block)
                    received += len(block)
                    bar.update(len(block))
        if expected is not None and received != expected:
            raise DataError(
                f"Download of {url} to {dest} was cut short: received {received} of {expected} bytes. "
                "Run again to retry."
            )
        if (problem := _checksum_error(part, md5, sha256)) is not None:
            raise DataError(
                f"Download of {url} to {dest} failed its checksum ({problem}). The server sent a different "
                f"file; download it by hand from {url} and place it at {dest} if you trust the source."
            )
    except (OSError, http.client.HTTPException, ValueError) as error:
        _discard(part)
        remove_empty(created)
        if isinstance(error, OSError) and error.filename == str(part):  # the folder, not the connection
            raise DataError(
                f"Cannot write {part} to download {url} ({error.strerror}). Set dataset.data_dir (prepare: "
                "--data-dir) to a writable folder."
            ) from error
        reason = repr(getattr(error, "reason", error))  # URLError wraps the socket error
        if isinstance(error, urllib.error.HTTPError):
            reason = f"HTTP {error.code} {error.reason}"
        raise DataError(
            f"Could not download {url} to {dest}: {reason}. Check the connection and run again, or "
            f"download the file by hand and place it at {dest}."
        ) from error
    except BaseException:  # DataError above, KeyboardInterrupt: never leave a partial file
        _discard(part)
        remove_empty(created)
        raise
    os.replace(part, dest)
    return dest


def _discard(path: Path) -> None:
    """Remove ``path`` if it is there; on a read-only file system even a missing file's unlink fails (EROFS), and a
    failed clean-up must not replace the error that caused it."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


class FolderError(DataError):
    """A problem on this side of a download that no other source (mirror) will solve: the folder it should go into
    cannot be created, or (:class:`CorruptCopyError`) a file not made by the download is in its way."""


class CorruptCopyError(FolderError):
    """A file already at a download's destination fails its checksums; it is refused and left as it is."""


def missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def remove_empty(folders: list[Path]) -> None:
    """Remove the folders a failed download (or cache write) created, deepest first, as long as they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


# ------------------------------------------------------------------------------------------------ extraction


def _extract_into(archive: Path, tmp: Path) -> None:
    """Extract ``archive`` into the empty folder ``tmp``; a plain ``.gz`` file is decompressed there."""
    if tarfile.is_tarfile(archive):  # also recognises .tar.gz, .tgz and a gzipped tar named .gz (the LRA release)
        with tarfile.open(archive, "r:*") as tar:
            try:
                # The standard library's member checks: no '..' escape, no link out of the folder, no device or
                # FIFO; absolute names are made relative.
                tar.extractall(tmp, filter="data")
            except tarfile.FilterError as error:
                raise DataError(
                    f"Refusing to extract {archive}: {error}. Nothing was extracted; the archive is corrupt or "
                    "hostile: delete it and download it again from its official source."
                ) from error
    elif archive.name.lower().endswith(".gz"):
        with gzip.open(archive, "rb") as src, open(tmp / archive.name[: -len(".gz")], "wb") as out:
            shutil.copyfileobj(src, out, _CHUNK)
    else:
        raise DataError(
            f"Cannot extract {archive}: not a tar, tar.gz/tgz or gz archive. Delete it and download it again."
        )


def extract_archive(archive: Path, target_dir: Path, check: Callable[[Path], None] | None = None) -> Path:
    """Extract a .tar, .tar.gz/.tgz or .gz archive into ``target_dir``, all or nothing.

    Extraction goes to a temporary sibling folder, with the standard library's member checks
    (``tarfile.data_filter``); only once every member is out and ``check`` passed are the folder's top-level entries
    moved into ``target_dir``, merged into the folders already there (a file of the same name is replaced, other
    files stay), so a refused or interrupted extraction leaves nothing there. A plain ``.gz`` file is decompressed
    to ``target_dir/<name without .gz>``.

    Args:
        archive: the archive file.
        target_dir: folder that receives the archive's contents; created if missing.
        check: called with the temporary folder holding the extracted contents; raises DataError to refuse them.

    Returns:
        ``target_dir``.

    Raises:
        DataError: the archive is missing, unreadable, holds a refused member or fails ``check``; nothing is
            extracted.
    """
    archive, target_dir = Path(archive), Path(target_dir)
    if not archive.is_file():
        raise DataError(f"Cannot extract {archive}: the file does not exist. Download it again.")
    target_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target_dir.name}.extracting-", dir=target_dir.parent))
    try:
        try:
            _extract_into(archive, tmp)
        except (tarfile.TarError, EOFError, OSError) as error:
            raise DataError(
                f"Cannot extract {archive}: {error!r}. The archive is corrupt or truncated: delete it and "
                "download it again."
            ) from error
        if check is not None:
            check(tmp)
        target_dir.mkdir(parents=True, exist_ok=True)
        for entry in sorted(tmp.iterdir()):
            _move_merging(entry, target_dir / entry.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target_dir


def _move_merging(source: Path, destination: Path) -> None:
    """Move ``source`` to ``destination``, entry by entry where both are folders: a file of the archive replaces the
    file of the same name, and everything else already there stays (an extraction over a user's partial copy once
    replaced the whole folder, deleting their own files in it)."""
    if source.is_dir() and destination.is_dir() and not destination.is_symlink():
        for entry in sorted(source.iterdir()):
            _move_merging(entry, destination / entry.name)
        return
    if destination.is_dir() and not destination.is_symlink():
        shutil.rmtree(destination)  # a folder where the archive holds a file of that name
    elif destination.exists() or destination.is_symlink():
        destination.unlink()
    os.replace(source, destination)


def download_and_extract(
    url: str,
    archive: Path,
    target_dir: Path,
    md5: str | None = None,
    sha256: str | None = None,
    check: Callable[[Path], None] | None = None,
) -> Path:
    """:func:`download_url` then :func:`extract_archive`; an archive it downloaded and that is refused is deleted,
    so nothing is left behind.

    The archive is kept once its contents are in place (as torchvision keeps its archives). One downloaded by this
    call whose extraction or ``check`` fails is deleted with the folders the download created: kept, it would be
    found again by the next run (it passed the download's checks) and refused again, rather than downloaded anew.
    An archive that was there before the call (a user's copy) is never deleted: the error names it.

    Args:
        url, md5, sha256: see :func:`download_url`.
        archive: where the archive is downloaded to.
        target_dir, check: see :func:`extract_archive`.

    Returns:
        ``target_dir``.

    Raises:
        DataError: the download or the extraction failed its checks.
    """
    archive, target_dir = Path(archive), Path(target_dir)
    created = [missing_folders(target_dir.parent), missing_folders(archive.parent)]
    downloaded = not archive.is_file()  # otherwise download_url keeps it (it passes the checksums) or refuses it
    download_url(url, archive, md5=md5, sha256=sha256)
    try:
        return extract_archive(archive, target_dir, check)
    except DataError:
        if not downloaded:
            raise  # not this call's file: its message says to delete it and download it again
        archive.unlink(missing_ok=True)
        for folders in created:
            remove_empty(folders)
        raise
