"""Every candidate process layout on each part's default model and batch, in one run.

For the toy, MNIST row by row, MNIST pixel by pixel and the S&P model (each
part's first grid point), prints the samples/s of every CPU layout candidate
(processes x threads per process x precision) as the training loop counts it
(the probe of lstm_ae/engine/layout.py: two short epochs of random data of the
real shape, training and validation), and the layout today's --procs/--precision
auto rule picks. A benchmark, not a test: compare layouts within one run only.

    python benchmarks/bench_layouts.py               # all four parts
    python benchmarks/bench_layouts.py --parts pixel
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from lstm_ae.engine import distributed, layout  # noqa: E402
from lstm_ae.engine.runtime import bf16_works_on, choose_precision, cpu_model  # noqa: E402

# Each part's default model (its first grid point) and batch, as its RECIPE sets them.
PARTS = {
    "toy": layout.ProbeShape(dict(input_size=1, hidden_size=32, output_activation="sigmoid",
                                  reverse_output=True, init="orthogonal", forget_bias=1.0),
                             steps=50, batch_size=32, val_fraction=1 / 3),
    "row": layout.ProbeShape(dict(input_size=28, hidden_size=128, n_classes=10),
                             steps=28, batch_size=128, val_fraction=5 / 55, ce_weight=1.0),
    "pixel": layout.ProbeShape(dict(input_size=1, hidden_size=64, n_classes=10, chrono_steps=784,
                                    init="orthogonal", reverse_output=True,
                                    position_periods=(7, 14, 28, 196, 392, 784)),
                               steps=784, batch_size=32, val_fraction=5 / 55, ce_weight=0.1),
    "snp500": layout.ProbeShape(dict(input_size=1, hidden_size=32, output_activation="none"),
                                steps=50, batch_size=64, val_fraction=1 / 3),
}


def rule_pick(shape: layout.ProbeShape, cores: int, bf16: bool) -> str:
    """The layout --procs auto --precision auto picks today (distributed.resolve_procs,
    runtime.choose_precision)."""
    procs = distributed.resolve_procs("auto", torch.device("cpu"), bf16)
    threads = max(1, cores // procs)
    precision = choose_precision(bf16, torch.device("cpu"), threads,
                                 max(1, shape.batch_size // procs))
    return layout.Candidate(procs, threads, precision).label


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=sorted(PARTS), default=list(PARTS),
                        help="parts to measure (default: all four)")
    args = parser.parse_args(argv)
    cores, bf16 = distributed.cpu_cores(), bf16_works_on(torch.device("cpu"))
    print(f"{cpu_model()}, {cores} cores, native bf16: {'yes' if bf16 else 'no'}, "
          f"torch {torch.__version__}")
    print("| part | " + " | ".join(c.label for c in layout.cpu_candidates(cores, bf16, "auto", "auto", None))
          + " | best | rule picks | rule vs best |")
    for name in args.parts:
        candidates = layout.cpu_candidates(cores, bf16, "auto", "auto", None)
        rates = {c.label: layout.probe(c, PARTS[name]) for c in candidates}
        best = max(rates, key=rates.get)
        pick = rule_pick(PARTS[name], cores, bf16)
        cells = " | ".join(f"{rates[c.label]:,.0f}" for c in candidates)
        print(f"| {name} | {cells} | {best} | {pick} | "
              f"{100 * rates.get(pick, float('nan')) / rates[best]:.0f}% |", flush=True)


if __name__ == "__main__":
    main()
