"""Run folders: one run at a time in a folder, and no run that silently replaces
or is mistaken for another.

* A lock file, ``RUN_DIR/.lock`` (pid, host, start time, command), is taken by
  ``claim`` when the run folder is prepared (``experiment.prepare_run``, on rank 0
  only: under data parallelism the other ranks belong to the same run) and
  released when the script's run ends, on errors and interrupts too (``guarded``,
  around the body ``main.run_main`` runs, in the process that runs it). A second
  run in the folder while it is held is refused in one line; a lock whose process
  is gone (a killed run) or that cannot be read is taken over without a word.
* A new training run (neither --resume nor --eval-only) in a folder that holds a
  run (a checkpoint, grid.csv or results.json) is refused unless --overwrite,
  which first removes that run's checkpoints, grid CSV, results and figures, so
  none of them can pass for the new run's.
* --eval-only adds its numbers to results.json as an "evaluation" record, leaving
  the training record there as it was (``with_evaluation``).
* A checkpoint carries the name of the script that made it; another script
  refuses to evaluate or continue it (``check_script``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import secrets
import shlex
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from lstm_ae.engine.checkpoints import load_checkpoint
from lstm_ae.errors import UserError
from lstm_ae.files import write_error_message

LOCK_NAME = ".lock"
RECORD_FILES = ("grid.csv", "results.json", "latents.npz", "rate_distortion.csv",
                "rate_distortion.json")   # besides the checkpoints, *.pt


def shown(path: Path) -> str:
    """A path as messages show it: relative to the working folder when inside it."""
    path = Path(path)
    with contextlib.suppress(ValueError):
        return path.absolute().relative_to(Path.cwd()).as_posix() or "."
    return str(path)


# ----------------------------------------------------------------------------
# What a folder holds
# ----------------------------------------------------------------------------

def _checkpoints(run_dir: Path) -> list[Path]:
    """The checkpoints in ``run_dir``, final.pt first (temporary files left out)."""
    found = [p for p in Path(run_dir).glob("*.pt") if p.is_file() and not p.name.startswith(".")]
    return sorted(found, key=lambda p: (p.name != "final.pt", p.name))


def _describe_checkpoint(path: Path) -> str:
    try:
        checkpoint = load_checkpoint(path)
        total = checkpoint.get("train_config", {}).get("epochs")
        return f"{path.name} after epoch {checkpoint['epoch']}" + (f" of {total}" if total else "")
    except (UserError, KeyError, AttributeError):
        return f"{path.name}, unreadable"


def held_run(run_dir: Path) -> Optional[str]:
    """What of a run ``run_dir`` holds ("final.pt after epoch 10 of 20, grid.csv"),
    or None when it holds no checkpoint, grid CSV or results."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return None
    found = [_describe_checkpoint(p) for p in _checkpoints(run_dir)]
    found += [name for name in RECORD_FILES if (run_dir / name).is_file()
              and not _header_only(run_dir / name)]
    return ", ".join(found) or None


def _header_only(path: Path) -> bool:
    """A grid CSV stopped before its first point: nothing of a run to keep."""
    try:
        return path.suffix == ".csv" and len(path.read_text().splitlines()) <= 1
    except (OSError, UnicodeDecodeError):
        return False


def clear_run(run_dir: Path, figures: Path) -> list[Path]:
    """--overwrite: remove the previous run's checkpoints, grid CSV and results, and
    its figures in the run folder (RUN_DIR/figures/, and ``figures`` when it lies inside
    the run folder; figures elsewhere are the user's and are only overwritten); return them."""
    run_dir, figures = Path(run_dir), Path(figures)
    doomed = _checkpoints(run_dir) + [run_dir / n for n in RECORD_FILES if (run_dir / n).is_file()]
    for folder in dict.fromkeys([run_dir / "figures", figures]):
        if folder.is_dir() and folder.absolute().is_relative_to(run_dir.absolute()):
            doomed += sorted(p for p in folder.glob("*.png") if p.is_file())
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


# ----------------------------------------------------------------------------
# The lock
# ----------------------------------------------------------------------------

@dataclass
class _Held:
    lock: Path
    token: str
    created: list = field(default_factory=list)   # folders made for the lock, deepest first


_held: dict[Path, _Held] = {}


def _read_lock(lock: Path) -> Optional[dict]:
    """The lock's record, or None when it is gone or cannot be read (taken as stale)."""
    try:
        record = json.loads(lock.read_text())
        int(record["pid"])
        return record if isinstance(record, dict) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _alive(record: dict) -> bool:
    """Whether the run that wrote ``record`` may still be running: on another host
    there is no telling, so yes; here, whether its process exists."""
    if record.get("host") != socket.gethostname():
        return True
    pid = int(record["pid"])
    if pid == os.getpid():      # this process holds no lock there (_held): a leftover
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:             # exists, another user's
        return True
    return True


def _create_lock(lock: Path, text: str) -> bool:
    """Create ``lock`` holding ``text``, atomically (a hard link of a complete file,
    or an exclusive create where links are not supported); False if it exists."""
    tmp = lock.with_name(f"{lock.name}.{os.getpid()}.tmp")   # files.remove_stale_temp_files' pattern
    try:
        tmp.write_text(text)
        try:
            os.link(tmp, lock)
        except FileExistsError:
            return False
        except OSError:
            try:
                handle = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(handle, "w") as out:
                out.write(text)
        return True
    except OSError as error:
        raise UserError(write_error_message(lock, error)) from None
    finally:
        tmp.unlink(missing_ok=True)


def _make_folder(folder: Path) -> list[Path]:
    """Make ``folder`` and its missing parents; return those made, deepest first."""
    missing, here = [], Path(folder)
    while not here.exists() and here != here.parent:
        missing.append(here)
        here = here.parent
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot make the run folder {folder} ({error.strerror or error}); "
                        "choose another --run-dir") from None
    return missing


def _in_use(run_dir: Path, record: dict) -> str:
    started = str(record.get("started", "?"))[:16]       # "2024-05-01 12:03"
    if started[:10] == time.strftime("%Y-%m-%d"):
        started = started[11:]
    host = record.get("host")
    where = "" if host == socket.gethostname() else f" on {host}"
    return (f"{shown(run_dir)} is in use by another run (pid {record['pid']}{where}, started "
            f"{started}); wait for it or choose another --run-dir")


def lock_run_dir(run_dir: Path) -> None:
    """Take RUN_DIR/.lock for this process (made with the folder if missing), taking
    over a stale one; UserError naming the run that holds it. Held until ``release``."""
    key = Path(run_dir).absolute()
    if key in _held:
        return
    created = _make_folder(run_dir)
    lock = Path(run_dir) / LOCK_NAME
    token = secrets.token_hex(8)
    text = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                       "started": time.strftime("%Y-%m-%d %H:%M:%S"), "token": token,
                       "command": shlex.join(["python", Path(sys.argv[0]).name, *sys.argv[1:]])})
    for _ in range(3):
        if _create_lock(lock, text):
            _held[key] = _Held(lock, token, created)
            return
        record = _read_lock(lock)
        if record is not None and _alive(record):
            _remove_folders(created)
            raise UserError(_in_use(run_dir, record))
        lock.unlink(missing_ok=True)    # stale: a killed run's, or unreadable
    raise UserError(f"cannot take {lock}: other runs keep taking it; wait for them or choose "
                    "another --run-dir")


def _remove_folders(folders: list[Path]) -> None:
    for folder in folders:              # deepest first; stop at the first that is not empty
        try:
            folder.rmdir()
        except OSError:
            return


def release() -> None:
    """Give back every run folder this process took: the lock file goes (if it is
    still this process's), and so do the folders made for it if nothing was written."""
    for key, held in list(_held.items()):
        record = _read_lock(held.lock)
        if record is not None and record.get("token") == held.token:
            held.lock.unlink(missing_ok=True)
        _remove_folders(held.created)
        del _held[key]


def _run_released(body: Callable, script: str, args: argparse.Namespace):
    args._script = script
    try:
        return body(args)
    finally:
        release()


def guarded(body: Callable, prog: str) -> Callable:
    """``body`` as a run of the script ``prog``: ``args._script`` names the script
    (``check_script``), and the run folder it claims is released when it ends, by
    return, error, interrupt or SystemExit. Picklable, for --procs's processes."""
    return functools.partial(_run_released, body, Path(prog).stem)


# ----------------------------------------------------------------------------
# Claiming the folder for a run
# ----------------------------------------------------------------------------

def resolve_run_dir(args: argparse.Namespace, default: Path) -> Path:
    """The run folder: --run-dir; else, for --eval-only --checkpoint PATH, the
    checkpoint's folder (its results and figures go beside it); else ``default``."""
    if args.run_dir:
        return Path(args.run_dir)
    if getattr(args, "eval_only", False) and getattr(args, "checkpoint", None):
        return Path(args.checkpoint).parent
    return Path(default)


def claim(args: argparse.Namespace, run_dir: Path, figures: Path) -> None:
    """Take the run folder for this run (rank 0 only), before anything is trained or
    written: the lock, then a new training run is refused where a run is already
    (unless --overwrite, which clears it first), and --eval-only is refused where
    results.json cannot be kept."""
    lock_run_dir(run_dir)
    try:
        if getattr(args, "eval_only", False):
            _existing_results(Path(run_dir) / "results.json")
        elif not getattr(args, "resume", False):
            held = held_run(run_dir)
            smoke = getattr(args, "quick", False) and "run_dir" not in getattr(args, "_explicit", ())
            if held and smoke:  # --quick's own folder under runs/quick/ holds only smoke runs
                print(f"note: --quick starts afresh in {shown(run_dir)} (its smoke-run folder)")
            elif held and not getattr(args, "overwrite", False):
                raise UserError(f"{shown(run_dir)} holds a run ({held}); continue it with "
                                "--resume, start over with --overwrite, or choose another --run-dir")
            if held:
                clear_run(run_dir, figures)
    except BaseException:
        release()
        raise


# ----------------------------------------------------------------------------
# What --eval-only writes, and whose checkpoints a script reads
# ----------------------------------------------------------------------------

def _existing_results(path: Path) -> dict:
    """results.json as a dict ({} when missing); UserError when it cannot be kept."""
    if not path.exists():
        return {}
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        record = error
    if not isinstance(record, dict):
        raise UserError(f"--eval-only keeps the training record in {shown(path)}, but it cannot "
                        "be read as one; move it away or pass --run-dir for the evaluation")
    return record


def with_evaluation(path: Path, results: dict, checkpoint: Path) -> dict:
    """results.json's record as it is (the training run's), with ``results`` of this
    evaluation as its "evaluation": the command, date, checkpoint, then its numbers."""
    provenance = results.get("provenance") or {}
    evaluation = {"command": provenance.get("command"), "date": provenance.get("date"),
                  "checkpoint": str(checkpoint),
                  **{k: v for k, v in results.items() if k != "provenance"},
                  "provenance": provenance}
    return dict(_existing_results(Path(path)), evaluation=evaluation)


def check_script(path: Path, stored: dict, script: Optional[str], doing: str) -> None:
    """UserError when the checkpoint at ``path`` (its run_config ``stored``) was made
    by a script other than ``script``; ``doing`` is "evaluate" or "continue"."""
    made_by = stored.get("script")
    if not script or not made_by or made_by == script:
        return
    other = ("pass a checkpoint of" if doing == "evaluate"
             else "choose another --run-dir for")
    raise UserError(f"{shown(path)} was made by {made_by}.py; {doing} it with that script, or "
                    f"{other} {script}.py")
