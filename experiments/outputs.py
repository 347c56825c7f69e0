"""Where the experiment tools write, checked before they start and written so that a failure leaves nothing half done.

A tool rewrites a file only if it is its own: a plot carries the tool's mark (a PNG text chunk ``Source: python -m
<tool>``, which :func:`png_metadata` gives to ``savefig``), a table is recognised by its header; anything else at the
path is refused before the tool starts its work. Every output is written aside first and put in place only when all
of them are written (:func:`write_files`); a new one is linked into place, so a file that appeared meanwhile is never
written over.
"""

from __future__ import annotations

import csv
import io
import os
import struct
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from training.run.folder import nearest_existing, write_refusal
from training.tools import OutputError, ToolFailedError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MARK_KEY = "Source"  # a PNG text keyword: "device used to create the image", here the command


def png_metadata(tool: str) -> dict[str, str]:
    """What ``savefig(metadata=...)`` needs to mark a plot as ``tool``'s (e.g. ``experiments.summarize``)."""
    return {MARK_KEY: f"python -m {tool}"}


def png_text(path: Path) -> dict[str, str] | None:
    """The text chunks (``tEXt``) of the PNG at ``path``; ``None`` if it is not a readable PNG."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if not data.startswith(PNG_SIGNATURE):
        return None
    found: dict[str, str] = {}
    at = len(PNG_SIGNATURE)
    while at + 8 <= len(data):  # chunks: length, type, data, CRC
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        if kind == b"tEXt":
            key, _, value = data[at + 8 : at + 8 + length].partition(b"\0")
            found[key.decode("latin-1")] = value.decode("latin-1")
        if kind == b"IEND":
            break
        at += 12 + length
    return found


def is_marked_png(path: Path, tool: str) -> bool:
    """Whether ``path`` is a PNG that ``tool`` wrote (it carries the tool's mark)."""
    text = png_text(path)
    return text is not None and text.get(MARK_KEY) == png_metadata(tool)[MARK_KEY]


def is_matplotlib_png(path: Path) -> bool:
    """Whether ``path`` is a PNG that Matplotlib wrote (the tools' plots from before they carried a mark)."""
    text = png_text(path)
    return text is not None and text.get("Software", "").startswith("Matplotlib")


def _at(what: str, path: Path) -> str:
    """``what`` (an option and its value) and ``path``, without saying a path twice: ``--plot p.png``,
    ``--output o: results.md`` (a file in that folder), ``--output o: /x/o`` (a path of another kind)."""
    if what.endswith(f" {path}"):
        return what
    return f"{what}: {path.name}" if what.endswith(f" {path.parent}") else f"{what}: {path}"


def check_folder(folder: Path, what: str) -> None:
    """Refuse unless files can be made in ``folder``, or, where it does not exist yet, in the nearest folder above it
    that does (the tool makes the rest). ``what`` names the option and value, e.g. ``--output o``.

    Raises:
        OutputError: ``folder`` (or a folder above it) is a file, or nothing can be written there.
    """
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{_at(what, folder)} is a file, not a folder; pass a folder.")
    existing = nearest_existing(folder)
    if not existing.is_dir():
        raise OutputError(f"{what}: {existing} is a file, so {folder} cannot be made; pass another folder.")
    refusal = write_refusal(existing)
    if refusal is not None:
        raise OutputError(f"{what}: nothing can be written in {existing} ({refusal.strerror or refusal}).")


def check_appendable(path: Path, what: str) -> None:
    """Refuse an existing file this process cannot write to. Opening it to append changes neither its bytes nor
    its modification time, and finds what ``os.access`` does not show to root (immutable files, read-only mounts).

    Raises:
        OutputError: naming ``what`` and the reason.
    """
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND))
    except OSError as error:
        raise OutputError(f"{_at(what, path)} cannot be written ({error.strerror or error}).") from None


def check_output(path: Path, what: str, owned: Callable[[Path], bool], owner: str) -> bool:
    """Refuse ``path`` as an output unless it is new (in a folder where it can be made) or a file the tool made
    before (``owned``), which it can replace.

    Args:
        path: The file the tool will write.
        what: The option and value that chose it, for the message.
        owned: Whether an existing file at ``path`` is the tool's own.
        owner: The tool's command, e.g. ``experiments.summarize``, for the message.

    Returns:
        Whether ``path`` exists (it will be replaced).

    Raises:
        OutputError: ``path`` is a folder, someone else's file, or cannot be written.
    """
    if path.is_dir():
        raise OutputError(f"{_at(what, path)} is a folder; pass a file name.")
    if not (path.exists() or path.is_symlink()):
        check_folder(path.parent, what)
        return False
    if not owned(path):
        raise OutputError(
            f"{_at(what, path)} exists and was not written by {owner}; nothing is written over it. Move it away or "
            "pass another path."
        )
    check_appendable(path, what)
    check_folder(path.parent, what)  # the new file is made beside it, then renamed over it
    return True


@dataclass(frozen=True)
class Output:
    """A file to write: ``write`` writes it at the path it is given; ``replace``: ``path`` is the tool's own file
    (checked by :func:`check_output`) and is replaced, else it must still be absent."""

    path: Path
    write: Callable[[Path], object]
    replace: bool


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_files(outputs: Sequence[Output]) -> None:
    """Write every output aside (a temporary file beside it, with its suffix), then put them all in place: a
    failure while writing leaves every output as it was and no temporary file behind.

    Raises:
        ToolFailedError: naming the output that could not be written (never the temporary file).
        OutputError: a new output's path was taken by another file meanwhile.
    """
    written: list[tuple[Output, Path]] = []
    try:
        for output in outputs:
            try:
                output.path.parent.mkdir(parents=True, exist_ok=True)
                handle, name = tempfile.mkstemp(
                    dir=output.path.parent, prefix=f".{output.path.stem}.", suffix=output.path.suffix
                )
                os.close(handle)
                written.append((output, Path(name)))
                output.write(Path(name))
                os.chmod(name, 0o666 & ~_umask())  # mkstemp makes 0600; the permissions open() would give
            except Exception as error:
                reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
                raise ToolFailedError(f"writing {output.path} failed ({reason}); no output was changed.") from error
        for output, temporary in written:
            try:
                if output.replace:
                    os.replace(temporary, output.path)
                else:
                    os.link(temporary, output.path)  # fails if the path was taken meanwhile: never over a file
            except FileExistsError:
                raise OutputError(
                    f"{output.path} appeared while it was being written; nothing was written over it."
                ) from None
            except OSError as error:
                raise ToolFailedError(f"writing {output.path} failed ({error.strerror or error}).") from error
    finally:
        for _, temporary in written:
            temporary.unlink(missing_ok=True)


def _csv_line(values: Iterable[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue().encode("utf-8")


def _create_with_header(path: Path, columns: Sequence[str]) -> None:
    """Create ``path`` holding the header, unless it exists: a reader or appender never sees it without one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    aside = path.with_name(f".{path.name}.{os.getpid()}.new")
    aside.write_bytes(_csv_line(columns))
    try:
        os.link(aside, path)  # atomic: fails if another process created the file first
    except FileExistsError:
        pass
    finally:
        aside.unlink()


def append_csv_rows(path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, str]]) -> None:
    """Add ``rows`` (their values in the order of ``columns``) to the CSV file at ``path``, created with its header
    if missing, durably.

    The rows go out in a single ``write`` on a file opened with ``O_APPEND``, so concurrent writers interleave whole
    runs of rows, and they are flushed to disk before this returns.
    """
    path = Path(path)
    if not path.exists():
        _create_with_header(path, columns)
    fd = os.open(path, os.O_RDWR | os.O_APPEND)
    try:
        data = b"".join(_csv_line(row[column] for column in columns) for row in rows)
        size = os.fstat(fd).st_size
        if size == 0:  # an empty file (e.g. truncated by hand): give it its header
            data = _csv_line(columns) + data
        elif os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data  # a hand-edited file whose last line has no newline: keep rows on their own lines
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
