"""Errors the user can fix, and the one-line messages that explain them.

A UserError (or DataError) raised anywhere in the library reaches the scripts'
entry point, which prints it as one line and exits with status 2; ``reading``
turns what a download or a copy does to a file into such a line.
"""

from __future__ import annotations

import contextlib
import os
import signal
import gzip
import lzma
import zipfile
import zlib
from pathlib import Path
from typing import Iterator

# The longest error line the scripts print; longer messages are shortened in the middle.
MAX_MESSAGE = 400
# What torchrun (and --procs) set in every process it starts.
LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def a_secondary_rank() -> bool:
    """Whether a launcher started this process as a rank other than 0: such a rank
    leaves the one-line messages to rank 0, since every rank meets the same bad input."""
    return all(name in os.environ for name in LAUNCHER_VARIABLES) and os.environ["RANK"] != "0"


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


class Interrupted(Exception):
    """The run was stopped by SIGINT (Ctrl-C) or SIGTERM; ``signum`` says which.
    The entry point prints one line saying how to continue, and exits with
    128 + signum (130 for SIGINT, 143 for SIGTERM), as a shell does."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


@contextlib.contextmanager
def signals_raise_interrupted() -> Iterator[None]:
    """Within the block SIGINT and SIGTERM raise Interrupted in the main thread (a
    KeyboardInterrupt is turned into one too); the handlers before are restored
    after it. Outside the main thread, where handlers cannot be set, nothing changes."""
    def handler(signum, frame):
        raise Interrupted(signum)

    wanted = (signal.SIGINT, signal.SIGTERM)
    try:
        previous = {s: signal.signal(s, handler) for s in wanted}
    except ValueError:  # not the main thread
        previous = {}
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(signal.SIGINT) from None
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
