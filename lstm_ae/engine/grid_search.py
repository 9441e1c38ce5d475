"""The grid-search helper shared by the three experiments.

Every hyper-parameter flag takes one or more values; the product of them is
trained, each point for the same number of epochs and from the same seed, and
one CSV row per finished point is written as soon as it finishes (the whole
file rewritten atomically). A search resumed with the same flags skips the
points already in the CSV. The best point is the one with the lowest
validation loss: the test split is never looked at here.

On the CPU, small models train faster as several one-thread processes than as
one process using every core (``workers``), so points may run in parallel.
Under data-parallel training (``--procs N`` or torchrun) the points are spread
over the ranks instead: in rounds of N, each point trained whole by one rank
(not data-parallel), the finished rows gathered after each round and the CSV
written by rank 0 alone.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import multiprocessing
import signal
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from lstm_ae.engine import distributed
from lstm_ae.files import write_text_atomic
from models import LSTMAutoencoder
from lstm_ae.engine.training import Augment, TrainConfig, fit, to_device
from lstm_ae.engine.runtime import set_seed, setup_runtime

# Short names for legends, as in the report's Fig 2.1 ("hs=32 lr=1e-3 bs=128 clip=1").
ABBREVIATIONS = {"hidden_size": "hs", "lr": "lr", "batch_size": "bs", "clip": "clip",
                 "num_layers": "nl", "dropout": "do", "ce_weight": "ce",
                 "prediction_weight": "pw", "weight_decay": "wd"}


@dataclass
class GridPoint:
    params: dict          # the values that vary across the grid, by flag name
    model_args: dict      # LSTMAutoencoder(**model_args)
    train_config: TrainConfig

    @property
    def label(self) -> str:
        return config_label(self.params)

    def key(self, data_tag: str) -> str:
        """Identifies the point and everything it was trained with, for resuming."""
        train = asdict(self.train_config)
        if train["reconstruction_loss"] == "mse":  # the keys of grids made before the field
            del train["reconstruction_loss"]
        blob = json.dumps([self.model_args, train, data_tag], sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]


def format_value(value) -> str:
    """1e-3 rather than 0.001, 1 rather than 1.0, none for None."""
    if value is None:
        return "none"
    if isinstance(value, float):
        if value != 0 and abs(value) < 0.01:
            return np.format_float_scientific(value, trim="-", exp_digits=1)
        return f"{value:.6g}"
    return str(value)


def config_label(params: dict) -> str:
    return " ".join(f"{ABBREVIATIONS.get(k, k)}={format_value(v)}" for k, v in params.items())


def expand_grid(axes: dict[str, list]) -> list[dict]:
    """{'lr': [1e-3, 1e-2], 'hidden_size': [16]} -> one dict per combination."""
    names = list(axes)
    return [dict(zip(names, values)) for values in itertools.product(*(axes[n] for n in names))]


# ----------------------------------------------------------------------------
# The CSV of finished points
# ----------------------------------------------------------------------------

COLUMNS = ["key", "label", "best_val_loss", "best_epoch", "epochs", "seconds",
           "samples_per_s", "val_curve"]


def _csv_value(value) -> str:
    """Exact text for numbers (they are read back on resume), 'none' for None."""
    if isinstance(value, list):
        return " ".join(repr(float(v)) for v in value)
    return "none" if value is None else repr(value) if isinstance(value, float) else str(value)


def _write_csv(path: Path, rows: list[dict]) -> None:
    names = COLUMNS + sorted({k for row in rows for k in row} - set(COLUMNS))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(row.get(k)) for k in names})
    write_text_atomic(path, buffer.getvalue())


def read_grid_csv(path: Path) -> list[dict]:
    """Rows of a grid CSV with the numeric columns parsed; [] if there is none."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    with open(path, newline="") as handle:
        for raw in csv.DictReader(handle):
            try:
                row = dict(raw)
                row["best_val_loss"] = float(raw["best_val_loss"])
                row["best_epoch"] = int(raw["best_epoch"])
                row["epochs"] = int(raw["epochs"])
                row["seconds"] = float(raw["seconds"])
                row["samples_per_s"] = float(raw["samples_per_s"])
                row["val_curve"] = [float(v) for v in raw["val_curve"].split()]
            except (KeyError, TypeError, ValueError):
                continue  # a damaged row is trained again rather than trusted
            rows.append(row)
    return rows


# ----------------------------------------------------------------------------
# Training one point (in this process or in a worker)
# ----------------------------------------------------------------------------

_worker_data: dict = {}


def _init_worker(splits: dict, threads: int) -> None:
    """A worker process: SIGINT ignored (Ctrl-C reaches the whole process group; the
    parent alone handles it and stops the pool), one thread, the data as tensors."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    setup_runtime(threads)
    _worker_data["tensors"] = to_device(splits, torch.device("cpu"))


def _train_point(point: GridPoint, tensors: Optional[dict], device: str, label: str,
                 quiet: bool, augment: Optional[Augment] = None) -> dict:
    tensors = tensors if tensors is not None else _worker_data["tensors"]
    set_seed(point.train_config.seed)
    model = LSTMAutoencoder(**point.model_args)
    log = None if quiet else (lambda line: print(line, flush=True))
    result = fit(model, tensors, point.train_config, torch.device(device), log=log, label=label,
                 augment=augment)
    return {"best_val_loss": result.best_val_loss, "best_epoch": result.best_epoch,
            "epochs": len(result.history), "seconds": result.seconds,
            "samples_per_s": float(np.mean([h["samples_per_s"] for h in result.history])),
            "val_curve": [h["val_loss"] for h in result.history]}


class _Rows:
    """The rows known so far, in grid order, rewritten to the CSV (by rank 0 alone:
    ``csv_path`` None elsewhere) whenever one more point finishes."""

    def __init__(self, points: list[GridPoint], data_tag: str, csv_path: Optional[Path],
                 log: Callable[[str], None]):
        self.points, self.keys = points, [p.key(data_tag) for p in points]
        self.csv_path, self.log = csv_path, log
        self.by_key: dict[str, dict] = {}

    def write(self) -> None:
        if self.csv_path is not None:
            _write_csv(self.csv_path, [self.by_key[k] for k in self.keys if k in self.by_key])

    def finished(self, number: int, point: GridPoint, key: str, outcome: dict) -> None:
        self.by_key[key] = {"key": key, "label": point.label, **point.params, **outcome}
        self.write()
        self.log(f"grid {number}/{len(self.points)} {point.label}: best val "
                 f"{outcome['best_val_loss']:.5f} at epoch {outcome['best_epoch']} "
                 f"({outcome['seconds']:.0f}s)")

    def in_grid_order(self) -> list[dict]:
        return [self.by_key[k] for k in self.keys]


def _resumed(rows: _Rows, done: dict, csv_name: str) -> list[tuple[int, GridPoint, str]]:
    """Take the points already in the CSV (``done``: its rows by key) into ``rows``;
    return the others as (number, point, key) to train."""
    todo = []
    for number, (point, key) in enumerate(zip(rows.points, rows.keys), 1):
        if key in done:
            rows.by_key[key] = {**done[key], **point.params, "key": key, "label": point.label}
            rows.log(f"grid {number}/{len(rows.points)} {point.label}: already in {csv_name}, "
                     f"best val {done[key]['best_val_loss']:.5f}")
        else:
            todo.append((number, point, key))
    return todo


def _train_here(todo: list, rows: _Rows, tensors: dict, device: torch.device, quiet: bool,
                augment: Optional[Augment]) -> None:
    for number, point, key in todo:
        outcome = _train_point(point, tensors, str(device), f"[{point.label}] ", quiet, augment)
        rows.finished(number, point, key, outcome)


def _train_over_ranks(todo: list, rows: _Rows, tensors: dict, device: torch.device, quiet: bool,
                      augment: Optional[Augment]) -> None:
    """Data parallel: rounds of one point per rank, the finished rows gathered after each."""
    ranks, me = distributed.world_size(), distributed.rank()
    for start in range(0, len(todo), ranks):
        mine = todo[start + me] if start + me < len(todo) else None
        outcome = None
        if mine is not None:
            number, point, key = mine
            with distributed.local():
                outcome = _train_point(point, tensors, str(device), f"[{point.label}] ",
                                       quiet, augment)
        for gathered in distributed.all_gather_object(
                None if mine is None else (mine[0], mine[2], outcome)):
            if gathered is not None:
                number, key, outcome = gathered
                rows.finished(number, rows.points[number - 1], key, outcome)


def _worker_pool(splits: dict, workers: int) -> ProcessPoolExecutor:
    """``workers`` spawned one-thread processes that ignore SIGINT (_init_worker)."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(splits, 1))


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Cancel the points not started and end the workers now: terminated, then killed
    if they linger, and reaped, so that no process outlives the search."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    manager = getattr(pool, "_executor_manager_thread", None)
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
            process.join()
    # The pool's own manager thread reaps the same children; until it is done a child
    # it reaped first may still read as alive here, so wait for it, then check again.
    if manager is not None:
        manager.join(timeout=30)
    for process in processes:
        process.join(timeout=5)


def _train_in_workers(todo: list, rows: _Rows, splits: dict, workers: int, quiet: bool,
                      augment: Optional[Augment]) -> None:
    """Points in parallel worker processes, each row recorded as its point finishes. On
    any exception or interrupt here the pool is stopped before it propagates."""
    pool = _worker_pool(splits, min(workers, len(todo)))
    try:
        futures = {pool.submit(_train_point, point, None, "cpu", f"[{point.label}] ", quiet,
                               augment): (number, point, key) for number, point, key in todo}
        for future in as_completed(futures):
            rows.finished(*futures[future], future.result())
    except BaseException:
        _stop_pool(pool)
        raise
    pool.shutdown(wait=True)


def grid_search(points: list[GridPoint], splits: dict, tensors: dict, device: torch.device,
                csv_path: Path, data_tag: str = "", resume: bool = False, workers: int = 1,
                quiet: bool = False, log: Callable[[str], None] = print,
                augment: Optional[Augment] = None) -> list[dict]:
    """Train every point for its configured epochs; return one row per point.

    ``splits`` holds the numpy arrays (sent to worker processes), ``tensors``
    the same data already on ``device`` (used when training in this process).
    ``data_tag`` names the data and augmentation: rows of another tag are not resumed.
    """
    csv_path = Path(csv_path)
    main = distributed.is_main()
    rows = _Rows(points, data_tag, csv_path if main else None, log if main else (lambda line: None))
    done = distributed.broadcast_from_main(
        lambda: {row["key"]: row for row in read_grid_csv(csv_path)} if resume else {})
    todo = _resumed(rows, done, csv_path.name)
    rows.write()     # start the CSV with what is already known: nothing, or the rows resumed
    if distributed.data_parallel():
        _train_over_ranks(todo, rows, tensors, device, quiet or not main, augment)
    elif workers > 1 and device.type == "cpu" and len(todo) > 1:
        _train_in_workers(todo, rows, splits, workers, quiet, augment)
    else:
        _train_here(todo, rows, tensors, device, quiet, augment)
    return rows.in_grid_order()


def best_row(rows: list[dict]) -> dict:
    """The grid row with the lowest validation loss."""
    return min(rows, key=lambda row: row["best_val_loss"])


def grid_summary(rows: list[dict]) -> list[dict]:
    """The grid rows as they go into results.json."""
    return [{k: row[k] for k in ("label", "best_val_loss", "best_epoch", "seconds")} for row in rows]
