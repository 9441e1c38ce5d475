"""The one line a stopped run prints: where it stopped and the exact command
that continues it.

A run stopped by SIGINT (Ctrl-C) or SIGTERM keeps its last complete
checkpoint (checkpoints and grid CSVs are written atomically, so an
interrupted write leaves the previous one in place) and the grid points it
finished; ``--resume`` continues from there.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Optional, Sequence

import torch

from lstm_ae.engine import distributed
from lstm_ae.engine.grid_search import read_grid_csv


def checkpoint_epochs(path: Path) -> Optional[tuple[int, int]]:
    """(epochs done, epochs planned) of the checkpoint at ``path``, or None when there
    is none that can be read."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        return int(checkpoint["epoch"]), int(checkpoint["train_config"]["epochs"])
    except Exception:  # no checkpoint, or one cut short: the line says less
        return None


def progress_text(run_dir: Optional[Path], checkpoints: Sequence[str] = ("final.pt",)) -> str:
    """'after epoch 3 of 20 of the final training (runs/toy/final.pt kept)', or what
    the grid CSV holds, or '' when nothing was saved yet."""
    if run_dir is None:
        return ""
    for name in reversed(checkpoints):     # the last model a run trains is the furthest
        epochs = checkpoint_epochs(Path(run_dir) / name)
        if epochs:
            return (f"after epoch {epochs[0]} of {epochs[1]} of the final training "
                    f"({Path(run_dir) / name} kept)")
    rows = read_grid_csv(Path(run_dir) / "grid.csv") if (Path(run_dir) / "grid.csv").exists() else []
    if rows:
        return f"during the grid search ({len(rows)} point(s) done, in {Path(run_dir) / 'grid.csv'})"
    begun = [folder for folder in sorted(Path(run_dir).glob("latent_*")) if folder.is_dir()
             and ((folder / "results.json").exists() or progress_text(folder, checkpoints))]
    if begun:   # a --latent-sweep: one run folder per latent size
        return f"during the latent sweep ({len(begun)} size(s) begun, in {Path(run_dir)}/latent_K/)"
    return ""


def launcher_words() -> list[str]:
    """How this process was started: ``python``, or under torchrun on one machine
    ``torchrun --standalone --nproc-per-node N`` (across machines, torchrun's own
    flags cannot be known here: ``torchrun ...``)."""
    if not distributed.under_torchrun():
        return ["python"]
    layout = distributed.env_layout()
    if layout.local_world_size == layout.world_size:
        return ["torchrun", "--standalone", "--nproc-per-node", str(layout.local_world_size)]
    return ["torchrun", "..."]


def resume_command(prog: str, argv: Sequence[str]) -> str:
    """The command as it was typed, with --resume added once (and --overwrite,
    which would start afresh and is refused with --resume, left out)."""
    args = [a for a in argv if a != "--overwrite"] + ([] if "--resume" in argv else ["--resume"])
    return shlex.join([*launcher_words(), prog, *args])


def interruption_line(signal_name: str, prog: str, argv: Sequence[str],
                      run_dir: Optional[Path], checkpoints: Sequence[str] = ("final.pt",)) -> str:
    where = progress_text(run_dir, checkpoints)
    if not where:
        return (f"stopped by {signal_name} before anything was saved; start again with: "
                + shlex.join([*launcher_words(), prog, *argv]))
    return f"stopped by {signal_name} {where}; continue with: {resume_command(prog, argv)}"
