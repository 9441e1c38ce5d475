"""Every candidate process layout on each part's default model and batch, and what
--procs auto --precision auto picks, in one run.

For the toy, MNIST row by row, MNIST pixel by pixel and the S&P model (each
script's ``probe_shape``: its first grid point and batch), prints the samples/s
of every CPU layout candidate (processes x threads per process x precision) as
a run's epoch lines count them (training and validation of random data of the
real shape through ``training.fit``), measured on epochs three times the probe's,
then the layout the probe of lstm_ae/engine/layout.py picks (probed afresh, in a
temporary cache: the user's cache is neither read nor written), auto/best, and
the probe's own wall time. A benchmark, not a test: compare layouts within one
run only, on an otherwise idle machine.

    python benchmarks/bench_layouts.py               # all four parts, a few minutes on 2 cores
    python benchmarks/bench_layouts.py --parts pixel
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import lstm_ae_mnist  # noqa: E402
import lstm_ae_snp500  # noqa: E402
import lstm_ae_toy  # noqa: E402
from lstm_ae.cli.flags import parse_settings  # noqa: E402
from lstm_ae.engine import distributed, layout  # noqa: E402
from lstm_ae.engine.runtime import bf16_works_on, cpu_model  # noqa: E402

# part -> (script, its flags, whether auto may pick bf16 there)
PARTS = {
    "toy": (lstm_ae_toy, [], lstm_ae_toy.BF16_CHECKED),
    "row": (lstm_ae_mnist, ["--input", "row"], lstm_ae_mnist.BF16_CHECKED["row"]),
    "pixel": (lstm_ae_mnist, ["--input", "pixel"], lstm_ae_mnist.BF16_CHECKED["pixel"]),
    "snp500": (lstm_ae_snp500, [], lstm_ae_snp500.BF16_CHECKED),
}


def part_shape(name: str) -> layout.ProbeShape:
    """The part's probe shape as its script computes it from its default settings."""
    module, argv, _ = PARTS[name]
    return module.probe_shape(parse_settings(module.build_parser(), module.RECIPE, argv))


def auto_pick(shape: layout.ProbeShape, allow_bf16: bool) -> tuple[str, float]:
    """(label, probe seconds) of what --procs auto --precision auto picks (main points the
    cache at an empty temporary folder, so this probes afresh)."""
    started = time.perf_counter()
    choice = layout.choose_layout(shape, "auto", "auto", None, allow_bf16, log=None)
    return choice.candidate.label, time.perf_counter() - started


def measure_part(name: str, candidates: list, batches: int) -> str:
    """One table row: every candidate's samples/s, the best auto may pick, auto's pick."""
    shape = part_shape(name)
    allow = PARTS[name][2]
    rates = {c.label: layout.probe(c, shape, batches) for c in candidates}
    allowed = [c.label for c in candidates if c.precision == "fp32" or allow]
    best = max(allowed, key=rates.get)
    pick, seconds = auto_pick(shape, allow)
    cells = " | ".join(f"{rates[c.label]:,.0f}" + ("" if c.label in allowed else " (not allowed)")
                       for c in candidates)
    return (f"| {name} ({shape.model['hidden_size']}, {shape.batch_size}) | {cells} | {best} | "
            f"{pick} | {100 * rates[pick] / rates[best]:.0f}% | {seconds:.1f} s |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--parts", nargs="+", choices=sorted(PARTS), default=list(PARTS),
                        help="parts to measure (default: all four)")
    parser.add_argument("--batches", type=int, default=3 * layout.PROBE_BATCHES,
                        help="training batches per measured epoch (default: %(default)s)")
    args = parser.parse_args(argv)
    cores, bf16 = distributed.cpu_cores(), bf16_works_on(torch.device("cpu"))
    candidates = layout.cpu_candidates(cores, bf16, "auto", "auto", None)
    print(f"{cpu_model()}, {cores} cores, native bf16: {'yes' if bf16 else 'no'}, "
          f"torch {torch.__version__}; samples/s of epochs of {args.batches} batches")
    print("| part (H, B) | " + " | ".join(c.label for c in candidates)
          + " | best | auto picks | auto vs best | probe |")
    print("| --- " * (len(candidates) + 5) + "|")
    with tempfile.TemporaryDirectory(prefix="bench-layouts-") as cache:
        os.environ[layout.CACHE_ENV] = cache       # this process only: the user's cache untouched
        for name in args.parts:
            print(measure_part(name, candidates, args.batches), flush=True)


if __name__ == "__main__":
    main()
