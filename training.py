"""The one training engine shared by the three experiments.

``fit`` trains an ``LSTMAutoencoder`` on in-memory splits, keeps the weights of
the best validation epoch, writes a checkpoint after every epoch and can resume
from it; ``evaluate`` measures a model on one split. The loss is

    reconstruction MSE + ce_weight * cross-entropy + prediction_weight * next-step MSE

with each term present only when the model has the matching head. Data are
dicts of tensors, ``{"x": (batch, time, features), "y": (batch,) labels}``,
moved to the device once; batches are slices of them, so an epoch does no
per-sample Python work.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

import distributed
from io_utils import UserError, atomic_path, read_error_message
from models import LSTMAutoencoder

CHECKPOINT_FORMAT = "lstm-ae-checkpoint/1"
OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")
LR_SCHEDULES = ("constant", "cosine", "onecycle")
PRECISIONS = ("auto", "fp32", "bf16")

Tensors = dict[str, torch.Tensor]


@dataclass
class TrainConfig:
    """Everything that decides how a model is trained (stored in checkpoints)."""
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    clip: Optional[float] = None          # max gradient norm; None: no clipping
    lr_schedule: str = "cosine"           # see learning_rate_at
    warmup_fraction: float = 0.0          # of all steps, linear warm-up (cosine)
    precision: str = "fp32"               # fp32 or bf16 (autocast); resolve "auto" first
    seed: int = 0
    ce_weight: float = 0.0                # weight of the cross-entropy term
    prediction_weight: float = 0.0        # weight of the next-step MSE term


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = math.inf
    seconds: float = 0.0


# ----------------------------------------------------------------------------
# Runtime: seeds, threads, precision
# ----------------------------------------------------------------------------

def setup_runtime(threads: Optional[int] = None) -> None:
    """Call first thing in a process, before any tensor work.

    Flushing denormal floats to zero matters: oneDNN's LSTM backward produces
    denormals on long sequences and runs several times slower on them. The flag
    is per thread and worker threads copy it when they start, so it must be set
    before the first parallel op creates them.
    """
    torch.set_flush_denormal(True)
    if threads:
        torch.set_num_threads(threads)


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


_bf16_probe_cache: dict[str, bool] = {}


def bf16_works_on(device: torch.device) -> bool:
    """Whether an LSTM step runs under bf16 autocast here (CPUs without native
    bf16, such as AVX2-only ones, fail inside oneDNN)."""
    key = str(device)
    if key not in _bf16_probe_cache:
        try:
            lstm = torch.nn.LSTM(4, 8, batch_first=True).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16):
                out, _ = lstm(torch.randn(2, 3, 4, device=device))
            out.float().sum().backward()
            _bf16_probe_cache[key] = True
        except (RuntimeError, NotImplementedError):
            _bf16_probe_cache[key] = False
    return _bf16_probe_cache[key]


def resolve_precision(precision: str, device: torch.device, threads: Optional[int] = None,
                      batch_per_process: Optional[int] = None) -> str:
    """``fp32``/``bf16`` as asked (bf16 only where an LSTM runs in it); ``auto`` by
    the measured rule in ``distributed.choose_precision`` (threads per process and
    batch per process; unknown: bf16 wherever it runs natively)."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return precision
    supported = device.type in ("cpu", "cuda") and bf16_works_on(device)
    if precision == "bf16" and not supported:
        raise UserError(f"--precision bf16 is not supported on this {device.type} "
                         "(no native bf16 LSTM); use --precision fp32 or auto")
    if precision == "bf16":
        return precision
    return distributed.choose_precision(supported, device, threads, batch_per_process)


def autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ----------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------

def reconstruction_loss(reconstruction: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(reconstruction.float(), x)


def next_step_loss(next_step: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Output step t predicts x_{t+1}; the last step has no target."""
    return F.mse_loss(next_step[:, :-1].float(), x[:, 1:])


def loss_terms(model: LSTMAutoencoder, batch: Tensors, config: TrainConfig) -> dict[str, torch.Tensor]:
    """The loss and its parts for one batch; 'correct' counts right class guesses."""
    out = model(batch["x"])
    terms = {"reconstruction": reconstruction_loss(out.reconstruction, batch["x"])}
    total = terms["reconstruction"]
    if out.logits is not None and "y" in batch:
        terms["classification"] = F.cross_entropy(out.logits.float(), batch["y"])
        total = total + config.ce_weight * terms["classification"]
        terms["correct"] = (out.logits.argmax(1) == batch["y"]).sum().float().detach()
    if out.next_step is not None:
        terms["prediction"] = next_step_loss(out.next_step, batch["x"])
        total = total + config.prediction_weight * terms["prediction"]
    terms["loss"] = total
    return terms


def _summarise(sums: dict[str, torch.Tensor], n: int) -> dict[str, float]:
    metrics = {}
    for name, value in sums.items():
        if name == "correct":
            metrics["accuracy"] = float(value) / n
        else:
            metrics[name] = float(value) / n
    return metrics


def _accumulate(sums: dict, terms: dict, size: int, weight: int = 1) -> None:
    """Add a batch's mean terms times its size (counts times ``weight``, 0 or 1)."""
    for name, value in terms.items():
        value = value.detach() * weight if name == "correct" else value.detach() * size
        sums[name] = sums[name] + value if name in sums else value


@torch.no_grad()
def evaluate(model: LSTMAutoencoder, tensors: Tensors, config: TrainConfig,
             device: torch.device, batch_size: Optional[int] = None) -> dict[str, float]:
    """Mean loss terms (and accuracy where labels exist) of a model on one split.

    Under data-parallel training (``distributed.data_parallel()``) every rank
    evaluates its contiguous share of the rows and the sums are all-reduced, so
    every rank gets the same numbers (README, "Data-parallel training", for the
    measurement against evaluating on rank 0 alone).
    """
    model.eval()
    n = len(tensors["x"])
    batch_size = batch_size or max(config.batch_size, 512)
    rows = distributed.share(n) if distributed.data_parallel() else slice(0, n)
    if rows.stop == rows.start:  # fewer rows than ranks: take part with zero weight
        rows = slice(0, 1)
        weight = 0
    else:
        weight = 1
    sums: dict[str, torch.Tensor] = {}
    for start in range(rows.start, rows.stop, batch_size):
        batch = {k: v[start:min(start + batch_size, rows.stop)] for k, v in tensors.items()}
        with autocast(device, config.precision):
            terms = loss_terms(model, batch, config)
        _accumulate(sums, terms, len(batch["x"]) * weight, weight)
    return _summarise(distributed.all_reduce_sums(sums), n)


@torch.no_grad()
def predict(model: LSTMAutoencoder, x: torch.Tensor, device: torch.device,
            precision: str = "fp32", batch_size: int = 1024):
    """Model outputs for x (batch, time, features), as float32 numpy arrays on the CPU."""
    model.eval()
    parts: dict[str, list] = {}
    for start in range(0, len(x), batch_size):
        with autocast(device, precision):
            out = model(x[start:start + batch_size].to(device))
        for name, value in out._asdict().items():
            if value is not None:
                parts.setdefault(name, []).append(value.float().cpu().numpy())
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


# ----------------------------------------------------------------------------
# Optimisation
# ----------------------------------------------------------------------------

def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = model.parameters()
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
    raise UserError(f"unknown optimizer {config.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")


def learning_rate_at(config: TrainConfig, step: int, total_steps: int) -> float:
    """The learning rate for optimizer step ``step`` (0-based) of ``total_steps``.

    constant: lr throughout. cosine: linear warm-up over ``warmup_fraction`` of
    the steps, then a cosine decay to 1% of lr. onecycle: warm-up over 30% of the
    steps (or ``warmup_fraction`` when set), then the same cosine decay.
    """
    if config.lr_schedule == "constant":
        return config.lr
    warmup = config.warmup_fraction or (0.3 if config.lr_schedule == "onecycle" else 0.0)
    warmup_steps = int(warmup * total_steps)
    if step < warmup_steps:
        return config.lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    floor = 0.01 * config.lr
    return floor + (config.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


# ----------------------------------------------------------------------------
# Checkpoints: one dict, written atomically, loaded without unpickling code
# ----------------------------------------------------------------------------

def atomic_torch_save(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint written by ``fit``; UserError with one line saying why if it
    cannot be read (missing, a folder, permission denied, damaged or cut short, not
    one of this project's)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as error:
        raise UserError(read_error_message(path, error, "checkpoint",
                                           "train again or pass another --checkpoint")) from None
    except Exception as error:  # torch raises many kinds for a damaged file
        raise UserError(f"checkpoint {path} cannot be read ({type(error).__name__}): it is damaged "
                        "(cut short or copied in text mode) or not a checkpoint of this project; "
                        "train again or pass another --checkpoint") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not a checkpoint of this project ({CHECKPOINT_FORMAT})")
    return checkpoint


def model_from_checkpoint(checkpoint: dict, device: torch.device) -> LSTMAutoencoder:
    """The best-validation model stored in a checkpoint, ready for evaluation."""
    model = LSTMAutoencoder(**checkpoint["model_args"])
    model.load_state_dict(checkpoint["best_model_state"])
    return model.to(device).eval()


def _cpu_state(model: torch.nn.Module) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


# ----------------------------------------------------------------------------
# Progress: a line per epoch; a tqdm bar within each epoch on a terminal
# ----------------------------------------------------------------------------

class EpochProgress:
    """A tqdm bar within one epoch on stderr: batches done, rate, time left in the
    epoch, the loss, and the time left in the whole training (this epoch's pace
    times the epochs still to come). Drawn only on a terminal and only in the
    main process (grid workers share the terminal); otherwise silent, and the
    one line per epoch that ``fit`` logs is the progress."""

    def __init__(self, label: str, epoch: int, epochs: int, total_batches: int):
        enabled = sys.stderr.isatty() and multiprocessing.parent_process() is None
        self.total, self.epochs_after = total_batches, epochs - epoch
        self.done, self.last_postfix = 0, 0.0
        self.bar = tqdm(total=total_batches, desc=f"{label}epoch {epoch}/{epochs}",
                        unit="batch", leave=False, disable=not enabled, file=sys.stderr,
                        mininterval=0.5, dynamic_ncols=True)

    def update(self, done: int, loss: Callable[[], float]) -> None:
        """``done`` batches finished so far; ``loss()`` (read at most twice a second,
        since it waits for the device) is the latest batch's loss."""
        if self.bar.disable:
            return
        now = time.monotonic()
        if now - self.last_postfix >= 0.5:
            self.last_postfix = now
            per_batch = self.bar.format_dict["elapsed"] / max(done, 1)
            left = per_batch * (self.total - done + self.epochs_after * self.total)
            self.bar.set_postfix_str(f"loss {loss():.5f}, training ~{tqdm.format_interval(left)} "
                                     "left", refresh=False)
        self.bar.update(done - self.done)
        self.done = done

    def close(self) -> None:
        self.bar.close()


def format_epoch(label: str, row: dict, epochs: int) -> str:
    parts = [f"{label}epoch {row['epoch']:>3}/{epochs}", f"train {row['train_loss']:.5f}",
             f"val {row['val_loss']:.5f}"]
    if "val_accuracy" in row:
        parts.append(f"val acc {100 * row['val_accuracy']:.2f}%")
    parts += [f"{row['seconds']:.1f}s", f"{row['samples_per_s']:,.0f} samples/s"]
    return "  ".join(parts)


# ----------------------------------------------------------------------------
# The training loop
# ----------------------------------------------------------------------------

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class _NoProgress:
    """EpochProgress's interface, drawing nothing (ranks other than 0)."""

    def update(self, done: int, loss: Callable[[], float]) -> None:
        pass

    def close(self) -> None:
        pass


def _train_step_batch(train: Tensors, index: torch.Tensor, augment: Optional[Augment],
                      augment_rng: torch.Generator, parallel: bool) -> tuple[Tensors, int]:
    """The global batch ``index`` (augmented as a whole, so every rank draws the same
    random numbers), then this rank's contiguous share of it under data parallelism.
    Returns (batch, weight): weight 0 marks a stand-in row for a rank whose share is
    empty (a last batch smaller than the number of ranks)."""
    batch = {k: v.index_select(0, index) for k, v in train.items()}
    if augment is not None:
        batch["x"] = augment(batch["x"], augment_rng)
    if not parallel:
        return batch, 1
    rows = distributed.share(len(index))
    if rows.stop == rows.start:
        return {k: v[:1] for k, v in batch.items()}, 0
    return {k: v[rows] for k, v in batch.items()}, 1


def _load_resume_state(checkpoint_path: Path, config: TrainConfig, model: LSTMAutoencoder) -> dict:
    checkpoint = load_checkpoint(checkpoint_path)
    if checkpoint["train_config"] != asdict(config) or checkpoint["model_args"] != model.model_args:
        raise UserError(f"checkpoint {checkpoint_path} was made with other settings; "
                         "run with the same flags, or without --resume to start afresh")
    return checkpoint


def fit(model: LSTMAutoencoder, data: dict[str, Tensors], config: TrainConfig,
        device: torch.device, checkpoint_path: Optional[Path] = None, resume: bool = False,
        run_config: Optional[dict] = None, log: Optional[Callable[[str], None]] = print,
        label: str = "", augment: Optional[Augment] = None) -> FitResult:
    """Train on data['train'], select on data['val']; leave the best weights in ``model``.

    With ``checkpoint_path`` a checkpoint is written after every epoch; with
    ``resume`` an existing one made with the same settings is continued, and the
    run ends exactly where an uninterrupted one would (same seed, same machine,
    same number of processes). ``augment(x, generator)``, if given, transforms
    each training batch's inputs (which are also the reconstruction targets).

    Data parallel (``distributed.data_parallel()``, set up by ``distributed``):
    the model is wrapped in DistributedDataParallel; every rank draws the same
    permutation and takes its contiguous share of each global batch of
    ``config.batch_size`` rows, its loss weighted by its share of the batch so
    that the averaged gradient is the global batch's; the numbers then match one
    process up to float rounding. Rank 0 alone logs and writes the checkpoint;
    every rank resumes from rank 0's reading of it. Raises UserError when the
    batch is smaller than the number of processes.
    """
    model.to(device)
    train, val = data["train"], data["val"]
    parallel = distributed.data_parallel()
    main = distributed.is_main() or not parallel
    if parallel and config.batch_size < distributed.world_size():
        raise UserError(f"batch size {config.batch_size} is smaller than the "
                        f"{distributed.world_size()} processes; use a larger --batch-size or "
                        "fewer --procs")
    net: torch.nn.Module = model
    if parallel:
        net = DistributedDataParallel(
            model, device_ids=[device.index if device.index is not None
                               else torch.cuda.current_device()] if device.type == "cuda" else None)
    optimizer = make_optimizer(model, config)
    shuffle = torch.Generator().manual_seed(config.seed)
    augment_rng = torch.Generator().manual_seed(config.seed + 1)
    n_train = len(train["x"])
    batches_per_epoch = math.ceil(n_train / config.batch_size)
    total_steps = config.epochs * batches_per_epoch
    result = FitResult()
    best_state = _cpu_state(model)
    start_epoch = 0
    log = log if main else None

    if resume and checkpoint_path is not None:
        checkpoint = distributed.broadcast_from_main(
            lambda: _load_resume_state(checkpoint_path, config, model)
            if Path(checkpoint_path).exists() else None)
        if checkpoint is not None:
            model.load_state_dict(checkpoint["model_state"])
            optimizer.load_state_dict(checkpoint["optimizer_state"])
            shuffle.set_state(checkpoint["rng"]["shuffle"])
            augment_rng.set_state(checkpoint["rng"]["augment"])
            torch.set_rng_state(checkpoint["rng"]["torch"])
            best_state = checkpoint["best_model_state"]
            result = FitResult(checkpoint["history"], checkpoint["best_epoch"],
                               checkpoint["best_val_loss"], checkpoint["seconds"])
            start_epoch = checkpoint["epoch"]
            if log:
                log(f"{label}resuming from {checkpoint_path} after epoch {start_epoch}")

    for epoch in range(start_epoch + 1, config.epochs + 1):
        net.train()
        started = time.perf_counter()
        order = torch.randperm(n_train, generator=shuffle).to(device)
        progress = (EpochProgress(label, epoch, config.epochs, batches_per_epoch) if main
                    else _NoProgress())
        sums: dict[str, torch.Tensor] = {}
        for b in range(batches_per_epoch):
            step = (epoch - 1) * batches_per_epoch + b
            for group in optimizer.param_groups:
                group["lr"] = learning_rate_at(config, step, total_steps)
            index = order[b * config.batch_size:(b + 1) * config.batch_size]
            batch, weight = _train_step_batch(train, index, augment, augment_rng, parallel)
            with autocast(device, config.precision):
                terms = loss_terms(net, batch, config)
            loss = terms["loss"]
            if parallel:  # DDP averages over ranks: weight by this rank's share of the batch
                loss = loss * (weight * len(batch["x"]) * distributed.world_size() / len(index))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
            optimizer.step()
            _accumulate(sums, terms, len(batch["x"]) * weight, weight)
            progress.update(b + 1, lambda: float(terms["loss"]))
        progress.close()
        train_metrics = _summarise(distributed.all_reduce_sums(sums) if parallel else sums, n_train)
        if not math.isfinite(train_metrics["loss"]):
            raise UserError(f"{label}training diverged at epoch {epoch} (loss "
                                     f"{train_metrics['loss']}); lower --lr or set --clip")
        val_metrics = evaluate(model, val, config, device)
        seconds = time.perf_counter() - started
        row = {"epoch": epoch, "lr": learning_rate_at(config, step, total_steps)}
        row.update({f"train_{k}": v for k, v in train_metrics.items()})
        row.update({f"val_{k}": v for k, v in val_metrics.items()})
        row.update(seconds=seconds, samples_per_s=n_train / seconds)
        result.history.append(row)
        result.seconds += seconds
        if row["val_loss"] < result.best_val_loss:
            result.best_val_loss, result.best_epoch = row["val_loss"], epoch
            best_state = _cpu_state(model)
        if log:
            log(format_epoch(label, row, config.epochs))
        if checkpoint_path is not None and main:
            atomic_torch_save({
                "format": CHECKPOINT_FORMAT,
                "model_args": model.model_args,
                "model_state": _cpu_state(model),
                "best_model_state": best_state,
                "optimizer_state": optimizer.state_dict(),
                "train_config": asdict(config),
                "run_config": run_config or {},
                "epoch": epoch,
                "history": result.history,
                "best_epoch": result.best_epoch,
                "best_val_loss": result.best_val_loss,
                "seconds": result.seconds,
                "rng": {"shuffle": shuffle.get_state(), "augment": augment_rng.get_state(),
                        "torch": torch.get_rng_state()},
            }, checkpoint_path)

    model.load_state_dict(best_state)
    return result


def to_device(splits: dict[str, dict[str, np.ndarray]], device: torch.device) -> dict[str, Tensors]:
    """numpy splits -> tensors on the device: float32 inputs, int64 labels."""
    out = {}
    for name, arrays in splits.items():
        out[name] = {}
        for key, array in arrays.items():
            dtype = torch.long if key == "y" else torch.float32
            out[name][key] = torch.as_tensor(np.asarray(array), dtype=dtype).to(device)
    return out
