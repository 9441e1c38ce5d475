"""Throughput of the MNIST training loop, row by row and pixel by pixel.

Runs the real training engine (``training.fit``) on random MNIST-shaped data
and prints samples/s and the seconds an epoch of 55,000 images would take, so
that changes to the engine, the model or the defaults can be compared. It is a
benchmark, not a test: numbers depend on the machine.

    python benchmarks/bench_mnist.py                       # row and pixel, defaults
    python benchmarks/bench_mnist.py --input pixel --batch-size 64 256 --precision fp32 bf16
    # data-parallel layouts in one run: 1 process (all cores), 2 one-thread processes
    python benchmarks/bench_mnist.py --input pixel --hidden-size 64 --batch-size 32 --procs 1 2

Every layout runs in fresh processes started by ``distributed.launch`` (the
same launcher as ``--procs`` in the scripts), so each measures from the same
start; ``--batch-size`` is the global batch, shared among the processes, and
samples/s counts the global batch.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from lstm_ae.engine import distributed  # noqa: E402
from lstm_ae.cli.flags import positive_int  # noqa: E402
from models import DEVICE_CHOICES, LSTMAutoencoder, resolve_device  # noqa: E402
from lstm_ae.engine.training import TrainConfig, fit, to_device  # noqa: E402
from lstm_ae.engine.runtime import resolve_precision, setup_runtime  # noqa: E402

TRAIN_IMAGES = 55_000
SHAPES = {"row": (28, 28), "pixel": (784, 1)}


def measure(input_mode: str, hidden: int, batch: int, precision: str, batches: int,
            device: torch.device) -> float:
    """Median samples/s of the training epochs after a warm-up epoch."""
    steps, features = SHAPES[input_mode]
    rng = np.random.default_rng(0)
    n = batch * batches
    splits = {"train": {"x": rng.random((n, steps, features), dtype=np.float32),
                        "y": rng.integers(0, 10, n)},
              "val": {"x": rng.random((batch, steps, features), dtype=np.float32),
                      "y": rng.integers(0, 10, batch)}}
    torch.manual_seed(0)
    model = LSTMAutoencoder(features, hidden, n_classes=10, classifier_input="latent")
    config = TrainConfig(epochs=3, batch_size=batch, lr=1e-3, clip=1.0, precision=precision,
                         ce_weight=1.0)
    result = fit(model, to_device(splits, device), config, device, log=None)
    # samples/s of the training part alone: the engine times the epoch with validation,
    # which here is one batch, so the difference is small.
    return float(np.median([row["samples_per_s"] for row in result.history[1:]]))


def measure_layout(input_mode: str, hidden: int, batch: int, precision: str, batches: int,
                   device_name: str, threads: int | None) -> tuple[float, int, str]:
    """One layout, in each of its processes: (samples/s, threads, precision) of rank 0."""
    setup_runtime(distributed.threads_per_process(threads))
    device = resolve_device(device_name)
    distributed.init_process_group(device)
    chosen = resolve_precision(precision, device, allow_bf16=True)  # auto: bf16 wherever it runs
    rate = measure(input_mode, hidden, batch, chosen, batches, device)
    return rate, torch.get_num_threads(), chosen


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="bench_mnist.py", description=__doc__.splitlines()[0])
    parser.add_argument("--input", nargs="+", choices=tuple(SHAPES), default=["row", "pixel"],
                        help="input modes (default: row pixel)")
    parser.add_argument("--hidden-size", type=positive_int, nargs="+", default=[128],
                        help="hidden sizes (default: 128)")
    parser.add_argument("--batch-size", type=positive_int, nargs="+", default=[128],
                        help="batch sizes (default: 128)")
    parser.add_argument("--precision", nargs="+", choices=("auto", "fp32", "bf16"), default=["auto"],
                        help="precisions (default: auto)")
    parser.add_argument("--batches", type=positive_int, default=None,
                        help="batches per timed epoch (default: 20 row, 3 pixel)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="CPU threads (default: PyTorch's choice)")
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto",
                        help="device (default: auto)")
    parser.add_argument("--procs", nargs="+", default=["1"],
                        help="data-parallel layouts to compare, numbers of processes or auto "
                             "(one per GPU; one on the CPU: bench_layouts.py measures those); "
                             "each process gets --threads, else the cores shared out "
                             "(default: 1)")
    args = parser.parse_args(argv)
    setup_runtime(args.threads)
    device = resolve_device(args.device)
    print(f"device {device}, {distributed.cpu_cores()} cores, torch {torch.__version__}")
    for procs, mode, hidden, batch, precision in itertools.product(
            args.procs, args.input, args.hidden_size, args.batch_size, args.precision):
        name = f"procs={procs:<4s} {mode:5s} H={hidden:<4d} B={batch:<4d}"
        try:
            count = distributed.resolve_procs(procs, device)
            resolve_precision(precision, device, allow_bf16=True)  # bf16 where it cannot run: report
        except Exception as error:
            print(f"{name} {precision:5s}: skipped ({error})")
            continue
        batches = args.batches or (20 if mode == "row" else 3)
        rate, threads, chosen = distributed.launch(measure_layout, count, mode, hidden, batch,
                                                   precision, batches, args.device, args.threads)
        print(f"procs={count:<3d} threads={threads:<2d} {mode:5s} H={hidden:<4d} B={batch:<4d} "
              f"{chosen:5s}: {rate:8,.0f} samples/s  {TRAIN_IMAGES / rate:8,.1f} s per epoch of "
              f"{TRAIN_IMAGES:,} images", flush=True)


if __name__ == "__main__":
    main()
