"""Command-line pieces shared by the three scripts: flag types that reject
impossible values, the common flags, and clean one-line errors."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, Optional

from lstm_ae.cli import run_folder
from lstm_ae.engine import distributed
from lstm_ae.errors import UserError, one_line
from lstm_ae.files import REPO_ROOT
from models import DEVICE_CHOICES
from lstm_ae.reporting.provenance import note_command
from lstm_ae.engine.training import LR_SCHEDULES, OPTIMIZERS
from lstm_ae.engine.runtime import PRECISIONS



# ----------------------------------------------------------------------------
# Flag types: each rejects impossible values with one clear line
# ----------------------------------------------------------------------------

def _number(text: str, convert, minimum, inclusive: bool):
    """Parse text with convert (int or float); reject non-finite values and values
    below minimum (or equal to it when not inclusive), each with one clear line."""
    try:
        value = convert(text)
    except ValueError:
        kind = "a whole number" if convert is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    if value < minimum or (value == minimum and not inclusive):
        bound = f"at least {minimum}" if inclusive else f"greater than {minimum}"
        raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
    return value


def positive_int(text: str) -> int:
    return _number(text, int, 1, inclusive=True)


def non_negative_int(text: str) -> int:
    return _number(text, int, 0, inclusive=True)


def positive_float(text: str) -> float:
    return _number(text, float, 0, inclusive=False)


def non_negative_float(text: str) -> float:
    return _number(text, float, 0, inclusive=True)


def fraction(text: str) -> float:
    value = non_negative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def procs_value(text: str) -> str:
    """--procs: 'auto' or a whole number of at least 1 (kept as text)."""
    if text.lower() == "auto":
        return "auto"
    try:
        return str(positive_int(text))
    except argparse.ArgumentTypeError as error:  # the value may come from the environment
        raise argparse.ArgumentTypeError(f"{error} (from --procs or $LSTM_AE_PROCS; "
                                         "give auto or a number of processes)") from None


def clip_value(text: str) -> Optional[float]:
    """A gradient-norm limit, or 'none' for no clipping."""
    if text.lower() == "none":
        return None
    return positive_float(text)


# ----------------------------------------------------------------------------
# Flags every script has
# ----------------------------------------------------------------------------

def add_common_flags(parser: argparse.ArgumentParser, *, experiment: str, quick: str,
                     hidden_size: list, lr: list, batch_size: list, clip: list, num_layers: list,
                     epochs: int, grid_epochs: int, lr_schedule: str, precision: str,
                     workers: int) -> None:
    """Model, training, grid, device and output flags, with this script's defaults;
    ``quick`` describes what --quick runs."""
    model = parser.add_argument_group("model and grid (flags with several values are searched)")
    model.add_argument("--hidden-size", type=positive_int, nargs="+", default=hidden_size,
                       help=f"LSTM hidden size = latent size (default: {_show(hidden_size)})")
    model.add_argument("--num-layers", type=positive_int, nargs="+", default=num_layers,
                       help=f"stacked LSTM layers (default: {_show(num_layers)})")
    model.add_argument("--lr", type=positive_float, nargs="+", default=lr,
                       help=f"peak learning rate (default: {_show(lr)})")
    model.add_argument("--batch-size", type=positive_int, nargs="+", default=batch_size,
                       help=f"mini-batch size (default: {_show(batch_size)})")
    model.add_argument("--clip", type=clip_value, nargs="+", default=clip,
                       help=f"gradient-norm clipping, a number or 'none' (default: {_show(clip)})")
    train = parser.add_argument_group("training")
    train.add_argument("--optimizer", choices=OPTIMIZERS, default="adam",
                       help="optimizer (default: adam)")
    train.add_argument("--weight-decay", type=non_negative_float, default=0.0,
                       help="weight decay (default: 0)")
    train.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=lr_schedule,
                       help=f"learning-rate schedule over the run (default: {lr_schedule})")
    train.add_argument("--warmup", type=fraction, default=0.0,
                       help="fraction of the steps spent warming the learning rate up (default: 0)")
    train.add_argument("--grid-epochs", type=positive_int, default=grid_epochs,
                       help=f"epochs per grid point (default: {grid_epochs})")
    train.add_argument("--epochs", type=positive_int, default=epochs,
                       help=f"epochs for the final training of the best point (default: {epochs})")
    train.add_argument("--seed", type=int, default=0,
                       help="seed of model initialisation and batch order (default: 0)")
    train.add_argument("--resume", action="store_true",
                       help="skip grid points already in the grid CSV and continue the final "
                            "training from its checkpoint; a run of other data is refused "
                            "(default: start afresh)")
    run_folder.add_overwrite_flag(train)
    run = parser.add_argument_group("device and outputs")
    run.add_argument("--device", choices=DEVICE_CHOICES, default="auto",
                     help="where to train; auto picks CUDA, then MPS, then the CPU (default: auto)")
    run.add_argument("--precision", choices=PRECISIONS, default=precision,
                     help="bf16 autocast or fp32; auto takes bf16 where it runs and was measured "
                          f"faster (distributed.choose_precision) (default: {precision})")
    run.add_argument("--threads", type=positive_int, default=None,
                     help="CPU threads for training (default: PyTorch's choice, all cores)")
    procs = os.environ.get("LSTM_AE_PROCS", "auto")
    run.add_argument("--procs", type=procs_value, default=procs,
                     help="data-parallel training processes on this machine: a number, or auto, "
                          "the layout measured fastest (one per GPU; on a CPU with native bf16 "
                          "one one-thread process per core, else one process); under torchrun "
                          f"the launcher decides (default: $LSTM_AE_PROCS, else auto; now {procs})")
    run.add_argument("--workers", type=positive_int, default=workers,
                     help="grid points trained in parallel on the CPU, one thread each "
                          f"(default: {workers})")
    run.add_argument("--figures-dir", type=Path, default=None,
                     help="where figures go; --figures-dir figures writes the committed "
                          "reference figures (default: RUN_DIR/figures/)")
    run.add_argument("--run-dir", type=Path, default=None,
                     help="the run folder, one run at a time: grid CSV, results JSON, checkpoints "
                          f"(default: runs/{experiment}/; with --quick, runs/quick/{experiment}/; "
                          "with --eval-only --checkpoint PATH, PATH's folder)")
    run.add_argument("--eval-only", action="store_true",
                     help="evaluate --checkpoint on the test split and redraw its figures, "
                          "adding an \"evaluation\" record to RUN_DIR/results.json (default: off)")
    run.add_argument("--checkpoint", type=Path, default=None,
                     help="checkpoint for --eval-only (default: RUN_DIR/final.pt)")
    run.add_argument("--quick", action="store_true",
                     help=f"smoke run, end to end: {quick}; its figures and results go to "
                          f"runs/quick/{experiment}/ unless --figures-dir or --run-dir say "
                          "otherwise (default: off)")
    run.add_argument("--quiet", action="store_true",
                     help="print no per-epoch lines, only the summary (default: off)")


def _show(values: list) -> str:
    return " ".join("none" if v is None else f"{v:g}" if isinstance(v, float) else str(v)
                    for v in values)


# ----------------------------------------------------------------------------
# Errors and outputs
# ----------------------------------------------------------------------------

# The grid axes of add_common_flags: each value is one more grid point, so a value
# given twice would train the same point twice.
GRID_AXES = ("hidden_size", "num_layers", "lr", "batch_size", "clip")


def _fail(parser: argparse.ArgumentParser, message: str) -> None:
    print(f"{parser.prog}: error: {one_line(message)}", file=sys.stderr)
    raise SystemExit(2)


def explicit_flags(parser: argparse.ArgumentParser, argv: Optional[list]) -> frozenset:
    """The dests of the flags given in argv (argv already parsed once without error)."""
    saved = [(action, action.default) for action in parser._actions]
    try:
        for action, _ in saved:
            action.default = argparse.SUPPRESS
        return frozenset(vars(parser.parse_args(argv)))
    finally:
        for action, default in saved:
            action.default = default


def flag_name(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def check_flag_pairs(args: argparse.Namespace) -> None:
    """Refuse common flags that cannot work together, and a grid axis that lists one
    value twice (``--lr 1e-3 0.001``, which would train the same point twice)."""
    if getattr(args, "checkpoint", None) is not None and not getattr(args, "eval_only", False):
        raise UserError("--checkpoint is read only with --eval-only; add --eval-only, or drop "
                        "--checkpoint (training writes RUN_DIR/final.pt)")
    if getattr(args, "eval_only", False) and getattr(args, "resume", False):
        raise UserError("--eval-only trains nothing, so --resume has nothing to continue; "
                        "give one of them")
    for dest in GRID_AXES:
        values = getattr(args, dest, None) or []
        seen = []
        for value in values:
            if value in seen:
                shown = "none" if value is None else f"{value:g}" if isinstance(value, float) else value
                raise UserError(f"{flag_name(dest)} lists {shown} twice; give each value once")
            seen.append(value)


def run_main(parser: argparse.ArgumentParser, body: Callable[[argparse.Namespace], dict],
             argv: Optional[list] = None, quick: Optional[dict] = None) -> dict:
    """Parse argv and run body; known problems (a bad flag, a UserError) end as one
    line on stderr, at most io_utils.MAX_MESSAGE characters, and exit status 2.

    With --quick, the ``quick`` values replace the defaults of flags not given.
    ``args._explicit`` holds the dests given on the command line (flags starting
    with ``_`` are never stored in checkpoints).
    """
    parser.error = lambda message: _fail(parser, f"{message} (see --help)")
    args = parser.parse_args(argv)
    args._explicit = explicit_flags(parser, argv)
    note_command(parser.prog, argv)  # provenance for results.json (run_info.py)
    if getattr(args, "quick", False) and quick:
        for name, value in quick.items():
            if name not in args._explicit:
                setattr(args, name, value)
    try:
        check_flag_pairs(args)
        return distributed.run(run_folder.guarded(body, parser.prog), args)  # lock released at its end
    except UserError as error:
        if distributed.env_layout().is_main:  # under torchrun every rank meets it: one line
            _fail(parser, str(error))
        raise SystemExit(2) from None
    finally:
        distributed.shutdown()


def args_as_dict(args: argparse.Namespace) -> dict:
    """The parsed flags with paths as strings, for checkpoints and results files."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
            if not k.startswith("_")}
