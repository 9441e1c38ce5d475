"""The one training loop shared by the three experiments.

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

import math
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from lstm_ae.engine import distributed
from lstm_ae.engine.checkpoints import (CHECKPOINT_FORMAT, atomic_torch_save, cpu_state,
                                        load_checkpoint)
from lstm_ae.engine.progress import EpochProgress, NoProgress, finish_estimate, format_epoch
from lstm_ae.engine.runtime import autocast
from lstm_ae.choices import LR_SCHEDULES, OPTIMIZERS
from lstm_ae.errors import UserError
from models import AutoencoderConfig, LSTMAutoencoder


Tensors = dict[str, torch.Tensor]
Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


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
    reconstruction_loss: str = "mse"      # trained on: mse, or bce (outputs in [0, 1])


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = math.inf
    seconds: float = 0.0


# ----------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------

def reconstruction_loss(reconstruction: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(reconstruction.float(), x)


def binary_cross_entropy(reconstruction: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """BCE of outputs in [0, 1] (a sigmoid's) against targets in [0, 1], in fp32
    outside autocast, the outputs clamped to [1e-6, 1 - 1e-6]."""
    with torch.autocast(reconstruction.device.type, enabled=False):
        probabilities = reconstruction.float().clamp(1e-6, 1 - 1e-6)
        return F.binary_cross_entropy(probabilities, x.float())


def next_step_loss(next_step: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Output step t predicts x_{t+1}; the last step has no target."""
    return F.mse_loss(next_step[:, :-1].float(), x[:, 1:])


def loss_terms(model: LSTMAutoencoder, batch: Tensors, config: TrainConfig) -> dict[str, torch.Tensor]:
    """The loss and its parts for one batch; 'correct' counts right class guesses."""
    out = model(batch["x"])
    terms = {"reconstruction": reconstruction_loss(out.reconstruction, batch["x"])}  # always MSE
    if config.reconstruction_loss == "bce":
        terms["bce"] = binary_cross_entropy(out.reconstruction, batch["x"])
        total = terms["bce"]
    else:
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
    every rank gets the same numbers (docs/distributed.md, "Validation shared among the ranks", for the
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


@torch.no_grad()
def encode_latents(model: LSTMAutoencoder, x: torch.Tensor, device: torch.device,
                   precision: str = "fp32", batch_size: int = 1024) -> np.ndarray:
    """The latents z of x (batch, time, features), in eval mode: (batch, latent) float32."""
    model.eval()
    parts = []
    for start in range(0, len(x), batch_size):
        with autocast(device, precision):
            z, _ = model.encode(x[start:start + batch_size].to(device))
        parts.append(z.float().cpu().numpy())
    return np.concatenate(parts).astype(np.float32, copy=False)


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
# The training loop: restore, then per epoch train, validate, save
# ----------------------------------------------------------------------------

@dataclass
class _Run:
    """What one call of ``fit`` carries from step to step."""
    model: LSTMAutoencoder
    net: torch.nn.Module                  # the model, wrapped in DDP when data-parallel
    optimizer: torch.optim.Optimizer
    config: TrainConfig
    device: torch.device
    parallel: bool
    main: bool                            # rank 0 (or one process): logs and writes
    shuffle: torch.Generator
    augment_rng: torch.Generator
    batches_per_epoch: int
    result: FitResult
    best_state: dict
    start_epoch: int = 0

    @property
    def total_steps(self) -> int:
        return self.config.epochs * self.batches_per_epoch


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

    Data parallel (``distributed.data_parallel()``): the model is wrapped in
    DistributedDataParallel; every rank draws the same permutation and takes its
    contiguous share of each global batch of ``config.batch_size`` rows, its loss
    weighted by its share of the batch so that the averaged gradient is the
    global batch's; the numbers then match one process up to float rounding.
    Rank 0 alone logs and writes the checkpoint; every rank resumes from rank 0's
    reading of it.
    """
    run = _start(model, data, config, device)
    log = log if run.main else None
    if resume and checkpoint_path is not None:
        _restore(run, checkpoint_path, log, label)
    timed = []  # seconds of the epochs this process trains, for the finish estimate
    for epoch in range(run.start_epoch + 1, config.epochs + 1):
        started = time.perf_counter()
        train_metrics = _train_epoch(run, data["train"], epoch, augment, label)
        val_metrics = evaluate(model, data["val"], config, device)
        row = _record_epoch(run, epoch, train_metrics, val_metrics,
                            time.perf_counter() - started, len(data["train"]["x"]))
        timed.append(row["seconds"])
        if log:
            log(format_epoch(label, row, config.epochs,
                             finish_estimate(timed, config.epochs - epoch)))
        if checkpoint_path is not None and run.main:
            _save(run, epoch, checkpoint_path, run_config)
    model.load_state_dict(run.best_state)
    return run.result


def _start(model: LSTMAutoencoder, data: dict[str, Tensors], config: TrainConfig,
           device: torch.device) -> _Run:
    """Model on the device (in DDP when data-parallel), optimizer, random streams."""
    model.to(device)
    parallel = distributed.data_parallel()
    if parallel and config.batch_size < distributed.world_size():
        raise UserError(f"batch size {config.batch_size} is smaller than the "
                        f"{distributed.world_size()} processes; use a larger --batch-size or "
                        "fewer --procs")
    net: torch.nn.Module = model
    if parallel:
        ids = None
        if device.type == "cuda":
            ids = [device.index if device.index is not None else torch.cuda.current_device()]
        net = DistributedDataParallel(model, device_ids=ids)
    return _Run(model, net, make_optimizer(model, config), config, device, parallel,
                distributed.is_main() or not parallel,
                torch.Generator().manual_seed(config.seed),
                torch.Generator().manual_seed(config.seed + 1),
                math.ceil(len(data["train"]["x"]) / config.batch_size),
                FitResult(), cpu_state(model))


def _restore(run: _Run, checkpoint_path: Path, log, label: str) -> None:
    """Continue from the checkpoint (read by rank 0, sent to every rank), if there is one."""
    checkpoint = distributed.broadcast_from_main(
        lambda: _load_resume_state(checkpoint_path, run.config, run.model)
        if Path(checkpoint_path).exists() else None)
    if checkpoint is None:
        return
    run.model.load_state_dict(checkpoint["model_state"])
    run.optimizer.load_state_dict(checkpoint["optimizer_state"])
    run.shuffle.set_state(checkpoint["rng"]["shuffle"])
    run.augment_rng.set_state(checkpoint["rng"]["augment"])
    torch.set_rng_state(checkpoint["rng"]["torch"])
    run.best_state = checkpoint["best_model_state"]
    run.result = FitResult(checkpoint["history"], checkpoint["best_epoch"],
                           checkpoint["best_val_loss"], checkpoint["seconds"])
    run.start_epoch = checkpoint["epoch"]
    if log:
        log(f"{label}resuming from {checkpoint_path} after epoch {run.start_epoch}")


def _load_resume_state(checkpoint_path: Path, config: TrainConfig, model: LSTMAutoencoder) -> dict:
    checkpoint = load_checkpoint(checkpoint_path)
    # Fields an older checkpoint lacks read as their defaults (what that code did).
    stored = {**field_defaults(AutoencoderConfig), **checkpoint["model_config"],
              **field_defaults(TrainConfig), **checkpoint["train_config"]}
    changed = setting_differences(stored,
                                  {**model.model_args, **asdict(config)})
    if changed:
        raise UserError(f"--resume: checkpoint {checkpoint_path} was made with other settings "
                        f"({changed}); run with the checkpoint's settings, or start afresh "
                        "with --overwrite or another --run-dir")
    return checkpoint


def field_defaults(config_class) -> dict:
    """The default of every field of a dataclass that has one."""
    return {f.name: f.default for f in fields(config_class) if f.default is not MISSING}


def setting_differences(stored: dict, current: dict, limit: int = 4) -> str:
    """'--hidden-size 32, not 64; --lr 0.001, not 0.003' for the settings that differ,
    named as flags (a setting without a flag keeps its own name)."""
    def show(value) -> str:
        if isinstance(value, (list, tuple)):
            return " ".join(show(v) for v in value)
        return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
    names = [name for name in stored if stored.get(name) != current.get(name)]
    names += [name for name in current if name not in stored]
    parts = [f"--{name.replace('_', '-')} {show(stored.get(name))}, not {show(current.get(name))}"
             for name in names[:limit]]
    return "; ".join(parts) + ("; ..." if len(names) > limit else "")


def _train_epoch(run: _Run, train: Tensors, epoch: int, augment: Optional[Augment],
                 label: str) -> dict[str, float]:
    """One pass over the training split in random order; the mean loss terms."""
    config, n_train = run.config, len(train["x"])
    run.net.train()
    order = torch.randperm(n_train, generator=run.shuffle).to(run.device)
    progress = (EpochProgress(label, epoch, config.epochs, run.batches_per_epoch) if run.main
                else NoProgress())
    sums: dict[str, torch.Tensor] = {}
    for b in range(run.batches_per_epoch):
        step = (epoch - 1) * run.batches_per_epoch + b
        for group in run.optimizer.param_groups:
            group["lr"] = learning_rate_at(config, step, run.total_steps)
        index = order[b * config.batch_size:(b + 1) * config.batch_size]
        batch, weight = _train_step_batch(train, index, augment, run.augment_rng, run.parallel)
        terms = _step(run, batch, weight, len(index))
        _accumulate(sums, terms, len(batch["x"]) * weight, weight)
        progress.update(b + 1, lambda: float(terms["loss"]))
    progress.close()
    metrics = _summarise(distributed.all_reduce_sums(sums) if run.parallel else sums, n_train)
    if not math.isfinite(metrics["loss"]):
        raise UserError(f"{label}training diverged at epoch {epoch} (loss "
                        f"{metrics['loss']}); lower --lr or set --clip")
    return metrics


def _step(run: _Run, batch: Tensors, weight: int, global_rows: int) -> dict[str, torch.Tensor]:
    """Forward, backward, clip and update on one batch; its loss terms."""
    with autocast(run.device, run.config.precision):
        terms = loss_terms(run.net, batch, run.config)
    loss = terms["loss"]
    if run.parallel:  # DDP averages over ranks: weight by this rank's share of the batch
        loss = loss * (weight * len(batch["x"]) * distributed.world_size() / global_rows)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if run.config.clip is not None:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.config.clip)
    run.optimizer.step()
    return terms


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


def _record_epoch(run: _Run, epoch: int, train_metrics: dict, val_metrics: dict,
                  seconds: float, n_train: int) -> dict:
    """Append the epoch's row to the history; keep the weights if validation improved."""
    last_step = epoch * run.batches_per_epoch - 1
    row = {"epoch": epoch, "lr": learning_rate_at(run.config, last_step, run.total_steps)}
    row.update({f"train_{k}": v for k, v in train_metrics.items()})
    row.update({f"val_{k}": v for k, v in val_metrics.items()})
    row.update(seconds=seconds, samples_per_s=n_train / seconds)
    run.result.history.append(row)
    run.result.seconds += seconds
    if row["val_loss"] < run.result.best_val_loss:
        run.result.best_val_loss, run.result.best_epoch = row["val_loss"], epoch
        run.best_state = cpu_state(run.model)
    return row


def _save(run: _Run, epoch: int, path: Path, run_config: Optional[dict]) -> None:
    """The checkpoint after ``epoch``: everything a resumed run needs to end where an
    uninterrupted one would."""
    atomic_torch_save({
        "format": CHECKPOINT_FORMAT,
        "model_config": run.model.model_args,
        "model_state": cpu_state(run.model),
        "best_model_state": run.best_state,
        "optimizer_state": run.optimizer.state_dict(),
        "train_config": asdict(run.config),
        "run_config": run_config or {},
        "epoch": epoch,
        "history": run.result.history,
        "best_epoch": run.result.best_epoch,
        "best_val_loss": run.result.best_val_loss,
        "seconds": run.result.seconds,
        "rng": {"shuffle": run.shuffle.get_state(), "augment": run.augment_rng.get_state(),
                "torch": torch.get_rng_state()},
    }, path)


def to_device(splits: dict[str, dict[str, np.ndarray]], device: torch.device) -> dict[str, Tensors]:
    """numpy splits -> tensors on the device: float32 inputs, int64 labels."""
    out = {}
    for name, arrays in splits.items():
        out[name] = {}
        for key, array in arrays.items():
            dtype = torch.long if key == "y" else torch.float32
            out[name][key] = torch.as_tensor(np.asarray(array), dtype=dtype).to(device)
    return out
