"""Regenerate the report with one command: every part's documented command in
order (toy, MNIST row by row, MNIST pixel by pixel, S&P 500), then RESULTS.md
from their results.json files.

    python reproduce.py --data path/to/prices.csv.gz   # everything (about 1.5 h on 2 CPU cores)
    python reproduce.py --parts toy mnist_row          # a subset
    python reproduce.py --quick                        # a smoke run of all of it into runs/quick/
    python reproduce.py --page-only                    # rewrite RESULTS.md from the results as they are

Each part runs as its own process (``sys.executable SCRIPT ...``). A part whose
results.json was written by the same command and the same code
(provenance.code_version: the library, models.py and the part's own script) is
skipped, so a change to one script's recipe reruns that script's parts only;
``--force`` reruns it. A part that was started but did not finish continues with
the script's ``--resume``.
``--quick`` runs each script's ``--quick`` on small stand-in data (synthetic
digits and prices) unless LSTM_AE_MNIST_DIR / --data give the real data; it
writes under --out (default runs/quick/, ignored by git), never to figures/ or
RESULTS.md: each part in OUT/<part>/ with its figures in OUT/<part>/figures/ (the
layout of the scripts' own --quick) and the page in OUT/RESULTS.md. Without
--quick and --out, the parts run in runs/<part>/ and only they write the committed
figures/ (--figures-dir figures) and RESULTS.md. A part folder holding a run that
reproduce.py did not start is refused (--force replaces it).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


from lstm_ae.cli.run_folder import held_run
from lstm_ae.errors import Interrupted, UserError, one_line, signals_raise_interrupted
from lstm_ae.files import REPO_ROOT, ensure_writable_dir, write_json
from lstm_ae.reporting.results_page import PageEntry, write_page
from lstm_ae.reporting.provenance import code_version, comparable_argv
from lstm_ae.datasets.standins import write_mnist, write_prices_csv



@dataclass(frozen=True)
class Part:
    name: str            # also its folder: runs/<name>/, the script's default --run-dir
    title: str
    script: str
    args: tuple          # the documented command's flags (README)
    quick_args: tuple    # what --quick runs
    data: str = ""       # "mnist", "sp500" or "" (generated)
    minutes: int = 0     # wall-clock of its last measured run on 2 CPU cores (README), for estimates


# The one table of the documented commands; the README points here.
PIXEL = ("--input", "pixel")    # the pixel defaults of lstm_ae_mnist.py (its RECIPE)
PARTS = (
    Part("toy", "Part 1: synthetic signals", "lstm_ae_toy.py", (),
         ("--quick", "--workers", "1"), minutes=4),
    Part("mnist_row", "Part 2: MNIST, row by row", "lstm_ae_mnist.py", (), ("--quick",),
         "mnist", 13),
    Part("mnist_pixel", "Part 2: MNIST, pixel by pixel", "lstm_ae_mnist.py", PIXEL,
         ("--quick", "--input", "pixel", "--train-limit", "300"), "mnist", 52),
    Part("snp500", "Part 3: S&P 500", "lstm_ae_snp500.py", (), ("--quick", "--workers", "1"),
         "sp500", 10),
)
PART_NAMES = tuple(part.name for part in PARTS)
QUICK_OUT = REPO_ROOT / "runs" / "quick"
QUICK_NOTE = ("**Smoke run** (`python reproduce.py --quick`): tiny models, few epochs, on stand-in "
              "data unless real data were given. These are not the report's numbers.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=Path(__file__).name,
        description="Run every part's documented command in order and write RESULTS.md from "
                    "their results.json files.")
    parser.add_argument("--parts", nargs="+", choices=PART_NAMES, default=list(PART_NAMES),
                        help=f"parts to run, always in this order (default: all: {' '.join(PART_NAMES)})")
    parser.add_argument("--data", type=Path, default=os.environ.get("LSTM_AE_SP500_CSV"),
                        help="S&P 500 daily prices CSV for the snp500 part "
                             "(default: $LSTM_AE_SP500_CSV)")
    parser.add_argument("--quick", action="store_true",
                        help="each script's --quick on stand-in data, into --out (default: off)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder of RESULTS.md and of each part's run folder OUT/<part>/, "
                             "figures in OUT/<part>/figures/ (default: the repository, with "
                             "runs/<part>/ and the committed figures/; with --quick runs/quick/, "
                             "the scripts' --quick folders, ignored by git)")
    parser.add_argument("--force", action="store_true",
                        help="rerun parts whose results are current (default: skip them)")
    parser.add_argument("--page-only", action="store_true",
                        help="run nothing; write RESULTS.md from the results there are (default: off)")
    parser.add_argument("--threads", type=int, default=None,
                        help="passed to every script as --threads (default: not passed)")
    parser.add_argument("--quiet", action="store_true",
                        help="passed to every script: no per-epoch lines (default: off)")
    return parser


def shown(path: Path) -> str:
    """A path as commands show it: relative to the repository when inside it."""
    path = Path(path).resolve()
    try:
        return path.relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(path)


def documented(part: Part, quick: bool) -> str:
    args = part.quick_args if quick else part.args
    tail = " --data PATH/TO/prices.csv.gz" if part.data == "sp500" else ""
    return " ".join(["python", part.script, *args]) + tail


# ----------------------------------------------------------------------------
# Data: found, asked for, or (--quick) a stand-in
# ----------------------------------------------------------------------------

def data_args(parts: list[Part], args: argparse.Namespace, out: Path,
              write: bool = True) -> dict[str, list[str]]:
    """The data flags per data kind; one clear line when data the parts need are missing.
    The --quick stand-ins are written where missing, unless ``write`` is False."""
    kinds = {part.data for part in parts}
    found: dict[str, list[str]] = {"": []}
    if "mnist" in kinds:
        found["mnist"] = []                 # the script fetches MNIST or reads LSTM_AE_MNIST_DIR
        if args.quick and not os.environ.get("LSTM_AE_MNIST_DIR"):
            folder = out / "data" / "mnist"
            if write and not folder.is_dir():
                write_mnist(folder, n_train=1000, n_test=200)
            found["mnist"] = ["--data-dir", shown(folder), "--no-download"]
    if "sp500" in kinds:
        from lstm_ae.datasets.prices import KAGGLE_FILE    # the script's default file
        data = args.data
        if data is None and args.quick:
            data = out / "data" / "prices.csv"
            if not data.is_file():
                if not write:
                    return dict(found, sp500=["--data", shown(data)])   # to be written
                write_prices_csv(data, n_stocks=14, n_days=220)
        elif data is None and (REPO_ROOT / "data" / KAGGLE_FILE).exists():
            data = REPO_ROOT / "data" / KAGGLE_FILE
        if data is None:
            others = " ".join(p.name for p in parts if p.data != "sp500")
            raise UserError("the snp500 part needs the S&P 500 daily prices CSV: pass --data PATH "
                            "or set LSTM_AE_SP500_CSV" + (f" (or run --parts {others})" if others else ""))
        if not Path(data).is_file():
            raise UserError(f"--data {data} does not exist: pass the S&P 500 daily prices CSV "
                            "with --data PATH or LSTM_AE_SP500_CSV")
        found["sp500"] = ["--data", shown(data)]
    return found


# ----------------------------------------------------------------------------
# Running the parts
# ----------------------------------------------------------------------------

def part_dirs(part: Part, out: Path) -> tuple[Path, Path]:
    """(run folder, figures folder) of a part. In the repository: runs/<part>/ and the
    committed figures/. Under any other --out: OUT/<part>/ and OUT/<part>/figures/,
    the scripts' own layout (with the default --out of --quick, runs/quick/<part>/,
    the scripts' --quick folders)."""
    if Path(out).resolve() == REPO_ROOT:
        return REPO_ROOT / "runs" / part.name, REPO_ROOT / "figures"
    return Path(out) / part.name, Path(out) / part.name / "figures"


def part_argv(part: Part, args: argparse.Namespace, out: Path, data: dict) -> list[str]:
    """The part's command: --run-dir and --figures-dir only where ``part_dirs``
    differ from the script's defaults (runs/[quick/]<part>/, RUN_DIR/figures/)."""
    argv = [*(part.quick_args if args.quick else part.args), *data[part.data]]
    run_dir, figures = part_dirs(part, out)
    default = REPO_ROOT / "runs" / ("quick" if args.quick else "") / part.name
    if run_dir.resolve() != default.resolve():
        argv += ["--run-dir", shown(run_dir)]
    if figures.resolve() != (run_dir / "figures").resolve():
        argv += ["--figures-dir", shown(figures)]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    return argv + (["--quiet"] if args.quiet else [])


def _read_json(path: Path) -> dict:
    """The JSON object in ``path``; {} when it is missing, unreadable or not an object."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def part_state(run_dir: Path, argv: list[str], version: str) -> str:
    """'done' (results of this command and code), 'started' (begun, not finished) or 'new'."""
    same = lambda record: (isinstance(record, dict) and record.get("code_version") == version  # noqa: E731
                           and comparable_argv(record.get("argv", [])) == comparable_argv(argv))
    if same(_read_json(run_dir / "results.json").get("provenance")):
        return "done"
    return "started" if same(_read_json(run_dir / "reproduce.json")) else "new"


def plan_parts(parts: list[Part], args: argparse.Namespace, out: Path,
               data: dict) -> dict[str, tuple[list[str], str, str]]:
    """{part: (argv, state, its code version)}, refusing before anything runs to
    replace a run that reproduce.py did not start. A part begun and not finished
    continues (--resume); a part to run again where a run of reproduce.py is starts
    afresh (--overwrite)."""
    planned = {}
    for part in parts:
        run_dir = part_dirs(part, out)[0]
        argv = part_argv(part, args, out, data)
        version = code_version(script=part.script)
        state = "new" if args.force else part_state(run_dir, argv, version)
        held = held_run(run_dir) if state == "new" else None
        if held and not args.force and not (run_dir / "reproduce.json").is_file():
            raise UserError(f"{shown(run_dir)} holds a run reproduce.py did not start ({held}); "
                            "move it away, pass --force to replace it, or give --out another folder")
        if held:
            argv.append("--overwrite")
        elif state == "started":
            argv.append("--resume")
        planned[part.name] = (argv, state, version)
    return planned


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {int(seconds % 60)} s"


def run_part(command: list[str]) -> int:
    """Run one part's script and return its exit status. On SIGINT or SIGTERM here the
    part gets the same signal (Ctrl-C in a terminal has sent it SIGINT already) and is
    waited for, so it stops the way it does alone: a saved checkpoint and one line."""
    child = subprocess.Popen(command, cwd=REPO_ROOT)
    try:
        with signals_raise_interrupted():
            return child.wait()
    except Interrupted as stop:
        if child.poll() is None:
            child.send_signal(stop.signum)
        while True:
            try:
                status = child.wait()
                break
            except KeyboardInterrupt:     # a second Ctrl-C: the part is stopping already
                continue
        return status if status > 0 else 128 + stop.signum


def from_quick_run(results_path: Path) -> bool:
    """Whether the results at ``results_path`` are of a --quick run (the page then keeps
    its smoke-run note even when --page-only is given without --quick)."""
    provenance = _read_json(results_path).get("provenance")
    argv = provenance.get("argv") if isinstance(provenance, dict) else None
    return isinstance(argv, list) and "--quick" in argv


def stopped_line(name: str, run_dir: Path, argv: list[str], version: str) -> str:
    """What reproduce.py says when it was stopped in part ``name``: the part may have
    finished before the signal came, else its own line above says what it kept."""
    if part_state(run_dir, argv, version) == "done":
        return (f"stopped after part {name} finished; run the same command again for the "
                "parts left: finished parts are skipped")
    return (f"stopped during part {name} (its line above says what it saved); run the same "
            "command again to continue it: finished parts are skipped")


def run(args: argparse.Namespace) -> int:
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be at least 1, got {args.threads}")
    out = Path(args.out or (QUICK_OUT if args.quick else REPO_ROOT)).resolve()
    if args.quick and out == REPO_ROOT:
        raise UserError("--quick must not write over the committed figures/ and RESULTS.md; "
                        "choose another --out")
    ensure_writable_dir(out, "--out")
    parts = [part for part in PARTS if part.name in args.parts]
    dirs = {p.name: part_dirs(p, out) for p in PARTS}
    smoke = args.quick or (args.page_only and any(from_quick_run(run_dir / "results.json")
                                                  for run_dir, _ in dirs.values()))
    entries = [PageEntry(p.name, p.title, documented(p, smoke), dirs[p.name][0] / "results.json",
                         dirs[p.name][1]) for p in PARTS]
    page = out / "RESULTS.md"
    note = QUICK_NOTE if smoke else ""
    if args.page_only:
        if not any(entry.results_path.is_file() for entry in entries):
            raise UserError(f"--page-only found no results.json in {out}'s part folders (runs/ is not "
                            "in git), so it would turn every part into 'Not run': run the parts "
                            "first, or give --out the folder of a reproduction")
        write_page(page, entries, note)
        print(f"wrote {page}")
        return 0
    planned = plan_parts(parts, args, out, data_args(parts, args, out, write=False))
    data_args(parts, args, out)     # refusals first: the stand-in data are written only now
    started, took = time.monotonic(), {}
    states = {name: state for name, (_, state, _) in planned.items()}
    for number, part in enumerate(parts, 1):
        run_dir = dirs[part.name][0]
        argv, state, version = planned[part.name]
        head = f"[reproduce {number}/{len(parts)}] {part.name}"
        if state == "done":
            print(f"{head}: results current (same command and code), skipped; --force reruns it",
                  flush=True)
            continue
        left = sum(p.minutes for p in parts[number - 1:] if states[p.name] != "done")
        estimate = "" if args.quick else (f" (its last measured run: {part.minutes} min on 2 CPU "
                                          f"cores; parts still to run: about {left} min)")
        print(f"{head}: python {part.script} {' '.join(argv)}{estimate}", flush=True)
        write_json(run_dir / "reproduce.json", {"argv": argv, "code_version": version})
        began = time.monotonic()
        status = run_part([sys.executable, part.script, *argv])
        took[part.name] = time.monotonic() - began
        write_page(page, entries, note)
        if status in (128 + signal.SIGINT, 128 + signal.SIGTERM):
            print(f"{Path(__file__).name}: {stopped_line(part.name, run_dir, argv, version)}",
                  file=sys.stderr)
            return status
        if status != 0:
            print(f"{Path(__file__).name}: error: part {part.name} failed (exit {status}, see "
                  "above); fix it and run the same command again: finished parts are skipped, "
                  "this one continues", file=sys.stderr)
            return status
        print(f"{head}: finished in {minutes(took[part.name])}", flush=True)
    write_page(page, entries, note)
    print(f"\nwrote {page} ({minutes(time.monotonic() - started)} in all"
          + "".join(f"; {name} {minutes(s)}" for name, s in took.items()) + ")")
    return 0


def fail(parser: argparse.ArgumentParser, message: str) -> None:
    """One line on stderr and exit status 2, as the scripts do (cli.main.run_main)."""
    print(f"{parser.prog}: error: {one_line(message)}", file=sys.stderr)
    raise SystemExit(2)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    parser.error = lambda message: fail(parser, f"{message} (see --help)")
    args = parser.parse_args(argv)
    try:
        status = run(args)
    except UserError as error:
        fail(parser, str(error))
    if status:
        raise SystemExit(status)
    return status


if __name__ == "__main__":
    main()
