"""Command-line pieces shared by the three scripts: flag types that reject
impossible values, the common flags with their defaults, and the parse that
ends a bad command line in one line. Nothing here imports torch: a script
refuses a mistyped flag before torch loads."""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from lstm_ae.choices import DEVICE_CHOICES, LR_SCHEDULES, OPTIMIZERS, PRECISIONS
from lstm_ae.cli import recipes
from lstm_ae.cli.recipes import FromEnv, Recipe, flag_name
from lstm_ae.cli.recipes import args_as_dict  # noqa: F401  (the scripts import it from here)
from lstm_ae.errors import UserError, a_secondary_rank, one_line
from lstm_ae.files import REPO_ROOT  # noqa: F401  (scripts name their default paths by it)

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


def precision_value(text: str) -> str:
    """--precision: one of PRECISIONS (the value may come from $LSTM_AE_PRECISION)."""
    if text.lower() not in PRECISIONS:
        raise argparse.ArgumentTypeError(f"the precision must be one of {', '.join(PRECISIONS)}")
    return text.lower()


def precision_default(fallback: str) -> FromEnv:
    """A script's --precision default: $LSTM_AE_PRECISION where it is set, else ``fallback``."""
    return FromEnv("LSTM_AE_PRECISION", fallback, precision_value)


def clip_value(text: str) -> Optional[float]:
    """A gradient-norm limit, or 'none' for no clipping."""
    if text.lower() == "none":
        return None
    return positive_float(text)

# ----------------------------------------------------------------------------
# Flags every script has
# ----------------------------------------------------------------------------

# Defaults of the common flags; a script's Recipe overrides any of them.
COMMON_DEFAULTS = dict(
    hidden_size=[64], num_layers=[1], lr=[1e-3], batch_size=[64], clip=[1.0],
    optimizer="adam", weight_decay=0.0, lr_schedule="cosine", warmup=0.0, grid_epochs=5,
    epochs=20, seed=0, resume=False, device="auto", precision=precision_default("fp32"), threads=None,
    procs=FromEnv("LSTM_AE_PROCS", "auto", procs_value), workers=1, figures_dir=None,
    run_dir=None, overwrite=False, eval_only=False, checkpoint=None, quick=False, quiet=False)


def new_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser without defaults: the namespace it returns holds only the flags
    given, and recipes.apply fills in the rest."""
    return argparse.ArgumentParser(prog=prog, description=description,
                                   argument_default=argparse.SUPPRESS)


def add_setting(group, recipe: Recipe, flag: str, help: str, **kwargs) -> None:
    """``group.add_argument(flag, ...)`` with the recipe's default named in the help."""
    dest = flag[2:].replace("-", "_")
    group.add_argument(flag, help=f"{help} {recipe.default_text(dest)}", **kwargs)


def add_common_flags(parser: argparse.ArgumentParser, recipe: Recipe, experiment: str) -> None:
    """Model and grid, training, device and output flags, defaults from ``recipe``."""
    _add_model_flags(parser.add_argument_group(
        "model and grid (flags with several values are searched)"), recipe)
    _add_training_flags(parser.add_argument_group("training"), recipe)
    _add_run_flags(parser.add_argument_group("device and outputs"), recipe, experiment)


def _add_model_flags(group, recipe: Recipe) -> None:
    add_setting(group, recipe, "--hidden-size", "LSTM hidden size = latent size", type=positive_int,
                nargs="+")
    add_setting(group, recipe, "--num-layers", "stacked LSTM layers", type=positive_int, nargs="+")
    add_setting(group, recipe, "--lr", "peak learning rate", type=positive_float, nargs="+")
    add_setting(group, recipe, "--batch-size", "mini-batch size", type=positive_int, nargs="+")
    add_setting(group, recipe, "--clip", "gradient-norm clipping, a number or 'none'",
                type=clip_value, nargs="+")


def _add_training_flags(group, recipe: Recipe) -> None:
    add_setting(group, recipe, "--optimizer", "optimizer", choices=OPTIMIZERS)
    add_setting(group, recipe, "--weight-decay", "weight decay", type=non_negative_float)
    add_setting(group, recipe, "--lr-schedule", "learning-rate schedule over the run",
                choices=LR_SCHEDULES)
    add_setting(group, recipe, "--warmup", "fraction of the steps spent warming the learning "
                "rate up", type=fraction)
    add_setting(group, recipe, "--grid-epochs", "epochs per grid point", type=positive_int)
    add_setting(group, recipe, "--epochs", "epochs for the final training of the best point",
                type=positive_int)
    add_setting(group, recipe, "--seed", "seed of model initialisation and batch order", type=int)
    add_setting(group, recipe, "--resume", "skip grid points already in the grid CSV and "
                "continue the final training from its checkpoint; a run of other data is "
                "refused", action="store_true")
    add_setting(group, recipe, "--overwrite", "start afresh in a --run-dir that holds a run, "
                "removing its checkpoints, grid CSV, results and RUN_DIR/figures first (off: a "
                "new training run there is refused)", action="store_true")


def _add_run_flags(group, recipe: Recipe, experiment: str) -> None:
    add_setting(group, recipe, "--device", "where to train; auto picks CUDA, then MPS, then the "
                "CPU", choices=DEVICE_CHOICES)
    add_setting(group, recipe, "--precision", "bf16 autocast or fp32; auto takes bf16 where it "
                "runs and was measured faster (docs/layout.md)", choices=PRECISIONS)
    add_setting(group, recipe, "--threads", "CPU threads per training process (none: PyTorch's "
                "choice, all cores)", type=positive_int)
    add_setting(group, recipe, "--procs", "data-parallel training processes on this machine: a "
                "number, or auto, the layout measured fastest here (docs/layout.md); under "
                "torchrun the launcher decides", type=procs_value)
    add_setting(group, recipe, "--workers", "grid points trained in parallel on the CPU, one "
                "thread each", type=positive_int)
    add_setting(group, recipe, "--figures-dir", "where figures go; --figures-dir figures writes "
                "the committed reference figures (none: RUN_DIR/figures/)", type=Path)
    add_setting(group, recipe, "--run-dir", "the run folder, one run at a time: config.json, "
                f"grid CSV, results JSON, checkpoints (none: runs/{experiment}/; with --quick, "
                f"runs/quick/{experiment}/; with --eval-only --checkpoint PATH, PATH's folder)",
                type=Path)
    add_setting(group, recipe, "--eval-only", "evaluate --checkpoint on the test split and "
                "redraw its figures, adding an \"evaluation\" record to RUN_DIR/results.json",
                action="store_true")
    add_setting(group, recipe, "--checkpoint", "checkpoint for --eval-only (none: "
                "RUN_DIR/final.pt)", type=Path)
    add_setting(group, recipe, "--quick", f"smoke run, end to end, with {recipe.quick_text()}; "
                f"outputs under runs/quick/{experiment}/", action="store_true")
    add_setting(group, recipe, "--quiet", "print no per-epoch lines, only the summary",
                action="store_true")


# ----------------------------------------------------------------------------
# Parsing: one line for a bad command line
# ----------------------------------------------------------------------------

# The grid axes of add_common_flags: each value is one more grid point, so a value
# given twice would train the same point twice.
GRID_AXES = ("hidden_size", "num_layers", "lr", "batch_size", "clip")


# How long a rank other than 0 waits before it exits on bad input: torchrun stops
# every rank as soon as one exits, so a rank that left at once could stop rank 0
# before it printed the line. torchrun ends the wait when rank 0 exits.
SECONDARY_RANK_GRACE_S = 10.0


def fail(parser: argparse.ArgumentParser, message: str) -> None:
    """Print ``PROG: error: message`` as one line and exit with status 2; under
    torchrun only rank 0 prints it (every rank meets the same bad input), and the
    other ranks leave after rank 0 has had time to print it."""
    if a_secondary_rank():
        time.sleep(SECONDARY_RANK_GRACE_S)
    else:
        print(f"{parser.prog}: error: {one_line(message)}", file=sys.stderr)
    raise SystemExit(2)


def closest_flags(parser: argparse.ArgumentParser, message: str) -> str:
    """' (did you mean --hidden-size?)' for each unrecognised flag in an argparse message."""
    if "unrecognized arguments" not in message:
        return ""
    known = set(re.findall(r"--[a-z][a-z0-9-]*", parser.format_help()))
    hints = []
    for typed in re.findall(r"--[A-Za-z0-9_-]+", message.split("unrecognized arguments:")[1]):
        match = difflib.get_close_matches(typed.split("=")[0].replace("_", "-").lower(), known, 1, 0.6)
        if match:
            hints.append(f"{typed}: did you mean {match[0]}?")
    return f" ({'; '.join(hints)})" if hints else ""


def parse_settings(parser: argparse.ArgumentParser, recipe: Recipe,
                   argv: Optional[Sequence[str]] = None,
                   check: Optional[Callable[[argparse.Namespace], None]] = None) -> argparse.Namespace:
    """The command line parsed and completed from the recipe; a bad flag, value or
    pair of flags, or a UserError of ``check`` (quick checks of the input paths),
    ends in one line on stderr and exit status 2."""
    parser.error = lambda message: fail(
        parser, f"{message}{closest_flags(parser, message)} (see --help)")
    args = parser.parse_args(argv)
    try:
        recipes.apply(args, recipe)
        check_flag_pairs(args)
        if check:
            check(args)
    except UserError as error:
        fail(parser, str(error))
    return args


def check_flag_pairs(args: argparse.Namespace) -> None:
    """Refuse common flags that cannot work together, and a grid axis that lists one
    value twice (``--lr 1e-3 0.001``, which would train the same point twice)."""
    if getattr(args, "checkpoint", None) is not None and not getattr(args, "eval_only", False):
        raise UserError("--checkpoint is read only with --eval-only; add --eval-only, or drop "
                        "--checkpoint (training writes RUN_DIR/final.pt)")
    checkpoint = getattr(args, "checkpoint", None)
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise UserError(f"--checkpoint {checkpoint} does not exist; train first or pass the "
                        "path of a final.pt")
    if getattr(args, "eval_only", False) and getattr(args, "resume", False):
        raise UserError("--eval-only trains nothing, so --resume has nothing to continue; "
                        "give one of them")
    if getattr(args, "overwrite", False) and getattr(args, "resume", False):
        raise UserError("--overwrite starts the run afresh and --resume continues it; give one "
                        "of them")
    if getattr(args, "overwrite", False) and getattr(args, "eval_only", False):
        raise UserError("--eval-only trains nothing, so --overwrite has nothing to start afresh; "
                        "give one of them")
    for dest in GRID_AXES:
        values = getattr(args, dest, None) or []
        seen = []
        for value in values:
            if value in seen:
                raise UserError(f"{flag_name(dest)} lists {recipes.show(value)} twice; "
                                "give each value once")
            seen.append(value)
