"""Runs that end well: two-process runs never die at exit, and SIGINT/SIGTERM stop
every rank with one line that says how to continue."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO_ROOT
from dist_entries import abort_at_exit_entry, rank1_aborts_after_its_work_entry
from lstm_ae.engine import distributed, runtime
from lstm_ae.engine.checkpoints import load_checkpoint

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(),
                                reason="this PyTorch has no torch.distributed")


def test_ranks_leave_without_running_exit_handlers():
    """An abort at interpreter exit (as the C++ teardown did, one run in eight on a
    CPU with native bf16) no longer kills a finished run."""
    assert distributed.launch(abort_at_exit_entry, 2) == 2.0


def test_a_rank_that_dies_after_its_work_does_not_cost_rank_0_its_result():
    assert distributed.launch(rank1_aborts_after_its_work_entry, 2) == 2.0


def two_process_toy(run_dir: Path, *extra: str) -> list[str]:
    precision = "bf16" if runtime.bf16_works_on(torch.device("cpu")) else "fp32"
    return [sys.executable, str(REPO_ROOT / "lstm_ae_toy.py"), "--quick", "--procs", "2",
            "--precision", precision, "--hidden-size", "8", "--run-dir", str(run_dir),
            "--figures-dir", str(run_dir / "figures"), "--quiet", *extra]


def test_short_two_process_runs_finish_every_time(tmp_path):
    """Eight short two-process runs in a row, each to its results (before the fix,
    about one in eight died at exit on a CPU with native bf16)."""
    env = dict(os.environ, LSTM_AE_PROCS="2")
    for number in range(8):
        run_dir = tmp_path / f"run{number}"
        done = subprocess.run(two_process_toy(run_dir, "--epochs", "1", "--grid-epochs", "1"),
                              capture_output=True, text=True, env=env, timeout=180)
        assert done.returncode == 0, done.stderr
        assert done.stderr == "", done.stderr
        assert (run_dir / "results.json").is_file()
