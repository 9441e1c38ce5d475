"""Per-process runtime set-up and numeric precision: the one place both the
process layout (distributed.py) and the training loop (training.py) read them.

``setup_runtime`` must run first in every process (it flushes denormals);
``resolve_precision`` turns ``--precision auto|fp32|bf16`` into fp32 or bf16
where no probe chose it (on a GPU, under torchrun, for --eval-only; the CPU
probe is in layout.py); ``autocast`` applies it to a block.
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


def resolve_precision(precision: str, device: torch.device, allow_bf16: bool = False) -> str:
    """``fp32`` as asked; ``bf16`` as asked, refused in one line where an LSTM does not
    run in it (CPUs without native bf16, MPS); ``auto``: bf16 where it runs and the
    part allows it (``allow_bf16``: its accuracy in bf16 was checked), else fp32."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32" or (precision == "auto" and not allow_bf16):
        return "fp32"
    supported = device.type in ("cpu", "cuda") and bf16_works_on(device)
    if precision == "bf16" and not supported:
        raise UserError(f"--precision bf16 is not supported on this {device.type} "
                         "(no native bf16 LSTM); use --precision fp32 or auto")
    return "bf16" if supported else "fp32"


def autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"
