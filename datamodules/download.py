"""Verified, atomic downloads and checked archive extraction, shared by every datamodule.

The ecosystem's helpers are not used for these two steps because of what they lack:

* ``torchvision.datasets.utils.download_url`` writes straight to the final path and does not compare the bytes
  received with ``Content-Length``: a cut transfer leaves a truncated file there, which a later call without an
  md5 accepts as complete. ``torch.hub.download_url_to_file`` (torchaudio's) renames only a finished download but
  also never checks the length, and verifies SHA-256 only (MNIST, CIFAR and STL-10 publish MD5s).
* ``torchvision.datasets.utils.extract_archive`` and torchaudio's ``_extract_tar`` call ``extractall``/``extract``
  without checking members: a ``..`` path, an absolute path or a link out of the target writes outside it, and an
  interrupted extraction leaves a partial folder that looks complete.

So, whatever goes wrong (checksum mismatch, dropped connection, hostile archive, Ctrl-C):

* a file at its final path is complete: downloads stream into ``<dest>.part`` and are renamed only once the
  size and checksum are verified;
* an extracted folder is complete and stays inside its target: every member of an archive is checked before
  anything is written, extraction goes to a temporary sibling folder, and only a finished extraction is moved
  into place.

``tests/test_download.py`` shows each of these differences against the library functions.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
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
    """Download ``url`` to ``dest`` atomically, verifying its size and checksum.

    An existing ``dest`` that passes the checksums is kept without contacting the server (without checksums,
    any existing ``dest`` is kept: only complete downloads are ever renamed to it).

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
    """
    dest = Path(dest)
    if dest.is_file():
        if _checksum_error(dest, md5, sha256) is None:
            return dest
        dest.unlink()  # stale or corrupt copy: fetch it again
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(
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
        part.unlink(missing_ok=True)
        if isinstance(error, urllib.error.HTTPError):
            reason = f"HTTP {error.code} {error.reason}"
        elif isinstance(error, urllib.error.URLError):
            reason = repr(error.reason)
        else:
            reason = repr(error)
        raise DataError(
            f"Could not download {url} to {dest}: {reason}. Check the connection and run again, or "
            f"download the file by hand and place it at {dest}."
        ) from error
    except BaseException:  # DataError above, KeyboardInterrupt: never leave a partial file
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return dest


# ------------------------------------------------------------------------------------------------ extraction


def _inside(relative: str) -> bool:
    """Whether a '/'-separated path relative to the target folder stays inside it after normalisation."""
    normal = posixpath.normpath(relative)
    return normal != ".." and not normal.startswith("../")


def _is_absolute(name: str) -> bool:
    return name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) is not None


def _check_member(archive: Path, name: str, link: str | None = None, hardlink: bool = False) -> None:
    """Refuse a member whose path, or link target, is absolute or leaves the target folder."""
    name = name.replace("\\", "/")
    problem = None
    if _is_absolute(name):
        problem = "has an absolute path"
    elif not _inside(name):
        problem = "escapes the target folder with '..'"
    elif link is not None:
        link = link.replace("\\", "/")
        # A symlink resolves against its own folder, a tar hardlink against the archive root.
        base = "" if hardlink else posixpath.dirname(name)
        if _is_absolute(link) or not _inside(posixpath.join(base, link)):
            problem = f"links to {link!r}, outside the target folder"
    if problem is not None:
        raise DataError(
            f"Refusing to extract {archive}: member {name!r} {problem}. Nothing was extracted; the archive "
            "is corrupt or hostile: delete it and download it again from its official source."
        )


def _validate_tar(archive: Path, tar: tarfile.TarFile) -> None:
    for member in tar.getmembers():
        if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
            raise DataError(
                f"Refusing to extract {archive}: member {member.name!r} is a device, FIFO or other special "
                "file. Nothing was extracted; delete the archive and download it again from its official "
                "source."
            )
        link = member.linkname if (member.issym() or member.islnk()) else None
        _check_member(archive, member.name, link, hardlink=member.islnk())


def _validate_zip(archive: Path, zf: zipfile.ZipFile) -> None:
    for info in zf.infolist():
        mode = info.external_attr >> 16
        link = zf.read(info).decode("utf-8", "replace") if stat.S_ISLNK(mode) else None
        _check_member(archive, info.filename, link)


def _extract_into(archive: Path, tmp: Path) -> None:
    """Validate every member of ``archive``, then extract it into the empty folder ``tmp``."""
    name = archive.name.lower()
    if name.endswith(".zip") or (not tarfile.is_tarfile(archive) and zipfile.is_zipfile(archive)):
        with zipfile.ZipFile(archive) as zf:
            _validate_zip(archive, zf)
            zf.extractall(tmp)
    elif tarfile.is_tarfile(archive):  # also recognises .tar.gz, .tgz and a gzipped tar named .gz
        with tarfile.open(archive, "r:*") as tar:
            _validate_tar(archive, tar)
            tar.extractall(tmp, filter="data")  # the standard library's own checks, a second line of defence
    elif name.endswith(".gz"):
        with gzip.open(archive, "rb") as src, open(tmp / archive.name[: -len(".gz")], "wb") as out:
            shutil.copyfileobj(src, out, _CHUNK)
    else:
        raise DataError(
            f"Cannot extract {archive}: not a tar, tar.gz/tgz, gz or zip archive. Delete it and download it again."
        )


def extract_archive(archive: Path, target_dir: Path) -> Path:
    """Extract a .tar, .tar.gz/.tgz, .gz or .zip archive into ``target_dir``.

    All members are validated before anything is written: absolute paths, ``..`` escapes, links pointing
    outside ``target_dir`` and device files are refused. Extraction goes to a temporary sibling folder whose
    top-level entries are then moved into ``target_dir`` (replacing entries of the same name), so an
    interrupted extraction never looks complete. A plain ``.gz`` file is decompressed to
    ``target_dir/<name without .gz>``.

    Args:
        archive: the archive file.
        target_dir: folder that receives the archive's contents; created if missing.

    Returns:
        ``target_dir``.

    Raises:
        DataError: the archive is missing, unreadable or holds a refused member; nothing is extracted.
    """
    archive, target_dir = Path(archive), Path(target_dir)
    if not archive.is_file():
        raise DataError(f"Cannot extract {archive}: the file does not exist. Download it again.")
    target_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target_dir.name}.extracting-", dir=target_dir.parent))
    try:
        try:
            _extract_into(archive, tmp)
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as error:
            raise DataError(
                f"Cannot extract {archive}: {error!r}. The archive is corrupt or truncated: delete it and "
                "download it again."
            ) from error
        target_dir.mkdir(parents=True, exist_ok=True)
        for entry in sorted(tmp.iterdir()):
            final = target_dir / entry.name
            if final.is_dir() and not final.is_symlink():
                shutil.rmtree(final)
            elif final.exists() or final.is_symlink():
                final.unlink()
            os.replace(entry, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target_dir
