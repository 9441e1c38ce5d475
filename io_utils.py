"""Errors the user can fix, and output files written atomically.

Every output (figure, CSV, JSON, checkpoint, downloaded file) is written to a
temporary name in its folder and renamed into place, so an interrupted run
never leaves a half-written file where a finished one is expected.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import lzma
import os
import re
import zipfile
import zlib
from pathlib import Path
from typing import Iterator

# The longest error line the scripts print; longer messages are shortened in the middle.
MAX_MESSAGE = 400


class UserError(Exception):
    """A problem the user can fix (a bad flag value, a missing file): the scripts
    print it as one line and exit with status 2."""


class DataError(UserError, ValueError):
    """A data file is missing, unreadable or malformed; the message says which and what to do."""


def one_line(message: str, limit: int = MAX_MESSAGE) -> str:
    """``message`` on one line of at most ``limit`` characters: line breaks become
    spaces, and an over-long middle (a list of hundreds of names) becomes ' ... '."""
    text = " ".join(str(message).split())
    if len(text) <= limit:
        return text
    tail = limit // 3
    return f"{text[:limit - tail - 5]} ... {text[-tail:]}"


DAMAGED_DATA = (zlib.error, EOFError, gzip.BadGzipFile, zipfile.BadZipFile, lzma.LZMAError)


def read_error_message(path: Path, error: BaseException, what: str = "file",
                       fix: str = "replace it with a good copy") -> str:
    """One line saying why ``path`` (a ``what``: "MNIST file", "price CSV", ...) could
    not be read, and what to do; ``fix`` is the remedy for damaged content.

    Covers what a download or a copy does to a file: a corrupt deflate stream (a
    binary file sent through a text-mode transfer: zlib.error), a file cut short
    (EOFError), a bad gzip header (gzip.BadGzipFile), a damaged zip
    (zipfile.BadZipFile), text that is not UTF-8 (UnicodeDecodeError), and the
    file system's refusals: permission denied, a folder where the file should be,
    a missing file.
    """
    if isinstance(error, IsADirectoryError) or (isinstance(error, OSError) and Path(path).is_dir()):
        return f"{what} {path} is a folder, not a file; remove or rename the folder and put the file there"
    if isinstance(error, PermissionError):
        return f"{what} {path} cannot be read (permission denied); make it readable (chmod u+r) or copy it elsewhere"
    if isinstance(error, FileNotFoundError):
        return f"{what} {path} does not exist; check the path"
    if isinstance(error, UnicodeDecodeError):
        return (f"{what} {path} is not UTF-8 text (byte 0x{error.object[error.start]:02x} at "
                f"offset {error.start}); save it as UTF-8 or {fix}")
    if isinstance(error, EOFError):
        return f"{what} {path} is cut short (compressed stream ends early); {fix}"
    if isinstance(error, gzip.BadGzipFile):
        return f"{what} {path} is not valid gzip data ({error}); {fix}"
    if isinstance(error, zipfile.BadZipFile):
        return f"{what} {path} is not a valid zip archive ({error}); {fix}"
    if isinstance(error, (zlib.error, lzma.LZMAError)):
        detail = str(error).split(": ")[-1]  # "Error -3 while decompressing data: <reason>"
        return (f"{what} {path} has corrupt compressed data ({detail}), as after a text-mode "
                f"transfer; {fix}")
    if isinstance(error, OSError):
        return f"{what} {path} cannot be read ({error.strerror or error}); {fix}"
    return f"{what} {path} cannot be read ({type(error).__name__}: {error}); {fix}"


@contextlib.contextmanager
def reading(path: Path, what: str = "file", fix: str = "replace it with a good copy") -> Iterator[Path]:
    """Turn the errors of reading ``path`` (OS, decompression, decoding; see
    ``read_error_message``) raised inside the block into one-line DataErrors.

        with reading(path, "MNIST file", "delete it and run again to download it"):
            content = gzip.decompress(path.read_bytes())
    """
    try:
        yield Path(path)
    except (OSError, UnicodeDecodeError) + DAMAGED_DATA as error:
        raise DataError(read_error_message(Path(path), error, what, fix)) from None


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds.

    Raises UserError (before the block runs) when a folder already has the name.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"cannot write {path}: a folder has that name; move it away "
                        "or choose another output folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_bytes_atomic(path: Path, content: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(content)


def write_json(path: Path, obj: dict) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, default=_jsonable) + "\n")


def _jsonable(value):
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:  # numpy and torch scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in JSON")


def ensure_writable_dir(path: Path, what: str) -> Path:
    """Prove that files can be written to ``path`` before any training, creating
    nothing: an existing folder gets a probe file written and removed; a missing
    one needs a folder to be creatable in its nearest existing parent (one is made
    and removed again; the folder itself is made by the first atomic write), so a
    refused run leaves no empty folders. Raises UserError naming the folder."""
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    problem = None
    if not existing.is_dir():
        problem = f"{existing} is not a folder"
    elif existing == path:
        probe = path / f".write-test-{os.getpid()}"
        try:
            probe.write_text("")
            probe.unlink()
        except OSError as error:
            problem = error.strerror or str(error)
    else:  # a folder made and removed again proves the missing ones can be made
        probe = existing / f".write-test-{os.getpid()}"
        try:
            probe.mkdir()
            probe.rmdir()
        except OSError as error:
            problem = f"no folder can be made in {existing}: {error.strerror or error}"
    if problem:
        raise UserError(f"cannot write {what} to {path} ({problem}); choose another folder")
    return path


# The temporary names atomic_path and ensure_writable_dir use: .<stem>.<pid>.tmp<suffix>
# and .write-test-<pid>.
_TEMP_NAME = re.compile(r"^\.(?:.+\.(\d+)\.tmp(?:\.[^.]*)?|write-test-(\d+))$")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Delete the temporary files that killed runs left in ``folder`` (only names
    atomic_path or ensure_writable_dir make, of processes no longer running);
    return what was removed. A missing folder is left alone."""
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        match = _TEMP_NAME.match(entry.name)
        if not match or not entry.is_file():
            continue
        pid = int(match.group(1) or match.group(2))
        if pid != os.getpid() and not _process_alive(pid):
            with contextlib.suppress(OSError):
                entry.unlink()
                removed.append(entry)
    return removed
