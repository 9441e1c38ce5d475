"""Data-parallel training on torch.distributed (gloo, CPU): the same numbers as one
process, scripts under --procs 2 and torchrun, resume, and a crashed rank."""

import json
import os
import subprocess
import sys
import time

import pytest
import torch

from lstm_ae.engine import distributed
import lstm_ae_mnist
import lstm_ae_snp500
import lstm_ae_toy
from conftest import REPO_ROOT, clean_env, is_png, no_temp_files, write_mnist, write_prices_csv
from lstm_ae.errors import UserError
from lstm_ae.reporting import provenance
from models import LSTMAutoencoder
from lstm_ae.engine.training import fit, to_device
from lstm_ae.engine.checkpoints import load_checkpoint
from dist_entries import CONFIG, crash_entry, toy_data, train_entry

CPU = torch.device("cpu")
pytestmark = pytest.mark.skipif(not torch.distributed.is_available(),
                                reason="this PyTorch has no torch.distributed")


def close(a: dict, b: dict, rtol: float) -> bool:
    return all(torch.allclose(a[k], b[k], rtol=rtol, atol=1e-7) for k in a)


def test_share_splits_rows_like_array_split():
    assert [distributed.share(5, 2, r) for r in (0, 1)] == [slice(0, 3), slice(3, 5)]
    assert [distributed.share(1, 2, r) for r in (0, 1)] == [slice(0, 1), slice(1, 1)]
    assert distributed.share(7) == slice(0, 7)  # one process: everything


def test_two_processes_equal_one_then_resume_equals_uninterrupted(tmp_path):
    torch.manual_seed(0)
    single = LSTMAutoencoder(1, 6)
    fit(single, to_device(toy_data(), CPU), CONFIG, CPU, log=None)
    both = distributed.launch(train_entry, 2)
    # 4 epochs x 4 optimizer steps with gradients all-reduced over two ranks.
    assert close(both, single.state_dict(), rtol=1e-5)
    assert not close(both, LSTMAutoencoder(1, 6).state_dict(), rtol=1e-3)  # it did train

    path = tmp_path / "final.pt"
    started = time.monotonic()
    with pytest.raises(UserError) as crashed:   # rank 0 raises; rank 1 waits in a collective
        distributed.launch(train_entry, 2, 3, path)
    assert time.monotonic() - started < 60
    message = str(crashed.value)
    assert "\n" not in message and "rank 0" in message and "stopped at epoch 3" in message
    assert load_checkpoint(path)["epoch"] == 2
    resumed = distributed.launch(train_entry, 2, None, path, True)
    assert all(torch.equal(resumed[k], both[k]) for k in both)
    assert load_checkpoint(path)["epoch"] == 4


def test_a_rank_that_dies_ends_the_run_with_one_line():
    started = time.monotonic()
    with pytest.raises(UserError) as crashed:
        distributed.launch(crash_entry, 2)
    assert time.monotonic() - started < 60
    assert str(crashed.value) == ("training process rank 1 exited with status 3; "
                                  "the other processes were stopped")


class Left(Exception):
    """What the stand-in for distributed.leave raises, with the status it was given."""


def test_a_torchrun_rank_leaves_with_the_status_it_would_have_had(monkeypatch, tmp_path):
    def leave(status):
        raise Left(status)
    monkeypatch.setattr(distributed, "under_torchrun", lambda: True)
    monkeypatch.setattr(distributed, "leave", leave)
    out = ["--run-dir", str(tmp_path / "run"), "--figures-dir", str(tmp_path / "fig")]
    for argv, status in ((["--quick", "--length", "30"], 2), (["--quick"], 0)):
        monkeypatch.setattr(sys, "argv", ["lstm_ae_toy.py", *argv, *out])
        with pytest.raises(Left) as left:
            lstm_ae_toy.main()               # from the command line: argv None
        assert left.value.args == (status,)
    assert (tmp_path / "run" / "results.json").is_file()   # the work was done before leaving
    results = lstm_ae_toy.main(["--quick", "--resume", *out])   # from Python: returns
    assert "test_mse" in results


def test_procs_auto_and_limits(monkeypatch):
    assert distributed.resolve_procs("auto", CPU) == 1     # where no probe chose (--eval-only)
    assert distributed.resolve_procs("3", CPU) == 3
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert distributed.resolve_procs("auto", torch.device("cuda")) == 4   # one per GPU
    assert distributed.resolve_procs("auto", torch.device("mps")) == 1
    with pytest.raises(UserError, match="MPS"):
        distributed.resolve_procs("2", torch.device("mps"))
    with pytest.raises(UserError, match="only 4 GPU"):
        distributed.resolve_procs("5", torch.device("cuda"))


# ----------------------------------------------------------------------------
# The scripts, under --procs 2 and under torchrun
# ----------------------------------------------------------------------------

SCRIPTS = {
    "toy": (lstm_ae_toy, ["--quick", "--n-sequences", "300", "--epochs", "2"],
            lambda r: [r["test_mse"]]),
    "mnist": (lstm_ae_mnist, ["--quick", "--no-download", "--train-limit", "200",
                              "--test-limit", "100", "--lr", "1e-2", "--hidden-size", "8",
                              "--batch-size", "50"],
              lambda r: [r["test_reconstruction_mse"], r["test_cross_entropy"]]),
    "snp500": (lstm_ae_snp500, ["--quick", "--hidden-size", "8", "--window", "30"],
               lambda r: [r["reconstruction"]["mse_price"],
                          r["one_step"]["model"]["mse_price"]]),
}


def script_args(name, tmp_path, folder):
    module, flags, numbers = SCRIPTS[name]
    data = []
    if name == "mnist":
        data = ["--data-dir", str(write_mnist(tmp_path / "mnist"))]
    if name == "snp500":
        data = ["--data", str(write_prices_csv(tmp_path / "prices.csv"))]
    out = ["--figures-dir", str(tmp_path / folder / "fig"), "--run-dir", str(tmp_path / folder / "run")]
    return module, flags + data + out, numbers


def check_one_results_file(folder):
    run = folder / "run"
    assert sorted(p.name for p in run.iterdir() if p.name.endswith(".json")) == ["config.json", "results.json"]
    assert all(is_png(p) for p in (folder / "fig").iterdir())
    assert no_temp_files(folder) and not (run / ".lock").exists()     # rank 0 released it
    return json.loads((run / "results.json").read_text())


@pytest.fixture(scope="module")
def one_process_results(tmp_path_factory):
    """Each script's quick run in one process, computed once for both launchers."""
    cache = {}

    def get(name):
        if name not in cache:
            folder = tmp_path_factory.mktemp(name)
            module, flags, numbers = script_args(name, folder, "one")
            results = module.main(flags + ["--workers", "1"])
            layout = results["provenance"]["layout"]     # one process: recorded too
            assert (layout["processes"], layout["launcher"]) == (1, "one process")
            assert {"device", "threads_per_process", "precision", "reason",
                    "processes_chosen_by", "precision_chosen_by"} <= set(layout)
            cache[name] = numbers(results)
        return cache[name]
    return get


@pytest.mark.parametrize("name", sorted(SCRIPTS))
@pytest.mark.parametrize("how", ["procs", "torchrun"])
def test_scripts_under_two_processes_match_one(name, how, tmp_path, one_process_results):
    one = one_process_results(name)
    module, flags, numbers = script_args(name, tmp_path, "two")
    env = clean_env()
    script = REPO_ROOT / f"{module.__name__}.py"
    if how == "procs":
        command = [sys.executable, str(script), *flags, "--procs", "2"]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   "--nproc-per-node", "2", str(script), *flags]
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("results: ") == 1          # rank 0 alone prints the summary
    two = check_one_results_file(tmp_path / "two")
    layout = two["provenance"]["layout"]      # recorded by every script, under either launcher
    assert (layout["processes"], layout["threads_per_process"]) == (2, 1)
    assert layout["launcher"] == ("--procs" if how == "procs" else "torchrun")
    assert layout["processes_chosen_by"] == ("given" if how == "procs" else "torchrun")
    assert {"device", "precision", "reason", "precision_chosen_by"} <= set(layout)
    assert done.stdout.count("layout: cpu, 2 processes x 1 thread, ") == 1
    for a, b in zip(one, numbers(two)):
        assert b == pytest.approx(a, rel=0.02)
    if name == "toy":  # the grid's two points went to the two ranks; rank 0 wrote the CSV
        rows = (tmp_path / "two" / "run" / "grid.csv").read_text().splitlines()
        assert len(rows) == 3


def test_ranks_of_main_called_from_python_record_the_scripts_command(tmp_path, monkeypatch):
    """main(argv) from Python under --procs 2: rank 0 writes results.json in a spawned
    process whose sys.argv is the caller's (here pytest's), not the script's."""
    monkeypatch.delenv(provenance.COMMAND_VARIABLE, raising=False)   # restored afterwards
    argv = ["--quick", "--procs", "2", "--threads", "1", "--quiet",
            "--figures-dir", str(tmp_path / "f"), "--run-dir", str(tmp_path / "r")]
    lstm_ae_toy.main(argv)
    recorded = json.loads((tmp_path / "r" / "results.json").read_text())["provenance"]
    assert recorded["argv"] == argv
    assert recorded["command"].startswith("python lstm_ae_toy.py --quick --procs 2")
    assert recorded["layout"]["processes"] == 2


def test_only_a_child_of_the_noting_process_inherits_its_command(monkeypatch):
    """A rank takes the parent's command and start; a stale value (another parent) is ignored."""
    monkeypatch.setattr(provenance, "_command", {"prog": None, "argv": None,
                                                  "started": time.monotonic()})
    noted = dict(prog="lstm_ae_toy.py", argv=["--quick"], started=time.monotonic() - 100)
    monkeypatch.setenv(provenance.COMMAND_VARIABLE, json.dumps(dict(noted, pid=os.getppid())))
    inherited = provenance.run_provenance()
    assert inherited["command"] == "python lstm_ae_toy.py --quick"
    assert inherited["wall_clock_s"] >= 100        # counted from the parent's start
    monkeypatch.setattr(provenance, "_command", {"prog": None, "argv": None,
                                                  "started": time.monotonic()})
    monkeypatch.setenv(provenance.COMMAND_VARIABLE, json.dumps(dict(noted, pid=os.getpid())))
    stale = provenance.run_provenance()
    assert stale["argv"] == sys.argv[1:] and stale["wall_clock_s"] < 100


def test_bad_input_under_two_processes_is_one_line(tmp_path):
    command = [sys.executable, str(REPO_ROOT / "lstm_ae_toy.py"), "--quick", "--procs", "2",
               "--length", "30", "--figures-dir", str(tmp_path / "f"),
               "--run-dir", str(tmp_path / "r")]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "lstm_ae_toy.py: error: --length must be at least 35 to hold the window, got 30"]
    assert not (tmp_path / "r" / "results.json").exists()


def test_procs_flag_is_checked():
    with pytest.raises(SystemExit) as error:
        lstm_ae_toy.main(["--procs", "0"])
    assert error.value.code == 2


def test_the_rank_that_failed_on_its_own_is_named_not_the_one_that_lost_it(tmp_path):
    """Rank 1 dies; rank 0 then fails on the broken connection, and the parent may see
    rank 0 first: the line names rank 1."""
    class Ended:
        def __init__(self, code):
            self.exitcode = code
    (tmp_path / "crash-0").write_text("RuntimeError: [gloo] Read error: Connection reset by peer")
    processes = [Ended(1), Ended(3)]
    assert distributed._root_failure(processes, tmp_path, (0, 1), settle_s=0) == (1, 3)
    (tmp_path / "crash-1").write_text("ValueError: bad")
    assert distributed._root_failure(processes, tmp_path, (0, 1), settle_s=0) == (1, 3)
    (tmp_path / "crash-1").write_text("RuntimeError: Connection closed by peer")
    assert distributed._root_failure(processes, tmp_path, (0, 1), settle_s=0) == (0, 1)


def test_bad_input_under_torchrun_is_printed_once(tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
               "2", str(REPO_ROOT / "lstm_ae_toy.py"), "--quick", "--length", "30",
               "--figures-dir", str(tmp_path / "f"), "--run-dir", str(tmp_path / "r")]
    done = subprocess.run(command, cwd=REPO_ROOT, env=clean_env(), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode != 0            # torchrun reports the ranks' status 2 itself
    assert done.stderr.count("lstm_ae_toy.py: error: --length must be at least 35") == 1
    assert "exitcode  : 2" in done.stderr and not (tmp_path / "r").exists()


def test_a_secondary_rank_waits_silently_before_it_exits_on_bad_input(monkeypatch, capsys):
    """Rank 1 must not exit at once: torchrun would stop rank 0 before it printed."""
    from lstm_ae.cli import flags
    for name, value in dict(RANK="1", LOCAL_RANK="1", WORLD_SIZE="2").items():
        monkeypatch.setenv(name, value)
    slept = []
    monkeypatch.setattr(flags.time, "sleep", slept.append)
    with pytest.raises(SystemExit) as stop:
        flags.fail(lstm_ae_toy.build_parser(), "--length must be at least 35")
    assert stop.value.code == 2 and slept == [flags.SECONDARY_RANK_GRACE_S]
    assert flags.SECONDARY_RANK_GRACE_S >= 5 and capsys.readouterr().err == ""
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(SystemExit):
        flags.fail(lstm_ae_toy.build_parser(), "--length must be at least 35")
    assert slept == [flags.SECONDARY_RANK_GRACE_S]       # rank 0 prints at once
    assert capsys.readouterr().err.count("error: --length must be at least 35") == 1


def test_ranks_that_refuse_between_two_looks_are_still_seen_as_failed(tmp_path):
    """Both ranks refuse and exit while the parent looks: exit codes read None, then 2.
    The parent must name the failure, not take the run for finished without a result."""
    class Ending:
        def __init__(self):
            self.reads, self.read_end = 0, os.pipe()[0]
            self.sentinel = self.read_end

        @property
        def exitcode(self):
            self.reads += 1
            return None if self.reads == 1 else 2
    processes = [Ending(), Ending()]
    for process in processes:          # their sentinels ready at once, as for ended processes
        os.close(os.dup2(os.open(os.devnull, os.O_RDONLY), process.read_end))
    assert distributed._wait(processes, tmp_path) == (0, 2)


def test_ranks_start_with_sigint_ignored_and_the_parent_keeps_its_handler():
    """A Ctrl-C to the terminal's group while a rank is still starting (importing torch)
    is no traceback there: the rank starts with SIGINT ignored."""
    import multiprocessing
    import signal
    before = signal.getsignal(signal.SIGINT)
    ranks = [multiprocessing.get_context("spawn").Process(target=signal.raise_signal,
                                                          args=(signal.SIGINT,))]
    distributed._start_ignoring_sigint(ranks)
    assert signal.getsignal(signal.SIGINT) is before
    ranks[0].join(60)
    assert ranks[0].exitcode == 0      # with Python's handler: KeyboardInterrupt, status 1
