"""Validation on rank 0 alone against shared by 2 ranks (pixel by pixel, H=64,
1,000 random images, one thread per process): seconds per evaluation, median of 3.

    python benchmarks/bench_validation.py
"""
import argparse, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np, torch
from lstm_ae.engine import distributed
from models import LSTMAutoencoder
from lstm_ae.engine.training import TrainConfig, evaluate
from lstm_ae.engine.runtime import setup_runtime

def entry(shared):
    setup_runtime(1)
    distributed.init_process_group(torch.device("cpu"))
    rng = np.random.default_rng(0)
    data = {"x": torch.tensor(rng.random((1000, 784, 1), dtype=np.float32)),
            "y": torch.tensor(rng.integers(0, 10, 1000))}
    torch.manual_seed(0)
    model = LSTMAutoencoder(1, 64, n_classes=10, classifier_input="latent")
    cfg = TrainConfig(batch_size=32, ce_weight=1.0)
    times = []
    for _ in range(3):
        torch.distributed.barrier()
        t = time.perf_counter()
        if shared:
            evaluate(model, data, cfg, torch.device("cpu"))
        elif distributed.rank() == 0:
            with distributed.local():
                evaluate(model, data, cfg, torch.device("cpu"))
        torch.distributed.barrier()  # the others wait for rank 0 at the next collective
        times.append(time.perf_counter() - t)
    return float(np.median(times))

def main(argv=None):
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "),
                            ).parse_args(argv)   # no flags: --help only
    for shared in (False, True):
        print("shared" if shared else "rank 0 only", f"{distributed.launch(entry, 2, shared):.2f} s")


if __name__ == "__main__":
    main()
