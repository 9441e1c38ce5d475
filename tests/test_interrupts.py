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


# Short two-process runs in a row; LSTM_AE_STRESS_RUNS=8 (or more) makes this the
# stress test it was written as: before the fix, about one run in eight died at exit on
# a CPU with native bf16. The exit path itself is also tested directly above.
STRESS_RUNS = int(os.environ.get("LSTM_AE_STRESS_RUNS", "2"))


def test_short_two_process_runs_finish_every_time(tmp_path):
    """STRESS_RUNS short two-process runs in a row, each to its results."""
    env = dict(os.environ, LSTM_AE_PROCS="2")
    for number in range(STRESS_RUNS):
        run_dir = tmp_path / f"run{number}"
        done = subprocess.run(two_process_toy(run_dir, "--epochs", "1", "--grid-epochs", "1"),
                              capture_output=True, text=True, env=env, timeout=180)
        assert done.returncode == 0, done.stderr
        assert done.stderr == "", done.stderr
        assert (run_dir / "results.json").is_file()


def wait_for_checkpoint(process: subprocess.Popen, path: Path, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.2)


def group_is_gone(pgid: int) -> bool:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("signum, to_group, procs", [
    (signal.SIGINT, True, "2"),      # Ctrl-C in a terminal: the whole group gets it
    (signal.SIGTERM, False, "2"),    # a job manager signals the parent alone
    (signal.SIGINT, False, "1"),
], ids=["sigint-group-2procs", "sigterm-parent-2procs", "sigint-1proc"])
def test_a_signal_stops_every_rank_with_one_line_and_resume_finishes(tmp_path, signum, to_group,
                                                                     procs):
    run_dir = tmp_path / "run"
    command = two_process_toy(run_dir, "--epochs", "60", "--grid-epochs", "1", "--procs", procs,
                              "--n-sequences", "300")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    wait_for_checkpoint(process, run_dir / "final.pt")
    (os.killpg if to_group else os.kill)(process.pid, signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr and "terminate called" not in stderr, stderr
    name = signal.Signals(signum).name
    assert lines[0].startswith(f"stopped by {name} after epoch ") and "of 60 of the final" in lines[0]
    assert group_is_gone(process.pid), "a training process outlived the run"
    epoch = load_checkpoint(run_dir / "final.pt")["epoch"]
    assert 1 <= epoch < 60
    resume = lines[0].split("continue with: ")[1]
    assert resume.endswith("--resume")
    done = subprocess.run(resume, shell=True, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert load_checkpoint(run_dir / "final.pt")["epoch"] == 60
    assert (run_dir / "results.json").is_file()


def test_the_continue_command_names_the_launcher(monkeypatch, tmp_path):
    from lstm_ae.cli.interrupts import interruption_line
    for name in ("TORCHELASTIC_RUN_ID", "LOCAL_WORLD_SIZE", "WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    line = interruption_line("SIGINT", "lstm_ae_toy.py", ["--epochs", "3"], tmp_path)
    assert line == ("stopped by SIGINT before anything was saved; start again with: "
                    "python lstm_ae_toy.py --epochs 3")
    for name, value in (("TORCHELASTIC_RUN_ID", "x"), ("LOCAL_WORLD_SIZE", "2"),
                        ("WORLD_SIZE", "2"), ("RANK", "0"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)   # what torchrun sets for rank 0
    (tmp_path / "grid.csv").write_text("")
    line = interruption_line("SIGTERM", "lstm_ae_toy.py", ["--epochs", "3"], tmp_path)
    assert line.endswith("start again with: torchrun --standalone --nproc-per-node 2 "
                         "lstm_ae_toy.py --epochs 3")
