"""Runs that never lose work or mislead: one run at a time in a run folder (its
lock), a new run never silently replaces an old one (--overwrite to start over),
figures under the run folder and never over the committed figures/, --eval-only
writing beside its checkpoint without replacing the training record, and a
checkpoint of another script named as such."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import lstm_ae_mnist
import lstm_ae_toy
import reproduce
from conftest import REPO_ROOT, is_png
from conftest import refused as shared_refused, snapshot as shared_snapshot
from lstm_ae.cli import run_folder
from lstm_ae.errors import UserError

TINY = ["--quick", "--quiet", "--workers", "1"]


def snapshot(*folders) -> dict:
    """Every file and folder under ``folders``, with each file's digest and mtime."""
    return shared_snapshot(*folders, mtimes=True)


def refused(capsys, call, *names, untouched=()) -> str:
    """conftest.refused, with files' mtimes compared too."""
    return shared_refused(capsys, call, *names, untouched=untouched, mtimes=True)


def toy(run_dir: Path, *extra: str) -> dict:
    return lstm_ae_toy.main([*TINY, "--run-dir", str(run_dir), *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished tiny toy run (a grid of two points); tests copy it, never change it."""
    run = tmp_path_factory.mktemp("trained") / "run"
    toy(run)
    return run


@pytest.fixture
def run(trained, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


def live_lock(run_dir: Path, pid: int, host: str | None = None) -> Path:
    lock = run_dir / run_folder.LOCK_NAME
    lock.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(),
                                "started": "2024-05-01 12:03:07", "token": "other"}))
    return lock


@pytest.fixture
def other_process():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    yield process
    process.kill()
    process.wait()


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


# ---------------------------------------------------------------------------
# 1. A new run never replaces another's; --overwrite; the lock
# ---------------------------------------------------------------------------

def test_a_new_run_where_a_run_is_is_refused_before_anything_is_written(run, capsys):
    refused(capsys, lambda: toy(run), f"{run} holds a run (final.pt after epoch 3 of 3, "
            "grid.csv, results.json); continue it with --resume, start over with --overwrite, "
            "or choose another --run-dir", untouched=[run.parent])


@pytest.mark.parametrize("kept", ["final.pt", "grid.csv", "results.json"])
def test_any_record_of_a_run_is_enough_to_refuse(run, capsys, kept):
    for path in run.iterdir():
        if path.is_file() and path.name != kept:
            path.unlink()
    refused(capsys, lambda: toy(run), "holds a run", kept, untouched=[run.parent])


def test_overwrite_starts_afresh_and_leaves_nothing_of_the_old_run(run):
    assert (run / "figures" / "fig1_grid_validation_curves.png").is_file()
    old = json.loads((run / "results.json").read_text())
    results = toy(run, "--overwrite", "--hidden-size", "8", "--epochs", "2")   # one point: no grid
    assert not (run / "grid.csv").exists()
    assert not (run / "figures" / "fig1_grid_validation_curves.png").exists()
    assert is_png(run / "figures" / "fig1_1_toy_examples.png")
    stored = json.loads((run / "results.json").read_text())
    assert stored["epochs"] == results["epochs"] == 2 and stored["grid"] != old["grid"]
    assert "--overwrite" in stored["provenance"]["argv"]
    assert not (run / run_folder.LOCK_NAME).exists()


def test_clear_run_removes_the_run_folders_figures_only(tmp_path):
    run, outside = tmp_path / "run", tmp_path / "mine"
    for folder in (run / "figures", run / "plots", outside):
        folder.mkdir(parents=True)
        (folder / "old.png").write_bytes(b"png")
    (run / "results.json").write_text("{}")
    (run / "notes.txt").write_text("kept")
    # figures drawn elsewhere: RUN_DIR/figures still goes, the user's folder stays
    removed = run_folder.clear_run(run, outside)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in removed) == [
        "run/figures/old.png", "run/results.json"]
    assert (outside / "old.png").is_file() and (run / "plots" / "old.png").is_file()
    assert (run / "notes.txt").is_file()
    run_folder.clear_run(run, run / "plots")   # a figures folder inside the run folder goes too
    assert not (run / "plots" / "old.png").exists()


@pytest.mark.parametrize("flags, named", [(["--resume"], "--resume"),
                                          (["--eval-only"], "--eval-only")])
def test_overwrite_with_resume_or_eval_only_is_refused(run, capsys, flags, named):
    refused(capsys, lambda: toy(run, "--overwrite", *flags), "--overwrite", named,
            untouched=[run.parent])


@pytest.mark.parametrize("flags", [["--resume"], ["--eval-only"], ["--overwrite"]])
def test_a_folder_in_use_by_another_run_is_refused(run, capsys, other_process, flags):
    live_lock(run, other_process.pid)
    refused(capsys, lambda: toy(run, *flags), "is in use by another run",
            f"pid {other_process.pid}", "started 2024-05-01 12:03)", "another --run-dir",
            untouched=[run.parent])


def test_a_lock_of_another_host_is_never_taken_as_stale(run, capsys):
    live_lock(run, dead_pid(), host="elsewhere.example")
    refused(capsys, lambda: toy(run, "--resume"), "in use", "on elsewhere.example",
            untouched=[run.parent])


@pytest.mark.parametrize("content", ["dead", "garbage", "empty"])
def test_a_stale_or_unreadable_lock_is_taken_over_silently(run, capsys, content):
    lock = run / run_folder.LOCK_NAME
    if content == "dead":
        live_lock(run, dead_pid())
    else:
        lock.write_text("" if content == "empty" else "{not json")
    toy(run, "--eval-only")
    assert "error" not in capsys.readouterr().err
    assert not lock.exists()
    assert "evaluation" in json.loads((run / "results.json").read_text())


def test_the_lock_is_held_during_the_run_and_released_after(tmp_path, monkeypatch):
    run, seen = tmp_path / "run", []
    original = lstm_ae_toy.load_splits

    def spy(args):
        seen.append(json.loads((run / run_folder.LOCK_NAME).read_text()))
        return original(args)
    monkeypatch.setattr(lstm_ae_toy, "load_splits", spy)
    toy(run)
    assert seen and seen[0]["pid"] == os.getpid() and seen[0]["host"] == socket.gethostname()
    assert not (run / run_folder.LOCK_NAME).exists()


@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit, RuntimeError])
def test_the_lock_and_its_new_folder_go_on_interrupts_and_crashes(tmp_path, monkeypatch, stop):
    def stopped(args):
        assert (tmp_path / "new" / "run" / run_folder.LOCK_NAME).is_file()
        raise stop()
    monkeypatch.setattr(lstm_ae_toy, "load_splits", stopped)
    # Ctrl-C ends the script as a shell would report it: exit status 130, one line
    with pytest.raises(SystemExit if stop is KeyboardInterrupt else stop) as ended:
        toy(tmp_path / "new" / "run")
    if stop is KeyboardInterrupt:
        assert ended.value.code == 130
    assert list(tmp_path.iterdir()) == []


def test_a_refused_eval_only_leaves_no_lock_and_no_folder(tmp_path, capsys):
    refused(capsys, lambda: toy(tmp_path / "nothing", "--eval-only"), "final.pt",
            "does not exist", untouched=[tmp_path])
    assert list(tmp_path.iterdir()) == []


def test_a_second_run_under_two_processes_is_refused_in_one_line(run, other_process):
    live_lock(run, other_process.pid)
    before = snapshot(run.parent)
    done = subprocess.run([sys.executable, str(REPO_ROOT / "lstm_ae_toy.py"), *TINY,
                           "--procs", "2", "--run-dir", str(run), "--resume"],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "is in use by another run" in lines[0], done.stderr
    assert snapshot(run.parent) == before


# ---------------------------------------------------------------------------
# 2. Figures go to the run folder, never to the committed figures/
# ---------------------------------------------------------------------------

def test_a_full_run_writes_its_figures_in_its_run_folder_not_in_figures(tmp_path):
    committed = snapshot(REPO_ROOT / "figures")
    run = tmp_path / "run"
    lstm_ae_toy.main(["--n-sequences", "60", "--hidden-size", "8", "--lr", "1e-2",
                      "--batch-size", "32", "--clip", "1", "--epochs", "1", "--grid-epochs", "1",
                      "--workers", "1", "--quiet", "--run-dir", str(run)])
    assert snapshot(REPO_ROOT / "figures") == committed
    assert {p.name for p in (run / "figures").iterdir()} == {
        "fig1_1_toy_examples.png", "fig1_2_toy_reconstruction_a.png",
        "fig1_3_toy_reconstruction_b.png"}


def test_reproduce_uses_the_scripts_layout(tmp_path):
    args = reproduce.build_parser().parse_args(["--quick"])
    toy_part = reproduce.PARTS[0]
    assert reproduce.part_dirs(toy_part, reproduce.QUICK_OUT) == (
        REPO_ROOT / "runs" / "quick" / "toy", REPO_ROOT / "runs" / "quick" / "toy" / "figures")
    assert reproduce.part_argv(toy_part, args, reproduce.QUICK_OUT, {"": []}) == [
        "--quick", "--workers", "1"]
    full = reproduce.build_parser().parse_args([])
    assert reproduce.part_dirs(toy_part, REPO_ROOT) == (REPO_ROOT / "runs" / "toy",
                                                        REPO_ROOT / "figures")
    assert reproduce.part_argv(toy_part, full, REPO_ROOT, {"": []}) == ["--figures-dir", "figures"]
    assert reproduce.part_argv(toy_part, args, tmp_path, {"": []}) == [
        "--quick", "--workers", "1", "--run-dir", str(tmp_path / "toy")]   # figures: RUN_DIR's


def test_reproduce_refuses_to_replace_a_run_it_did_not_start(run, capsys, monkeypatch):
    out = run.parent
    run.rename(out / "toy")
    calls = []
    monkeypatch.setattr(reproduce, "run_part", lambda command: calls.append(command) or 0)
    refused(capsys, lambda: reproduce.main(["--quick", "--out", str(out), "--parts", "toy",
                                            "mnist_row"]),
            "holds a run reproduce.py did not start", "--force", untouched=[out])
    assert calls == []
    reproduce.main(["--quick", "--out", str(out), "--parts", "toy", "--force"])
    assert calls and "--overwrite" in calls[0] and "--resume" not in calls[0]


# ---------------------------------------------------------------------------
# 3. --eval-only writes beside its checkpoint and keeps the training record
# ---------------------------------------------------------------------------

def test_eval_only_of_a_copied_checkpoint_writes_beside_the_copy(run, tmp_path):
    before = snapshot(run)
    copy = tmp_path / "B"
    copy.mkdir()
    shutil.copy(run / "final.pt", copy / "final.pt")
    results = lstm_ae_toy.main(["--quick", "--quiet", "--eval-only", "--checkpoint",
                                str(copy / "final.pt")])
    assert snapshot(run) == before
    stored = json.loads((copy / "results.json").read_text())
    evaluation = stored["evaluation"]
    assert evaluation["checkpoint"] == str(copy / "final.pt")
    assert evaluation["test_mse"] == results["test_mse"]
    assert "--eval-only" in evaluation["command"] and evaluation["date"]
    assert is_png(copy / "figures" / "fig1_2_toy_reconstruction_a.png")
    assert not (copy / run_folder.LOCK_NAME).exists()


def test_eval_only_in_the_run_folder_keeps_the_training_record(run):
    training = json.loads((run / "results.json").read_text())
    results = toy(run, "--eval-only")
    stored = json.loads((run / "results.json").read_text())
    assert {k: v for k, v in stored.items() if k != "evaluation"} == training
    assert stored["evaluation"]["test_mse"] == results["test_mse"] == pytest.approx(
        training["test_mse"])
    assert stored["evaluation"]["provenance"]["argv"] != training["provenance"]["argv"]
    toy(run, "--eval-only")                # a second evaluation replaces the first only
    again = json.loads((run / "results.json").read_text())
    assert {k: v for k, v in again.items() if k != "evaluation"} == training


def test_eval_only_refuses_a_results_file_it_cannot_keep(run, capsys):
    (run / "results.json").write_text("[1, 2")
    refused(capsys, lambda: toy(run, "--eval-only"), "results.json", "cannot be read",
            untouched=[run.parent])


# ---------------------------------------------------------------------------
# 4. A checkpoint of another script is named
# ---------------------------------------------------------------------------

MNIST_TINY = ["--quick", "--quiet", "--no-download", "--workers", "1"]


def test_a_toy_checkpoint_given_to_mnist_eval_only_is_named(run, mnist_dir, capsys):
    refused(capsys, lambda: lstm_ae_mnist.main(
        [*MNIST_TINY, "--data-dir", str(mnist_dir), "--eval-only",
         "--checkpoint", str(run / "final.pt")]),
        "final.pt was made by lstm_ae_toy.py", "evaluate it with that script",
        "a checkpoint of lstm_ae_mnist.py", untouched=[run.parent])


def test_a_toy_run_given_to_mnist_resume_is_named(run, mnist_dir, capsys):
    refused(capsys, lambda: lstm_ae_mnist.main(
        [*MNIST_TINY, "--data-dir", str(mnist_dir), "--run-dir", str(run), "--resume"]),
        "final.pt was made by lstm_ae_toy.py", "continue it with that script",
        "lstm_ae_mnist.py", untouched=[run.parent])


def test_check_script_names_both_scripts():
    stored = {"script": "lstm_ae_toy"}
    run_folder.check_script(Path("x.pt"), stored, "lstm_ae_toy", "evaluate")
    run_folder.check_script(Path("x.pt"), {}, "lstm_ae_mnist", "evaluate")   # older checkpoints
    with pytest.raises(UserError, match=r"x.pt was made by lstm_ae_toy.py; evaluate it with "
                                        r"that script, or pass a checkpoint of lstm_ae_mnist.py"):
        run_folder.check_script(Path("x.pt"), stored, "lstm_ae_mnist", "evaluate")


def test_a_refused_resume_leaves_the_run_folder_as_it_was(trained, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    refused(capsys, lambda: toy(run, "--resume", "--hidden-size", "5"), "--hidden-size",
            untouched=[run])


def test_a_grid_csv_stopped_before_its_first_point_holds_no_run(tmp_path):
    (tmp_path / "grid.csv").write_text("key,label,val_loss\n")
    assert run_folder.held_run(tmp_path) is None
    (tmp_path / "grid.csv").write_text("key,label,val_loss\nk,hs=8,0.1\n")
    assert run_folder.held_run(tmp_path) == "grid.csv"


def test_quick_starts_afresh_in_its_own_smoke_folder_only(tmp_path, capsys):
    (tmp_path / "results.json").write_text("{}")
    smoke = argparse.Namespace(quick=True, resume=False, eval_only=False, overwrite=False,
                               _explicit=frozenset({"quick"}))
    run_folder.claim(smoke, tmp_path, tmp_path / "figures")
    run_folder.release()
    assert not (tmp_path / "results.json").exists()
    assert "--quick starts afresh" in capsys.readouterr().out
    (tmp_path / "results.json").write_text("{}")
    mine = argparse.Namespace(**{**vars(smoke), "_explicit": frozenset({"quick", "run_dir"})})
    with pytest.raises(UserError, match="holds a run"):
        run_folder.claim(mine, tmp_path, tmp_path / "figures")
    assert (tmp_path / "results.json").exists()


def test_a_resume_of_other_data_points_to_overwrite(trained, tmp_path, capsys):
    """Without --resume the folder would be refused too: the way on is --overwrite."""
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    refused(capsys, lambda: toy(run, "--resume", "--data-seed", "5"), "--data-seed 0, not 5",
            "--overwrite instead of --resume", untouched=[run])
