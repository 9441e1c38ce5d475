"""What every script's ``main`` does: parse and complete the settings, run the
experiment in the process layout it asks for, and end a known problem or an
interrupt in one line.

Exit status: 0 done; 2 a bad flag, file or setting (one line on stderr); 130
or 143 stopped by SIGINT (Ctrl-C) or SIGTERM, with one line saying where it
stopped and the command that continues it (docs/usage.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

from lstm_ae.cli import run_folder, run_layout
from lstm_ae.cli.experiment import default_output_dirs
from lstm_ae.cli.flags import fail, parse_settings
from lstm_ae.cli.interrupts import interruption_line
from lstm_ae.cli.recipes import Recipe
from lstm_ae.engine import distributed
from lstm_ae.errors import Interrupted, UserError, signals_raise_interrupted
from lstm_ae.reporting.provenance import note_command


def run_main(parser: argparse.ArgumentParser, recipe: Recipe,
             body: Callable[[argparse.Namespace], dict], argv: Optional[Sequence[str]] = None,
             **options) -> dict:
    """``body(args)`` with the settings of ``argv`` (default: the command line); the
    options are ``run_experiment``'s.

    A torchrun rank started from the command line ends with ``distributed.leave``
    and the exit status it would have had (0 done, 2 refused, 130/143 stopped):
    the interpreter's own teardown aborted now and then after the work was done.
    """
    if not (argv is None and distributed.under_torchrun()):
        return run_experiment(parser, recipe, body, argv, **options)
    distributed.prepare_to_leave()
    try:
        run_experiment(parser, recipe, body, argv, **options)
        status = 0
    except SystemExit as stop:
        status = stop.code if isinstance(stop.code, int) else 1
    distributed.leave(status)


def run_experiment(parser: argparse.ArgumentParser, recipe: Recipe,
             body: Callable[[argparse.Namespace], dict], argv: Optional[Sequence[str]] = None,
             experiment: Union[str, Callable[[argparse.Namespace], str]] = "",
             checkpoints: Sequence[str] = ("final.pt",),
             check: Optional[Callable[[argparse.Namespace], None]] = None,
             probe_shape: Optional[Callable[[argparse.Namespace], object]] = None,
             allow_bf16: Union[bool, Callable[[argparse.Namespace], bool]] = False) -> dict:
    """``body(args)`` with the settings of ``argv`` (default: the command line).

    ``experiment`` names the default run folder (runs/<experiment>/), a string or a
    function of the settings; ``checkpoints`` are the files an interrupted run keeps,
    in the order the run writes them; ``check`` checks the input paths quickly.
    ``probe_shape(args)`` is the model and batch that --procs/--precision auto measure
    on the CPU; ``allow_bf16`` (or a function of the settings) whether auto may pick
    bf16, i.e. whether bf16 was checked not to cost this part accuracy (run_layout.py).
    """
    typed = sys.argv[0] if argv is None else parser.prog  # the script as the user named it
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_settings(parser, recipe, argv, check)
    note_command(parser.prog, argv)  # provenance for results.json
    name = experiment(args) if callable(experiment) else experiment
    args.run_dir = run_folder.resolve_run_dir(args, default_output_dirs(name, args.quick)[1])
    try:
        with signals_raise_interrupted():  # the run folder's lock is released at the body's end
            run_layout.decide(args, probe_shape, allow_bf16(args) if callable(allow_bf16)
                              else allow_bf16)
            return distributed.run(run_folder.guarded(body, parser.prog), args)
    except UserError as error:
        fail(parser, str(error))   # one line, from rank 0 alone under torchrun
    except Interrupted as stop:
        if distributed.env_layout().is_main:
            print(interruption_line(str(stop), typed, argv, Path(args.run_dir), checkpoints),
                  file=sys.stderr, flush=True)
        raise SystemExit(stop.exit_status) from None
    finally:
        distributed.shutdown()
