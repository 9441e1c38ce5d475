"""Provenance of a run, stored in its results.json: the exact command, the code
version, the machine, the PyTorch version, the date and the wall-clock.

``cli.main.run_main`` calls :func:`note_command` when a script starts; the script
adds ``results["provenance"] = run_provenance()`` before writing its results.
The ranks that ``--procs`` starts inherit the noted command through the
environment (COMMAND_VARIABLE), so they record the script's own command even
when ``main(argv)`` was called from Python.
``reproduce.py`` compares ``argv`` and ``code_version`` to decide whether a
part's results are current.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Sequence

from lstm_ae.engine.runtime import cpu_model
from lstm_ae.files import REPO_ROOT

# Files that do not change what a run computes: editing them keeps results current.
NOT_CODE = ("reproduce.py",                      # runs the parts, writes the page
            "lstm_ae/reporting",                 # figures' looks, the page, this module
            "lstm_ae/datasets/standins.py")      # stand-in data of --quick and the tests
# The experiment scripts: a part's results depend on its own script, not on the others'.
ENTRY_SCRIPTS = ("lstm_ae_toy.py", "lstm_ae_mnist.py", "lstm_ae_snp500.py")
# Flags that do not change a run's results (--resume ends where an uninterrupted run would;
# --overwrite only clears the run folder first).
NEUTRAL_FLAGS = ("--resume", "--overwrite", "--quiet")

_command: dict = {"prog": None, "argv": None, "started": time.monotonic()}


# The noted command, as JSON, for the processes this one starts (a spawned rank
# imports this module afresh); only a direct child of the process that noted it takes
# it, so a value left in a notebook's environment reaches no other run.
# time.monotonic is one clock for the whole machine.
COMMAND_VARIABLE = "LSTM_AE_COMMAND"


def note_command(prog: str, argv: Optional[Sequence[str]]) -> None:
    """Remember the script and its arguments (``None``: sys.argv[1:]), and start the clock."""
    _command.update(prog=prog, argv=list(sys.argv[1:] if argv is None else argv),
                    started=time.monotonic())
    noted = {key: _command[key] for key in ("prog", "argv", "started")}
    os.environ[COMMAND_VARIABLE] = json.dumps(dict(noted, pid=os.getpid()))


def _inherit_command() -> None:
    """In a process that noted no command itself (a rank of --procs), take its parent's."""
    if _command["prog"] is not None or COMMAND_VARIABLE not in os.environ:
        return
    try:
        noted = json.loads(os.environ[COMMAND_VARIABLE])
        if noted["pid"] != os.getppid():
            return
        _command.update(prog=str(noted["prog"]), argv=[str(a) for a in noted["argv"]],
                        started=float(noted["started"]))
    except (ValueError, KeyError, TypeError):
        pass  # not ours to trust: fall back on sys.argv


def note_layout(layout: dict) -> None:
    """Remember the process layout the run trains in (device, processes, threads,
    precision, how each was chosen), for every results.json it writes."""
    _command["layout"] = dict(layout)


def code_files(root: Path = REPO_ROOT, script: Optional[str] = None) -> list[Path]:
    """The files whose bytes decide what a run computes: the top-level scripts and
    models.py, and every module of the lstm_ae package, except NOT_CODE. With
    ``script`` (one of ENTRY_SCRIPTS), the other experiment scripts are left out, so
    a change to one script's recipe leaves the other scripts' results current."""
    root = Path(root)
    files = sorted(root.glob("*.py")) + sorted((root / "lstm_ae").rglob("*.py"))
    others = [name for name in ENTRY_SCRIPTS if script in ENTRY_SCRIPTS and name != script]
    def counted(path: Path) -> bool:
        name = path.relative_to(root).as_posix()
        return not any(name == skip or name.startswith(skip + "/") for skip in (*NOT_CODE, *others))
    return [path for path in files if counted(path)]


def code_version(root: Path = REPO_ROOT, script: Optional[str] = None) -> str:
    """sha256 (first 16 hex digits) over the paths and bytes of ``code_files(root, script)``."""
    digest = hashlib.sha256()
    for path in code_files(root, script):
        name = path.relative_to(root).as_posix()
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return "sha256:" + digest.hexdigest()[:16]


def comparable_argv(argv: Sequence[str]) -> list[str]:
    """argv without the flags that leave results unchanged (NEUTRAL_FLAGS)."""
    return [a for a in argv if a not in NEUTRAL_FLAGS]


def machine() -> dict:
    """{'cpu', 'cores' (usable by this process), 'gpu' (CUDA device name or None), 'summary'}."""
    import torch
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 0
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    cpu = cpu_model()
    summary = f"{cpu}, {cores} cores" + (f"; GPU {gpu}" if gpu else ", no GPU")
    return {"cpu": cpu, "cores": cores, "gpu": gpu, "summary": summary}


def run_provenance() -> dict:
    """What results.json records about the run that wrote it:
    command (shell text), argv (list), code_version (of this script's code),
    machine, torch and python
    versions, date (UTC, when the results were written) and wall_clock_s
    (seconds since the script parsed its flags, in the ranks of --procs too;
    for a run continued with --resume, the last process only)."""
    import torch
    _inherit_command()
    prog = _command["prog"] or Path(sys.argv[0]).name
    argv = _command["argv"] if _command["argv"] is not None else sys.argv[1:]
    return {
        "command": shlex.join(["python", prog, *argv]),
        "argv": argv,
        "code_version": code_version(script=prog),
        "machine": machine(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "wall_clock_s": round(time.monotonic() - _command["started"], 1),
        "layout": _command.get("layout"),
    }
