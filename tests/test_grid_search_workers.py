"""grid_search with worker processes: Ctrl-C reaches the parent alone, and a search
stopped by an exception or an interrupt leaves no worker process behind."""

import multiprocessing
import os
import signal
import time

import pytest
import torch

from lstm_ae.engine import grid_search
from lstm_ae.engine.grid_search import GridPoint, grid_search as search
from lstm_ae.engine.training import TrainConfig, to_device
from test_grid_search import tiny_splits

CPU = torch.device("cpu")
SLOW_EPOCHS = 10_000   # minutes each: a stopped search must not wait for them


def point(hidden, epochs, **extra_model_args):
    return GridPoint({"hidden_size": hidden}, dict(input_size=1, hidden_size=hidden, **extra_model_args),
                     TrainConfig(epochs=epochs, batch_size=40, lr=1e-2))


def test_worker_processes_ignore_sigint():
    pool = grid_search._worker_pool(tiny_splits(), 1)
    try:
        assert pool.submit(signal.getsignal, signal.SIGINT).result(timeout=120) == signal.SIG_IGN
        pid = pool.submit(os.getpid).result(timeout=60)
        os.kill(pid, signal.SIGINT)
        time.sleep(0.3)
        assert pool.submit(os.getpid).result(timeout=60) == pid     # the same worker, alive
    finally:
        pool.shutdown(wait=True)


@pytest.mark.parametrize("failure", ["a point raises in its worker", "Ctrl-C in the parent"])
def test_a_stopped_search_leaves_no_worker_behind(tmp_path, monkeypatch, failure):
    splits = tiny_splits()
    before = set(multiprocessing.active_children())
    if failure == "a point raises in its worker":
        first, expected = point(4, 1, no_such_argument=1), TypeError
    else:
        first, expected = point(4, 1), KeyboardInterrupt
        real_write, calls = grid_search._write_csv, []

        def write_then_interrupt(*args):     # the first finished point's row: "Ctrl-C"
            calls.append(args)
            if len(calls) == 2:
                raise KeyboardInterrupt
            real_write(*args)
        monkeypatch.setattr(grid_search, "_write_csv", write_then_interrupt)
    seen = []
    real_stop = grid_search._stop_pool

    def stop(pool):
        seen.extend(set(multiprocessing.active_children()) - before)
        real_stop(pool)
    monkeypatch.setattr(grid_search, "_stop_pool", stop)
    points = [first, point(6, SLOW_EPOCHS), point(7, SLOW_EPOCHS)]   # the last one still queued
    started = time.monotonic()
    with pytest.raises(expected):
        search(points, splits, to_device(splits, CPU), CPU, tmp_path / "grid.csv", workers=2,
               quiet=True, log=lambda line: None)
    assert time.monotonic() - started < 60         # the slow points were not waited for
    assert len(seen) == 2                          # two workers were running when it stopped
    assert all(not p.is_alive() and p.exitcode is not None for p in seen)
    assert set(multiprocessing.active_children()) - before == set()
