"""Each script's settings in one table: its defaults, the defaults that depend on
one flag (MNIST's --input), and what --quick changes, applied by one function.

The parsers have no defaults of their own (``argument_default=SUPPRESS``), so a
parsed namespace holds exactly the flags given on the command line; ``apply``
fills the rest from the recipe. Order, first match wins: a flag given
explicitly, the --quick value, the value for the mode, the script's default,
the common default. ``--help`` prints the same values (``default_text``).
"""

from __future__ import annotations

import argparse
import os
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from lstm_ae.errors import UserError


@dataclass(frozen=True)
class FromEnv:
    """A default read from an environment variable when the run starts."""
    variable: str
    fallback: Any
    convert: Callable[[str], Any] = str
    shown: Optional[str] = None       # how --help names the fallback

    def value(self):
        text = os.environ.get(self.variable)
        if text is None:
            return self.fallback
        try:
            return self.convert(text)
        except (ValueError, argparse.ArgumentTypeError) as error:
            raise UserError(f"${self.variable}={text!r}: {error}; fix or unset it") from None


@dataclass(frozen=True)
class Recipe:
    defaults: Mapping[str, Any]                        # this script's defaults
    quick: Mapping[str, Any] = field(default_factory=dict)   # --quick overrides
    mode_flag: Optional[str] = None                    # the flag that picks a column of modes
    modes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    common: Mapping[str, Any] = field(default_factory=dict)  # the common flags' defaults

    def default(self, dest: str, mode: Optional[str] = None):
        """The default of ``dest`` for ``mode`` (without --quick)."""
        for table in (self.modes.get(mode, {}), self.defaults, self.common):
            if dest in table:
                value = table[dest]
                return value.value() if isinstance(value, FromEnv) else value
        raise KeyError(f"the recipe has no default for {dest}")

    def default_text(self, dest: str) -> str:
        """'(default: 32 48)', '(default: 128 for row, 64 for pixel)', '(default: $VAR, else x)'."""
        per_mode = {m: t[dest] for m, t in self.modes.items() if dest in t}
        if per_mode:
            shown = ", ".join(f"{show(v)} for {m}" for m, v in per_mode.items())
        else:
            value = next(t[dest] for t in (self.defaults, self.common) if dest in t)
            shown = (f"${value.variable}, else {value.shown or show(value.fallback)}"
                     if isinstance(value, FromEnv) else show(value))
        return f"(default: {shown})"

    def quick_text(self) -> str:
        return " ".join(f"{flag_name(k)} {show(v)}" for k, v in self.quick.items())


def flag_name(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def show(value) -> str:
    """A value as one types it: lists space-separated, None as none, booleans on/off."""
    if isinstance(value, (list, tuple)):
        return " ".join(show(v) for v in value)
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def apply(args: argparse.Namespace, recipe: Recipe) -> argparse.Namespace:
    """Fill every flag of the recipe not given on the command line;
    ``args._explicit`` records the ones that were given."""
    explicit = frozenset(vars(args))
    quick = getattr(args, "quick", False)
    mode = None
    if recipe.mode_flag:
        mode = getattr(args, recipe.mode_flag, None) or recipe.default(recipe.mode_flag)
    dests = {*recipe.common, *recipe.defaults, *(k for t in recipe.modes.values() for k in t)}
    for dest in sorted(dests):
        if dest in explicit:
            continue
        value = recipe.quick[dest] if quick and dest in recipe.quick else recipe.default(dest, mode)
        setattr(args, dest, value)
    args._explicit = explicit
    return args


def args_as_dict(args: argparse.Namespace) -> dict:
    """The settings with paths as text, for config.json, checkpoints and results files
    (attributes starting with ``_`` are bookkeeping, never stored)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
            if not k.startswith("_")}


def settings_record(args: argparse.Namespace) -> dict:
    """The resolved settings as JSON values; flags given on the command line listed
    under ``explicit``."""
    return {"settings": dict(sorted(args_as_dict(args).items())),
            "explicit": sorted(getattr(args, "_explicit", ()))}


def settings_lines(args: argparse.Namespace, width: int = 100) -> str:
    """The resolved settings in a few lines, flags given on the command line marked *."""
    explicit = getattr(args, "_explicit", frozenset())
    items = [f"{flag_name(k)[2:]}={show(v).replace(' ', ',')}" + ("*" if k in explicit else "")
             for k, v in sorted(vars(args).items()) if not k.startswith("_")]
    return textwrap.fill(" ".join(items), width, initial_indent="settings (* given): ",
                         subsequent_indent="  ", break_on_hyphens=False)
