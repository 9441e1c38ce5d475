"""RESULTS.md, generated only from the parts' results.json files.

Every number on the page is a value of a results.json file, and the row that
shows it names the key(s) it comes from (``a / b`` for a quotient), so a test
can read the page back and compare. The page depends on nothing but those files
and which figure files exist: the same files give the same bytes (no "generated
at" time; each run's own date comes from its provenance). Keys a part does not
have are left out, so results with extra or fewer keys still render; a
``baselines`` dict, where a script writes one, is shown row by row.

The course report's numbers: 98.88% test accuracy row by row and under 11%
pixel by pixel (after 9 hours); it quotes none for Parts 1 and 3.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Optional

from lstm_ae.files import write_text_atomic

NOT_QUOTED = "none quoted"


@dataclass(frozen=True)
class Headline:
    """A number of this run beside its baselines and the course report's number."""
    quantity: str
    key: str                                   # dotted path into results.json
    fmt: str = "mse"                           # see format_number
    baselines: tuple = ()                      # ((label without digits, key), ...)
    report: str = NOT_QUOTED


@dataclass(frozen=True)
class Figure:
    number: str        # the report's figure number, "" for figures the report lacks
    pattern: str       # file name in the figures folder (a glob for per-ticker names)
    caption: str
    needs_grid: bool = False   # drawn only when the run searched a grid


@dataclass(frozen=True)
class PageEntry:
    """One part as reproduce.py hands it over."""
    name: str
    title: str
    command: str                 # the documented command, shown when no run recorded one
    results_path: Path
    figures_dir: Path


def forecast_headlines(what: str, key: str, baseline: str) -> tuple:
    """The S&P forecast rows of one horizon (results.json ``key``): errors beside the
    naive baseline's, then the Diebold-Mariano test between them."""
    return (Headline(f"{what}, MSE in USD²", f"{key}.model.mse_price",
                     baselines=((baseline, f"{key}.baseline.mse_price"),)),
            Headline(f"{what}, RMSE in % of price", f"{key}.model.rmse_pct",
                     baselines=((baseline, f"{key}.baseline.rmse_pct"),)),
            Headline(f"{what}, Diebold-Mariano statistic", f"{key}.diebold_mariano.statistic"),
            Headline(f"{what}, Diebold-Mariano p-value", f"{key}.diebold_mariano.p_value"))


MNIST_CHANCE = (("chance: the most frequent test class", "baselines.chance_accuracy"),)
MNIST_MSE = (("mean training image", "baselines.mean_image_mse"),
             ("PCA with as many components as the latent size", "baselines.pca_mse"))
HEADLINES = {
    "toy": (
        Headline("test MSE", "test_mse", baselines=(
            ("per-step train mean", "baselines_test_mse.per_step_train_mean"),
            ("sequence's own mean", "baselines_test_mse.sequence_own_mean"))),
        Headline("best validation MSE", "best_val_mse"),
    ),
    "mnist_row": (
        Headline("test accuracy", "test_accuracy", "pct", baselines=MNIST_CHANCE, report="98.88%"),
        Headline("test reconstruction MSE", "test_reconstruction_mse", baselines=MNIST_MSE),
        Headline("best validation accuracy", "best_val_accuracy", "pct"),
    ),
    "mnist_pixel": (
        Headline("test accuracy", "test_accuracy", "pct", baselines=MNIST_CHANCE,
                 report="under 11%"),
        Headline("test reconstruction MSE", "test_reconstruction_mse", baselines=MNIST_MSE),
        Headline("best validation accuracy", "best_val_accuracy", "pct"),
    ),
    "snp500": (
        Headline("reconstruction, MSE in USD²", "reconstruction.mse_price"),
        Headline("reconstruction, RMSE in % of price", "reconstruction.rmse_pct", "mse"),
        *forecast_headlines("one step ahead", "one_step", "persistence"),
        *forecast_headlines("multi-step", "multi_step", "last value flat"),
    ),
}

GRID = "validation curve of every grid point"
FIGURES = {
    "toy": (Figure("1.1", "fig1_1_toy_examples.png", "three example sequences"),
            Figure("1.2", "fig1_2_toy_reconstruction_a.png", "original vs reconstruction"),
            Figure("1.3", "fig1_3_toy_reconstruction_b.png", "original vs reconstruction"),
            Figure("", "fig1_grid_validation_curves.png", GRID, needs_grid=True)),
    "mnist_row": (Figure("2.1", "fig2_1_mnist_row_grid.png", GRID, needs_grid=True),
                  Figure("2.2", "fig2_2_mnist_row_reconstructions.png",
                         "test digits and their reconstructions"),
                  Figure("2.3", "fig2_3_mnist_row_training.png", "loss and accuracy per epoch"),
                  Figure("2.5", "fig2_5_mnist_row_latents.png",
                         "test latents on their first two principal components, by digit")),
    "mnist_pixel": (Figure("2.1", "fig2_1_mnist_pixel_grid.png", GRID, needs_grid=True),
                    Figure("2.2", "fig2_2_mnist_pixel_reconstructions.png",
                           "test digits and their reconstructions"),
                    Figure("2.4", "fig2_4_mnist_pixel_training.png",
                           "loss and accuracy per epoch"),
                    Figure("2.5", "fig2_5_mnist_pixel_latents.png",
                           "test latents on their first two principal components, by digit")),
    "snp500": (Figure("3.1", "fig3_1_snp500_daily_high.png", "daily high of two stocks"),
               Figure("3.2", "fig3_2_snp500_reconstruction_*.png", "original vs reconstruction"),
               Figure("3.3", "fig3_3_snp500_reconstruction_*.png", "original vs reconstruction"),
               Figure("3.4", "fig3_4_snp500_reconstruction_*.png", "original vs reconstruction"),
               Figure("3.5", "fig3_5_snp500_prediction_losses.png", "losses per epoch"),
               Figure("3.6", "fig3_6_snp500_multistep_*.png", "one-step and multi-step predictions"),
               Figure("", "fig3_7_snp500_error_by_horizon.png", "error against steps ahead"),
               Figure("", "fig3_grid_validation_curves.png", GRID, needs_grid=True)),
}


# ----------------------------------------------------------------------------
# Values and their text
# ----------------------------------------------------------------------------

def lookup(results: dict, key: str):
    """The value at a dotted key ('one_step.model.mse_price'), or None."""
    value = results
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def format_number(value: float, fmt: str) -> str:
    """pct: a fraction as a percentage, 2 decimals; mse: 4 significant digits;
    s: seconds, 1 decimal; int: a whole number."""
    if fmt == "pct":
        return f"{100 * value:.2f}%"
    if fmt == "s":
        return f"{value:.1f} s"
    if fmt == "int":
        return f"{int(value)}"
    return f"{value:.4g}"


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def code(text: str) -> str:
    return f"`{text}`"


def _flatten(prefix: str, value) -> list[tuple[str, float]]:
    if isinstance(value, dict):
        return [item for k, v in value.items() for item in _flatten(f"{prefix}.{k}", v)]
    return [(prefix, value)] if is_number(value) else []


# ----------------------------------------------------------------------------
# The page
# ----------------------------------------------------------------------------

def headline_rows(name: str, results: dict) -> list[str]:
    rows = []
    for line in HEADLINES.get(name, ()):
        value = lookup(results, line.key)
        if not is_number(value):
            continue
        keys, baselines = [code(line.key)], []
        for label, key in line.baselines:
            base = lookup(results, key)
            if is_number(base):
                baselines.append(f"{format_number(base, line.fmt)} ({label})")
                keys.append(code(key))
        rows.append(f"| {line.quantity} | **{format_number(value, line.fmt)}** | "
                    f"{'; '.join(baselines)} | {line.report} | {', '.join(keys)} |")
    horizons = lookup(results, "multi_step.by_horizon_relative_mse") or {}
    model, flat = horizons.get("model (fed back)", {}), horizons.get("last value flat", {})
    for h, value in model.items():
        if is_number(value) and is_number(flat.get(h)):
            key = "multi_step.by_horizon_relative_mse"
            rows.append(f"| multi-step, relative MSE of step {h} ahead | **{value:.4g}** | "
                        f"{flat[h]:.4g} (last value flat) | {NOT_QUOTED} | "
                        f"{code(f'{key}.model (fed back).{h}')}, "
                        f"{code(f'{key}.last value flat.{h}')} |")
    shown = {key for line in HEADLINES.get(name, ()) for _, key in line.baselines}
    for key, value in _flatten("baselines", results.get("baselines", {})):
        if key in shown:
            continue
        fmt = "pct" if key.endswith("accuracy") else "int" if isinstance(value, int) else "mse"
        rows.append(f"| baseline {code(key.split('.', 1)[1])} | | {format_number(value, fmt)} | "
                    f"{NOT_QUOTED} | {code(key)} |")
    return rows


def run_rows(results: dict) -> list[str]:
    """Configuration, times and provenance, each with its key."""
    rows = []

    def add(label: str, text: str, keys: list[str]) -> None:
        rows.append(f"| {label} | {text} | {', '.join(code(k) for k in keys)} |")

    def add_value(label: str, key: str, fmt: Optional[str] = None) -> None:
        value = lookup(results, key)
        if is_number(value) and fmt:
            add(label, format_number(value, fmt), [key])
        elif isinstance(value, str) and value:
            add(label, value, [key])

    add_value("chosen configuration", "chosen_config")
    add_value("one step: verdict against persistence (Diebold-Mariano, 5%)", "one_step.verdict")
    add_value("multi-step: verdict against the flat forecast (Diebold-Mariano, 5%)",
              "multi_step.verdict")
    add_value("split", "split")
    add_value("scale", "scale")
    beats_pca = lookup(results, "baselines.model_beats_pca")
    if isinstance(beats_pca, bool):
        add("reconstruction beats PCA at the latent size", "yes" if beats_pca else "no",
            ["baselines.model_beats_pca"])
    add_value("epochs of the final training", "epochs", "int")
    if is_number(results.get("seconds_per_epoch")):
        add_value("seconds per epoch, final training", "seconds_per_epoch", "s")
    elif is_number(results.get("train_seconds")) and results.get("epochs"):
        add("seconds per epoch, final training",
            format_number(results["train_seconds"] / results["epochs"], "s"),
            ["train_seconds` / `epochs"])
    add_value("samples per second", "samples_per_s", "mse")
    resumed = "--resume" in (lookup(results, "provenance.argv") or [])
    add_value("wall-clock of the last, resumed process" if resumed else
              "wall-clock of the whole command", "provenance.wall_clock_s", "s")
    add_value("machine", "provenance.machine.summary")
    if isinstance(results.get("device"), str) and isinstance(results.get("precision"), str):
        add("device, precision", f"{results['device']}, {results['precision']}",
            ["device", "precision"])
    add_value("processes (data-parallel)", "provenance.layout.processes", "int")
    add_value("threads per process", "provenance.layout.threads_per_process", "int")
    add_value("layout chosen by (measured or given)", "provenance.layout.reason")
    add_value("PyTorch", "provenance.torch")
    add_value("date", "provenance.date")
    add_value("code version", "provenance.code_version")
    return rows


def figure_lines(name: str, results: dict, figures_dir: Path, page_dir: Path,
                 run_dir: Path) -> list[str]:
    """The figures of one part; a grid figure only when the run searched a grid (its
    results.json lists the grid, or its run folder holds grid.csv, as the S&P run's does)."""
    lines = []
    searched_grid = bool(results.get("grid")) or (Path(run_dir) / "grid.csv").is_file()
    for figure in FIGURES.get(name, ()):
        label = f"Fig {figure.number}" if figure.number else "Not in the report"
        found = sorted(Path(figures_dir).glob(figure.pattern))
        drawn = results.get("figure_tickers") or results.get("test_tickers")
        if "*" in figure.pattern and drawn:
            # per-ticker figures: only the stocks this run drew, not an earlier run's files
            found = [p for p in found if p.stem.rsplit("_", 1)[-1] in drawn]
        if figure.needs_grid and not searched_grid:
            found = []
        if not found:
            lines.append(f"*{label}, {figure.caption}: not drawn by this run "
                         f"({code(figure.pattern)}).*\n")
        for path in found:
            link = Path(os.path.relpath(path, page_dir)).as_posix()
            lines.append(f"**{label}**: {figure.caption} ({code(path.name)})\n\n"
                         f"![{label}: {figure.caption}]({link})\n")
    return lines


def without_machine_paths(command: str) -> str:
    """The command with each absolute path (a file of the machine it ran on, never
    one of the reader's) shown as PATH/TO/<its name>."""
    words = shlex.split(command)
    return shlex.join(f"PATH/TO/{PurePosixPath(w).name}" if w.startswith("/") else w
                      for w in words)


def part_section(entry: PageEntry, page_dir: Path) -> str:
    source = Path(os.path.relpath(entry.results_path, page_dir)).as_posix()
    head = f"## {entry.title}\n\n"
    if not Path(entry.results_path).is_file():
        return head + f"Not run (no {code(source)}). Command:\n\n    {entry.command}\n"
    results = json.loads(Path(entry.results_path).read_text())
    command = lookup(results, "provenance.command")
    if isinstance(command, str):
        command = without_machine_paths(command)
        text = f"Command, as run (`provenance.command` of {code(source)}):\n\n    {command}\n"
    else:
        text = (f"{code(source)} records no command (it predates provenance); "
                f"the documented command is:\n\n    {entry.command}\n")
    text += ("\n| quantity | this run | baseline | course report | from results.json |\n"
             "| --- | --- | --- | --- | --- |\n")
    text += "".join(row + "\n" for row in headline_rows(entry.name, results))
    text += "\n| run | value | from results.json |\n| --- | --- | --- |\n"
    text += "".join(row + "\n" for row in run_rows(results))
    text += "\n" + "\n".join(figure_lines(entry.name, results, entry.figures_dir, page_dir,
                                                 entry.results_path.parent))
    return head + text


def render_page(entries: list[PageEntry], page_dir: Path, note: str = "") -> str:
    """The whole page as text; paths in it are relative to ``page_dir``."""
    intro = ("# Results\n\n"
             "Generated by `python reproduce.py` from each part's `results.json`; do not edit by "
             "hand. `python reproduce.py --page-only` regenerates it from the same files, byte "
             "for byte. Every number names the results.json key it comes from. The course "
             "report's numbers: 98.88% test accuracy row by row and under 11% pixel by pixel "
             "(after 9 hours); it quotes none for Parts 1 and 3.\n\n")
    if note:
        intro += note + "\n\n"
    return intro + "\n".join(part_section(entry, Path(page_dir)) for entry in entries)


def write_page(path: Path, entries: list[PageEntry], note: str = "") -> str:
    """Write RESULTS.md atomically; return its text."""
    path = Path(path)
    text = render_page(entries, path.parent, note)
    write_text_atomic(path, text)
    return text
