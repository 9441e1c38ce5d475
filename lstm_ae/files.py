"""Output files written atomically, output folders checked before training, and
the clean-up of temporary files that killed runs left behind.

Every output (figure, CSV, JSON, checkpoint, downloaded file) is written to a
temporary name in its folder and renamed into place, so an interrupted run
never leaves a half-written file where a finished one is expected.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
from pathlib import Path
from typing import Iterator

from lstm_ae.errors import UserError

# The checkout: where the default data/, runs/ and figures/ folders are.
REPO_ROOT = Path(__file__).resolve().parents[1]


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
    except OSError as error:
        raise UserError(write_error_message(path, error)) from None
    finally:
        tmp.unlink(missing_ok=True)


def write_error_message(path: Path, error: OSError) -> str:
    """One line naming the file that could not be written, why, and what to do."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        try:
            free = f", {shutil.disk_usage(path.parent).free / 2**20:,.0f} MiB free there"
        except OSError:
            free = ""
        why = f"no space left on the device{free}"
    else:
        why = error.strerror or type(error).__name__
    return (f"cannot write {path} ({why}); free some space or choose another --run-dir or "
            "--figures-dir, then run the same command with --resume to continue")


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
