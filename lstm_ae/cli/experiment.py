"""The driver steps every script shares: turn the flags into grid points, search
the grid on validation loss, train the best point for the full epochs with a
checkpoint, or load a checkpoint for --eval-only."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch

from lstm_ae.engine import distributed
from lstm_ae.cli.recipes import args_as_dict, flag_name, settings_lines, settings_record
from lstm_ae.errors import UserError, reading
from lstm_ae.cli import run_folder
from lstm_ae.cli.run_layout import allows_bf16, layout_line, layout_record
from lstm_ae.files import REPO_ROOT, ensure_writable_dir, remove_stale_temp_files, write_json
from lstm_ae.engine.grid_search import GridPoint, best_row, expand_grid, grid_search, read_grid_csv
from models import LSTMAutoencoder, resolve_device
from lstm_ae.engine.training import Augment, FitResult, TrainConfig, fit
from lstm_ae.engine.checkpoints import load_checkpoint, model_from_checkpoint
from lstm_ae.engine.runtime import resolve_precision, set_seed, setup_runtime
from lstm_ae.reporting.provenance import note_layout

# Always named in legends, as in the report; other axes only when they vary.
ALWAYS_LABELLED = ("hidden_size", "lr", "batch_size", "clip")
GRID_FLAGS = ("hidden_size", "num_layers", "lr", "batch_size", "clip")


@dataclass
class RunContext:
    device: torch.device
    precision: str
    figures: Path
    run_dir: Path
    layout: distributed.Layout = distributed.Layout()

    @property
    def is_main(self) -> bool:
        """Rank 0 (or the only process): the one that writes figures and results."""
        return self.layout.is_main


def default_output_dirs(experiment: str, quick: bool) -> tuple[Path, Path]:
    """(figures, run folder) when neither --figures-dir nor --run-dir is given:
    runs/<experiment>/figures/ and runs/<experiment>/, for --quick
    runs/quick/<experiment>/figures/ and runs/quick/<experiment>/ (runs/ is ignored
    by git). A run's figures go to RUN_DIR/figures/: no run replaces the committed
    reference figures in figures/, which only reproduce.py (or an explicit
    --figures-dir figures) writes."""
    base = REPO_ROOT / "runs" / "quick" / experiment if quick else REPO_ROOT / "runs" / experiment
    return base / "figures", base


def prepare_run(args: argparse.Namespace, experiment: str) -> RunContext:
    """Runtime set-up (first, before any tensor work: flush denormals, threads per
    process), device, the process group under data parallelism, precision, output
    folders proven writable before anything is trained, and the run folder taken
    for this run by rank 0 (run_folder.claim: its lock; a new run refused where a
    run is, unless --overwrite). --eval-only --checkpoint PATH writes beside the
    checkpoint unless --run-dir says otherwise. A refused run leaves no folder (the
    first write makes them); the temporary files killed runs left are removed."""
    setup_runtime(distributed.threads_per_process(args.threads))
    args.run_dir = run_folder.resolve_run_dir(args, default_output_dirs(
        experiment, getattr(args, "quick", False))[1])
    args.figures_dir = args.figures_dir or Path(args.run_dir) / "figures"
    device = resolve_device(args.device)
    layout = distributed.init_process_group(device)
    precision = resolve_precision(args.precision, device, allows_bf16(args))
    run_dir = ensure_writable_dir(args.run_dir, "results")  # first: figures default inside it
    ctx = RunContext(device, precision, ensure_writable_dir(args.figures_dir, "figures"),
                     run_dir, layout)
    distributed.broadcast_from_main(lambda: run_folder.claim(args, ctx.run_dir, ctx.figures))
    if ctx.is_main:
        for folder in (ctx.figures, ctx.run_dir):
            remove_stale_temp_files(folder)
        print(settings_lines(args), flush=True)
        record = layout_record(args, ctx)
        note_layout(record)
        print(layout_line(record), flush=True)
    return ctx


def write_results(ctx: RunContext, args: argparse.Namespace, results: dict) -> Path:
    """RUN_DIR/results.json: ``results`` of a training run; for --eval-only, the
    record there kept as it is (the training run's) with ``results`` added as its
    "evaluation" (run_folder.with_evaluation). Returns the path."""
    path = Path(ctx.run_dir) / "results.json"
    if getattr(args, "eval_only", False):
        checkpoint = Path(args.checkpoint or Path(ctx.run_dir) / "final.pt")
        results = run_folder.with_evaluation(path, results, checkpoint)
    write_json(path, results)
    return path


def base_config(args: argparse.Namespace, precision: str, **fields) -> TrainConfig:
    """The TrainConfig the common flags describe (grid axes are set per point)."""
    return TrainConfig(optimizer=args.optimizer, weight_decay=args.weight_decay,
                       lr_schedule=args.lr_schedule, warmup_fraction=args.warmup,
                       precision=precision, seed=args.seed, **fields)


@dataclass
class Trained:
    model: LSTMAutoencoder
    fit: FitResult
    point: GridPoint
    grid_rows: list
    checkpoint_path: Path


def grid_points(args: argparse.Namespace, model_args: dict, train: TrainConfig) -> list[GridPoint]:
    """One GridPoint per combination of the searched flags' values."""
    axes = {name: getattr(args, name) for name in GRID_FLAGS}
    points = []
    for values in expand_grid(axes):
        params = {k: v for k, v in values.items() if k in ALWAYS_LABELLED or len(axes[k]) > 1}
        point_model = dict(model_args, hidden_size=values["hidden_size"],
                           num_layers=values["num_layers"])
        point_train = replace(train, lr=values["lr"], batch_size=values["batch_size"],
                              clip=values["clip"], epochs=args.grid_epochs)
        points.append(GridPoint(params, point_model, point_train))
    return points


def search_then_train(args: argparse.Namespace, points: list[GridPoint], splits: dict,
                      tensors: dict, device: torch.device, data_tag: str,
                      run_config: dict, checkpoint_name: str = "final.pt",
                      log: Callable[[str], None] = print, augment: Augment | None = None,
                      data_flags: tuple = ()) -> Trained:
    """Grid search (skipped for a single point), then the best point for --epochs,
    checkpointed to RUN_DIR/checkpoint_name. ``augment`` transforms training batches.

    ``data_tag`` names the data (and augmentation); it is stored in the checkpoint's
    run_config, and --resume refuses, before anything is trained or written, a
    checkpoint or grid CSV of other data (``data_flags`` are named in the message).
    """
    run_dir = Path(args.run_dir)
    if args.resume:
        check_resumable(run_dir / checkpoint_name, run_dir / "grid.csv", points, data_tag,
                        run_config, data_flags)
    # The settings of the run as it was started: a --resume (whose settings must match,
    # or fit refuses it) leaves them as they are.
    if distributed.is_main() and not (args.resume and (run_dir / "config.json").exists()):
        write_json(run_dir / "config.json", settings_record(args))
    if len(points) > 1:
        log(f"grid search: {len(points)} configurations x {args.grid_epochs} epochs, "
            + (f"{distributed.world_size()} processes" if distributed.data_parallel()
               else f"{args.workers} worker(s)"))
        rows = grid_search(points, splits, tensors, device, run_dir / "grid.csv", data_tag,
                           resume=args.resume, workers=args.workers, quiet=args.quiet, log=log,
                           augment=augment)
        best = best_row(rows)
        point = next(p for p in points if p.label == best["label"])
        log(f"best configuration on validation: {point.label} "
            f"(val loss {best['best_val_loss']:.5f})")
    else:
        rows, point = [], points[0]
    run_config = dict(run_config, chosen_config=point.label, data_tag=data_tag)
    final_config = replace(point.train_config, epochs=args.epochs)
    set_seed(final_config.seed)
    model = LSTMAutoencoder(**point.model_args)
    checkpoint_path = run_dir / checkpoint_name
    log(f"final training: {point.label}, {args.epochs} epochs, "
        f"{model.n_parameters():,} parameters, checkpoint {checkpoint_path}")
    result = fit(model, tensors, final_config, device, checkpoint_path=checkpoint_path,
                 resume=args.resume, run_config=run_config,
                 log=None if args.quiet else log, label="[final] ", augment=augment)
    return Trained(model, result, point, rows, checkpoint_path)


def _show_value(value) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(_show_value(v) for v in value)
    if isinstance(value, bool):   # a switch, as the settings line shows it
        return "on" if value else "off"
    return "none" if value is None else str(value)


def _same(a, b) -> bool:
    if _show_value(a) == _show_value(b):
        return True
    paths = isinstance(a, Path) or isinstance(b, Path) or "/" in str(a) or "/" in str(b)
    return paths and Path(str(a)).resolve() == Path(str(b)).resolve()


def _differences(stored: dict, current: dict, flags: tuple, word: str = ", not",
                 sep: str = "; ") -> str:
    """'--data-seed 0, not 5' for each flag whose stored value differs from the current one."""
    return sep.join(f"{flag_name(f)} {_show_value(stored.get(f))}{word} {_show_value(current.get(f))}"
                    for f in flags if f in stored and not _same(stored[f], current.get(f)))


# Settings that change where a run writes or how it is laid out, not what it computes.
LAYOUT_SETTINGS = ("resume", "overwrite", "quiet", "run_dir", "figures_dir", "procs", "threads",
                   "workers", "device", "checkpoint", "export_latents", "eval_only",
                   "no_download")


# Settings a run may fit to its data or machine (a limit larger than the data, the
# precision --precision auto measured): compared only where a flag gave them.
FITTED_SETTINGS = ("val_size", "train_limit", "test_limit", "tickers", "precision", "data_dir",
                   "data")


def check_same_settings(run_dir: Path, args: argparse.Namespace, retry: str) -> None:
    """UserError unless the finished run in ``run_dir`` (its config.json) was made with
    the settings of ``args``: every flag given then or now (apart from LAYOUT_SETTINGS)
    must have the same value, and so must every default both records hold (a default
    that changed since, e.g. a new recipe, is refused too; FITTED_SETTINGS only
    where a flag gave them)."""
    try:
        record = json.loads((Path(run_dir) / "config.json").read_text())
        stored, given = record["settings"], set(record.get("explicit", ()))
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"--resume: {run_dir} has results but no readable config.json; {retry}") \
            from None
    current = args_as_dict(args)
    given |= set(getattr(args, "_explicit", ()))
    defaults = set(stored) & set(current) - set(FITTED_SETTINGS)
    keys = tuple(k for k in sorted(given | defaults) if k not in LAYOUT_SETTINGS)
    diff = _differences(stored, current, keys, word=" there, now")
    if diff:
        raise UserError(f"--resume: {run_dir} was made with other settings ({diff}); {retry}")


def check_resumable(checkpoint_path: Path, csv_path: Path, points: list[GridPoint], data_tag: str,
                    run_config: dict, data_flags: tuple = ()) -> None:
    """UserError unless what --resume would continue was made from the same data:
    the checkpoint's stored data tag must equal ``data_tag``, and a grid CSV with
    rows must share at least one row with these grid points (checked only for a
    grid of more than one point: a single point runs no grid search)."""
    retry = "start afresh with --overwrite instead of --resume, or pick another --run-dir"
    if checkpoint_path.exists():
        try:
            stored = load_checkpoint(checkpoint_path)["run_config"]
        except UserError as error:
            raise UserError(f"--resume: {error}; {retry}") from None
        run_folder.check_script(checkpoint_path, stored, run_config.get("script"), "continue")
        if stored.get("data_tag") != data_tag:
            if "data_tag" not in stored:
                why = "records no data identity (made by an older version)"
            else:
                diff = _differences(stored, run_config, data_flags)
                why = f"was trained on other data ({diff})" if diff else "was trained on other data"
            raise UserError(f"--resume: checkpoint {checkpoint_path} {why}; {retry}")
    if len(points) > 1 and csv_path.exists():
        with reading(csv_path, "grid CSV", f"delete it or {retry}"):
            rows = read_grid_csv(csv_path)
        keys = {point.key(data_tag) for point in points}
        if rows and not any(row["key"] in keys for row in rows):
            raise UserError(f"--resume: {csv_path} holds no point of this grid on this data "
                            f"(other data or settings); {retry}")


def load_for_evaluation(args: argparse.Namespace, device: torch.device, data_flags: tuple = (),
                        path: Path | None = None, log: Callable[[str], None] = print):
    """(model, checkpoint) for --eval-only, from ``path``, else --checkpoint, else
    RUN_DIR/final.pt.

    The flags in ``data_flags`` take the values the checkpoint was trained with,
    so the test split is the one the model never saw; a value given on the
    command line (``args._explicit``) that differs is refused with a UserError,
    and values taken over are named in one logged line. Any other setting given
    that differs from the checkpoint's (the model, its training, its grid) is
    refused too: the model is the checkpoint's, so the flag would be ignored.
    """
    path = Path(path or args.checkpoint or Path(args.run_dir) / "final.pt")
    try:
        checkpoint = load_checkpoint(path)
    except UserError as error:
        hint = "" if "--checkpoint" in str(error) else "; train first or pass --checkpoint PATH"
        raise UserError(f"{error}{hint}") from None
    stored = checkpoint["run_config"]
    run_folder.check_script(path, stored, getattr(args, "_script", None), "evaluate")
    explicit = getattr(args, "_explicit", frozenset())
    current = {f: (str(v) if isinstance(v, Path) else v) for f, v in vars(args).items()}
    conflicts = _differences(stored, current, tuple(f for f in data_flags if f in explicit))
    if conflicts:
        raise UserError(f"--eval-only: checkpoint {path} was trained with {conflicts}; drop the "
                        "data flag to evaluate on the checkpoint's data, or pass another --checkpoint")
    others = tuple(f for f in sorted(explicit) if f not in data_flags and f != "quick"
                   and f not in LAYOUT_SETTINGS + FITTED_SETTINGS)
    ignored = _differences(stored, current, others)
    if ignored:   # the model, its training and its grid are the checkpoint's
        raise UserError(f"--eval-only evaluates the model of checkpoint {path}, trained with "
                        f"{ignored}; drop those flags, or train with them without --eval-only")
    taken = _differences(stored, current, tuple(data_flags), " instead of", ", ")
    for flag in data_flags:
        if flag in stored:
            setattr(args, flag, stored[flag])
    if data_flags:
        args._explicit = explicit | {f for f in data_flags if f in stored}
    if taken and log:
        log(f"--eval-only: using the checkpoint's data flags: {taken}")
    return model_from_checkpoint(checkpoint, device), checkpoint
