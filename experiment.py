"""The driver steps every script shares: turn the flags into grid points, search
the grid on validation loss, train the best point for the full epochs with a
checkpoint, or load a checkpoint for --eval-only."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch

import distributed
from cli import REPO_ROOT
from io_utils import UserError, ensure_writable_dir
from grid_search import GridPoint, best_row, expand_grid, grid_search
from models import LSTMAutoencoder, resolve_device
from training import (Augment, FitResult, TrainConfig, fit, load_checkpoint,
                      model_from_checkpoint, resolve_precision, set_seed, setup_runtime)

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


def prepare_run(args: argparse.Namespace, experiment: str) -> RunContext:
    """Runtime set-up (first, before any tensor work: flush denormals, threads per
    process), device, the process group under data parallelism, precision, and
    output folders proven writable before anything is trained."""
    setup_runtime(distributed.threads_per_process(args.threads))
    args.run_dir = args.run_dir or REPO_ROOT / "runs" / experiment
    device = resolve_device(args.device)
    layout = distributed.init_process_group(device)
    precision = resolve_precision(args.precision, device, torch.get_num_threads(),
                                  max(1, min(args.batch_size) // layout.world_size))
    return RunContext(device, precision, ensure_writable_dir(args.figures_dir, "figures"),
                      ensure_writable_dir(args.run_dir, "results"), layout)


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
                      log: Callable[[str], None] = print, augment: Augment | None = None) -> Trained:
    """Grid search (skipped for a single point), then the best point for --epochs,
    checkpointed to RUN_DIR/checkpoint_name. ``augment`` transforms training batches."""
    run_dir = Path(args.run_dir)
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
    run_config = dict(run_config, chosen_config=point.label)
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


def load_for_evaluation(args: argparse.Namespace, device: torch.device, data_flags: tuple = (),
                        path: Path | None = None):
    """(model, checkpoint) for --eval-only, from ``path``, else --checkpoint, else
    RUN_DIR/final.pt.

    The flags in ``data_flags`` are set back to the values the checkpoint was
    trained with, so the test split is the one the model never saw.
    """
    path = Path(path or args.checkpoint or Path(args.run_dir) / "final.pt")
    try:
        checkpoint = load_checkpoint(path)
    except UserError as error:
        raise UserError(f"{error}; train first or pass --checkpoint PATH") from None
    for flag in data_flags:
        if flag in checkpoint["run_config"]:
            setattr(args, flag, checkpoint["run_config"][flag])
    return model_from_checkpoint(checkpoint, device), checkpoint
