"""Per-process runtime set-up and numeric precision: the one place both the
process layout (distributed.py) and the training loop (training.py) read them.

``setup_runtime`` must run first in every process (it flushes denormals);
``resolve_precision`` turns ``--precision auto|fp32|bf16`` into fp32 or bf16 by
the rule in ``choose_precision``; ``autocast`` applies it to a block.
"""

from __future__ import annotations

import contextlib
import platform
import random
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from lstm_ae.choices import PRECISIONS
from lstm_ae.errors import UserError



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
    the measured rule in ``choose_precision`` (threads per process and
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
    return choose_precision(supported, device, threads, batch_per_process)


def autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()



def choose_precision(bf16_runs: bool, device: torch.device, threads: Optional[int] = None,
                     batch_per_process: Optional[int] = None) -> str:
    """``--precision auto``: bf16 only where it runs here and was measured faster.

    Measured with benchmarks/bench_mnist.py on a 2-core CPU with AVX-512 BF16
    (docs/distributed.md, "Measured on a CPU with AVX-512 BF16"; pixel by pixel,
    samples/s, fp32 vs bf16):
    one process, 2 threads, B=32: 228 vs 187 (H=64), 48 vs 24 (H=128) - bf16 slower;
    one process, 1 thread, B=32: bf16 218 (H=64), 98 (H=128) - bf16 faster;
    one process, 2 threads, B=128: bf16 338 (H=64), 128 (H=128) - bf16 faster.
    So on a CPU bf16 is chosen for one-thread processes or batches of 128 and
    more per process, fp32 otherwise. On CUDA bf16 is chosen wherever it runs
    (tensor cores; not measured by this project yet). Without native bf16 (the
    AVX2 development machine: oneDNN has no bf16 LSTM) it is always fp32.
    ``threads``/``batch_per_process`` unknown (None): bf16 wherever it runs.
    """
    if not bf16_runs:
        return "fp32"
    if device.type != "cpu" or threads is None or batch_per_process is None:
        return "bf16"
    return "bf16" if threads == 1 or batch_per_process >= 128 else "fp32"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"
