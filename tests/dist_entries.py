"""Entry points of the processes that tests/test_distributed.py starts: a module of
its own with light imports, since every spawned process imports it."""

import os

import torch

from lstm_ae.engine import distributed
from models import LSTMAutoencoder
from lstm_ae.engine.training import TrainConfig, fit, to_device
from lstm_ae.engine.runtime import setup_runtime
from lstm_ae.datasets.synthetic import generate_toy_sequences

CPU = torch.device("cpu")


class Interrupt(Exception):
    pass


def toy_data():
    x, _ = generate_toy_sequences(70, 36, seed=4)
    x = x[:, :, None]
    return {"train": {"x": x[:50]}, "val": {"x": x[50:60]}, "test": {"x": x[60:]}}


# 50 rows in global batches of 15: the last batch of 5 splits 3 + 2 over two ranks.
CONFIG = TrainConfig(epochs=4, batch_size=15, lr=1e-2, clip=0.5, seed=5)


def train_entry(stop_at_epoch=None, checkpoint=None, resume=False):
    """One rank of a data-parallel fit (run by distributed.launch): its final weights."""
    setup_runtime(1)
    distributed.init_process_group(CPU)
    torch.manual_seed(0)
    model = LSTMAutoencoder(1, 6)

    def log(line):
        if stop_at_epoch and f"epoch   {stop_at_epoch}/" in line:
            raise Interrupt(f"stopped at epoch {stop_at_epoch}")
    fit(model, to_device(toy_data(), CPU), CONFIG, CPU, checkpoint_path=checkpoint,
        resume=resume, log=log)
    return {k: v.clone() for k, v in model.state_dict().items()}


def crash_entry():
    setup_runtime(1)
    distributed.init_process_group(CPU)
    if distributed.rank() == 1:
        os._exit(3)               # dies without a word
    torch.distributed.barrier()   # rank 0 would wait here for ever
    return "never"


def abort_at_exit_entry():
    """Every rank asks for an abort at interpreter exit, as the C++ teardown did on
    CPUs with native bf16: ranks must leave without running exit handlers."""
    import atexit
    setup_runtime(1)
    distributed.init_process_group(CPU)
    atexit.register(os.abort)
    total = torch.ones(1)
    torch.distributed.all_reduce(total)
    return float(total)


def rank1_aborts_after_its_work_entry():
    """Rank 1 finishes its work, then aborts (SIGABRT) while leaving the process
    group, while rank 0 still writes: rank 0's result must come back all the same."""
    import time
    setup_runtime(1)
    distributed.init_process_group(CPU)
    total = torch.ones(1)
    torch.distributed.all_reduce(total)
    if distributed.rank() == 1:
        distributed.shutdown = os.abort     # what _child calls after the work
        return None
    time.sleep(2.0)                         # rank 1 is gone by now
    return float(total)
