"""``--procs auto`` and ``--precision auto``: the layout (processes x threads per
process x precision) is chosen by measuring every candidate on the run's own
model and batch shape, on this machine.

Why measure: the fastest layout depends on the model. On a 2-core CPU with
AVX-512 BF16, pixel by pixel (H=64, B=32) ran fastest as two one-thread bf16
processes, row by row (H=128, B=128) as one two-thread bf16 process, and the
toy model as one process; a rule fitted on one of them was a fifth slower on
another (docs/benchmarks.md). A probe trains each candidate for two short
epochs of random data of the real shape through the real training loop
(``training.fit``: DDP, validation and all) and keeps the second epoch's
samples/s, as the epoch lines count it: a one-process candidate in the calling
process (where such a run trains), a data-parallel one in fresh processes. The answer is cached per machine,
PyTorch version and shape (``$LSTM_AE_CACHE_DIR``, else ~/.cache/lstm-ae), so
it is paid once (seconds to a minute, most of it starting the processes of
the data-parallel candidates and the slowest candidate's epochs). GPUs are not
probed (cli/run_layout.py: one process per GPU).

bf16 is a candidate only where the CPU runs it natively and the part's recipe
says bf16 was checked not to cost accuracy (``allow_bf16``).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import torch

from lstm_ae.engine import distributed
from lstm_ae.engine.runtime import bf16_works_on, cpu_model, setup_runtime
from lstm_ae.engine.training import TrainConfig, fit, to_device
from lstm_ae.errors import UserError
from lstm_ae.files import write_json
from models import AutoencoderConfig, LSTMAutoencoder

CACHE_ENV = "LSTM_AE_CACHE_DIR"
PROBE_BATCHES = 6          # training batches per probe epoch
CACHE_VERSION = 2          # 2: one-process candidates probed in the calling process


@dataclass(frozen=True)
class Candidate:
    procs: int
    threads: int
    precision: str         # fp32 or bf16

    @property
    def label(self) -> str:
        """'2x1 bf16': processes x threads per process, precision."""
        return f"{self.procs}x{self.threads} {self.precision}"

    @property
    def words(self) -> str:
        return (f"{self.procs} process{'es' if self.procs > 1 else ''} x {self.threads} "
                f"thread{'s' if self.threads > 1 else ''}, {self.precision}")


@dataclass(frozen=True)
class ProbeShape:
    """What decides the speed of a run: the model, the sequence length, the batch,
    and how much validation an epoch does beside its training."""
    model: dict                        # AutoencoderConfig fields
    steps: int                         # time steps per sequence
    batch_size: int
    val_fraction: float = 0.1          # validation rows per training row
    ce_weight: float = 0.0
    prediction_weight: float = 0.0

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass
class Choice:
    candidate: Candidate
    device: str
    reason: str                        # "measured", "cached measurement", "given" or "rule"
    rates: dict = field(default_factory=dict)   # candidate label -> samples/s, when measured


# ----------------------------------------------------------------------------
# Candidates
# ----------------------------------------------------------------------------

def cpu_candidates(cores: int, bf16: bool, procs: str, precision: str,
                   threads: Optional[int]) -> list[Candidate]:
    """One process using every core, and one one-thread process per core, each in
    fp32 and (where allowed) bf16; narrowed to what the flags fix."""
    precisions = ["fp32", "bf16"] if bf16 else ["fp32"]
    if precision != "auto":
        precisions = [precision]
    shapes = [(1, threads or cores)]
    if cores > 1:
        shapes.append((cores, threads or 1))
    if procs != "auto":
        count = int(procs)
        shapes = [(count, threads or max(1, cores // count))]
    return [Candidate(p, t, prec) for p, t in shapes for prec in precisions]


# ----------------------------------------------------------------------------
# The probe: two short epochs through the real training loop
# ----------------------------------------------------------------------------

def _probe_entry(shape: ProbeShape, precision: str, threads: int, batches: int,
                 label: str = "") -> float:
    """One rank of a probe (or the only process): the second epoch's samples/s."""
    setup_runtime(threads)
    cpu = torch.device("cpu")
    distributed.init_process_group(cpu)
    generator = torch.Generator().manual_seed(0)
    config = AutoencoderConfig(**shape.model)
    n_train = shape.batch_size * batches
    n_val = max(1, round(n_train * shape.val_fraction))
    splits = {}
    for name, n in (("train", n_train), ("val", n_val)):
        splits[name] = {"x": torch.rand(n, shape.steps, config.input_size, generator=generator)}
        if config.n_classes:
            splits[name]["y"] = torch.randint(config.n_classes, (n,), generator=generator)
    train = TrainConfig(epochs=2, batch_size=shape.batch_size, lr=1e-3, precision=precision,
                        ce_weight=shape.ce_weight, prediction_weight=shape.prediction_weight)
    result = fit(LSTMAutoencoder(config), to_device(splits, cpu), train, cpu, log=None,
                 label=label)
    return result.history[-1]["samples_per_s"]


def probe(candidate: Candidate, shape: ProbeShape, batches: int = PROBE_BATCHES) -> float:
    """Samples/s of ``candidate`` on ``shape`` (epochs of ``batches`` training batches):
    a one-process candidate here, in this process (where a one-process run trains;
    no start-up to pay), a data-parallel one in fresh processes (as such a run
    starts them)."""
    if candidate.procs > 1:
        return float(distributed.launch(_probe_entry, candidate.procs, shape,
                                        candidate.precision, candidate.threads, batches))
    threads = torch.get_num_threads()
    try:
        with torch.random.fork_rng(devices=[]):  # the run's own random numbers stay as they were
            return float(_probe_entry(shape, candidate.precision, candidate.threads, batches,
                                      f"[layout probe {candidate.label}] "))
    finally:
        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------
# The cache and the choice
# ----------------------------------------------------------------------------

def cache_path() -> Path:
    base = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "lstm-ae")
    return Path(base) / "layouts.json"


def machine_key() -> str:
    return f"{cpu_model()} | {distributed.cpu_cores()} cores | torch {torch.__version__} | " \
           f"{platform.machine()}"


def _cache_key(shape: ProbeShape, candidates: list[Candidate]) -> str:
    text = json.dumps([CACHE_VERSION, machine_key(), shape.key(), [c.label for c in candidates]])
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _read_cache() -> dict:
    try:
        cache = json.loads(cache_path().read_text())
        return cache if isinstance(cache, dict) else {}
    except (OSError, ValueError):
        return {}


def measured_rates(shape: ProbeShape, candidates: list[Candidate],
                   log=print) -> tuple[dict, bool]:
    """(candidate label -> samples/s, whether it came from the cache)."""
    key = _cache_key(shape, candidates)
    cached = _read_cache().get(key)
    if isinstance(cached, dict) and set(cached) == {c.label for c in candidates}:
        return cached, True
    if log:
        log(f"layout: measuring {len(candidates)} candidate layouts on this model "
            "(once per machine and model shape, then cached) ...")
    rates = {c.label: probe(c, shape) for c in candidates}
    cache = _read_cache()
    cache[key] = rates
    try:
        write_json(cache_path(), cache)
    except UserError:  # an unwritable cache costs a probe next time, nothing more
        pass
    return rates, False


def choose_layout(shape: Optional[ProbeShape], procs: str, precision: str,
                  threads: Optional[int], allow_bf16: bool, log=print) -> Choice:
    """The CPU layout for a run: the candidate measured fastest on ``shape`` (from the
    cache where this machine measured it before), or the one the flags leave.

    bf16 is a candidate where the CPU runs it natively and either the recipe allows
    it (``allow_bf16``) or --precision bf16 asks for it. GPUs are not probed: one
    process per GPU (cli/run_layout.py).
    """
    cpu = torch.device("cpu")
    bf16 = bf16_works_on(cpu) and (allow_bf16 or precision == "bf16")
    candidates = cpu_candidates(distributed.cpu_cores(), bf16, procs, precision, threads)
    if len(candidates) == 1:
        fixed = procs != "auto" and precision != "auto"
        return Choice(candidates[0], "cpu", "given" if fixed else "rule")
    if shape is None:
        raise UserError("choose --procs and --precision (no probe shape for this run)")
    rates, cached = measured_rates(shape, candidates, log)
    best = max(candidates, key=lambda c: rates[c.label])
    return Choice(best, "cpu", "cached measurement" if cached else "measured", rates)
