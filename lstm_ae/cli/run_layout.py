"""The layout a run trains in (device, processes x threads per process, precision),
decided before its processes start, and the line and record that say which it is
and why.

``decide`` (called by ``main.run_main`` before ``distributed.run``):

* on the CPU, with ``--procs auto`` and/or ``--precision auto``: the layout
  measured fastest on the script's own model and batch (``probe_shape(args)``;
  ``layout.choose_layout``, cached per machine and shape) is written into
  ``args.procs``, ``args.precision`` and ``args.threads``;
* the flags fix the layout: nothing is measured;
* ``--eval-only``: one process, nothing measured;
* under torchrun: its processes, nothing measured;
* on CUDA: one process per GPU; on MPS one.

Where nothing was measured, ``--precision auto`` is bf16 only where it runs and
the part allows it (``runtime.resolve_precision``, in each process).
``allow_bf16`` says whether bf16 was checked not to cost the part accuracy: auto
never picks bf16 where it was not.
"""

from __future__ import annotations

import argparse
from typing import Callable, Optional

import torch

from lstm_ae.engine import distributed, layout
from lstm_ae.engine.layout import Candidate, ProbeShape
from models import resolve_device

NOTE = "_layout"          # args attribute: how the layout was chosen (bookkeeping, never stored)
MEASURED = ("measured", "cached measurement")


def decide(args: argparse.Namespace, probe_shape: Optional[Callable[[argparse.Namespace],
                                                                  ProbeShape]],
           allow_bf16: bool, log=print) -> None:
    """Choose the layout of the run ``args`` describes (see the module's text)."""
    asked = {"procs": str(args.procs), "precision": args.precision}
    note = {"asked": asked, "allow_bf16": bool(allow_bf16), "reason": None, "rates": {}}
    setattr(args, NOTE, note)
    if ("auto" not in asked.values() or distributed.under_launcher()
            or getattr(args, "eval_only", False) or resolve_device(args.device).type != "cpu"):
        return
    shape = probe_shape(args) if probe_shape else None
    choice = layout.choose_layout(shape, asked["procs"], asked["precision"], args.threads,
                                  bool(allow_bf16), log)
    if choice.reason not in MEASURED:  # one candidate only: the rule gives the same
        return
    args.procs = str(choice.candidate.procs)
    args.precision = choice.candidate.precision
    args.threads = choice.candidate.threads
    note.update(reason=choice.reason, rates=dict(choice.rates), chosen=choice.candidate.label)


def allows_bf16(args: argparse.Namespace) -> bool:
    """Whether ``--precision auto`` may pick bf16 for this run (decided by ``decide``)."""
    return bool(getattr(args, NOTE, {}).get("allow_bf16", False))


def _chosen_by(args: argparse.Namespace, flag: str, note: dict) -> str:
    """How ``flag`` got its value: measured, cached measurement, rule (auto with nothing
    measured), given (on the command line) or default (the recipe's fixed value)."""
    asked = note.get("asked", {}).get(flag, str(getattr(args, flag)))
    if asked == "auto":
        return note["reason"] if note.get("reason") in MEASURED else "rule"
    return "given" if flag in getattr(args, "_explicit", ()) else "default"


def layout_record(args: argparse.Namespace, ctx) -> dict:
    """What results.json's provenance stores about the layout of the run ``ctx``
    (a RunContext): where and how it trains, and why."""
    note = getattr(args, NOTE, {})
    launcher = ("torchrun" if distributed.under_torchrun()
                else "--procs" if ctx.layout.distributed else "one process")
    by = {flag: _chosen_by(args, flag, note) for flag in ("procs", "precision")}
    if launcher == "torchrun":
        by["procs"] = "torchrun"
    reason = next((r for r in (*MEASURED, "rule") if r in by.values()), "given")
    record = {"device": str(ctx.device), "processes": ctx.layout.world_size,
              "threads_per_process": torch.get_num_threads(), "precision": ctx.precision,
              "launcher": launcher, "reason": reason,
              "processes_chosen_by": by["procs"], "precision_chosen_by": by["precision"]}
    if reason in MEASURED:
        record["probe_samples_per_s"] = dict(note["rates"])
        record["probe_choice"] = note["chosen"]
    return record


def layout_line(record: dict) -> str:
    """The line every run prints at start, e.g. 'layout: cpu, 2 processes x 1 thread,
    fp32 (measured: 333 samples/s; 1x2 fp32 180)' or 'layout: cpu, 1 process x 2
    threads, fp32 (given; processes: given; precision: default)'."""
    candidate = Candidate(record["processes"], record["threads_per_process"], record["precision"])
    head = f"layout: {record['device']}, {candidate.words}"
    rates = record.get("probe_samples_per_s")
    if not rates:
        return (f"{head} ({record['reason']}; processes: {record['processes_chosen_by']}; "
                f"precision: {record['precision_chosen_by']})")
    chosen = record.get("probe_choice", candidate.label)
    others = "; ".join(f"{label} {rate:,.0f}" for label, rate in
                       sorted(rates.items(), key=lambda item: -item[1]) if label != chosen)
    return f"{head} ({record['reason']}: {rates[chosen]:,.0f} samples/s; {others})"
