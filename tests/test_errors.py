"""Bad input of every kind ends in one line on stderr naming the file or flag, exit
status 2, no traceback, and no new or changed file in the output folders.

Each test builds its own damaged input (no network, no ../shared): files damaged
the ways a download or a copy damages them, flags that cannot work together,
--resume and --eval-only against a run of other data, killed runs' leftovers.
"""

from __future__ import annotations

import gzip
import os
import pathlib
import shutil
import subprocess
import zipfile

import pytest
import torch

import lstm_ae_mnist
import lstm_ae_snp500
import lstm_ae_toy
from lstm_ae.cli.flags import REPO_ROOT
from lstm_ae.cli.main import run_main
from conftest import refused, script_settings, snapshot, write_mnist
from lstm_ae.cli import run_folder
from lstm_ae.cli.experiment import default_output_dirs, prepare_run
from lstm_ae.errors import MAX_MESSAGE, DataError, UserError, one_line, reading
from lstm_ae.files import atomic_path, remove_stale_temp_files
from lstm_ae.engine.checkpoints import CHECKPOINT_FORMAT


# ---------------------------------------------------------------------------
# 1. Damaged or unreadable files: MNIST IDX (gzip and raw), checkpoints
# ---------------------------------------------------------------------------

def text_mode_transfer(content: bytes) -> bytes:
    """What an ASCII-mode FTP or a text-mode copy does to a binary file on Windows."""
    return content.replace(b"\n", b"\r\n")


def damage(path: pathlib.Path, how: str) -> pathlib.Path:
    """Damage ``path`` in place, the way a download or a copy does; return the path
    the error must name."""
    content = path.read_bytes()
    if how == "text_mode":
        assert b"\n" in content
        path.write_bytes(text_mode_transfer(content))
    elif how == "cut_short":
        path.write_bytes(content[:len(content) // 2])
    elif how == "bad_gzip_header":
        path.write_bytes(content[:2] + b"\x07" + content[3:])      # unknown method
    elif how == "bad_crc":
        path.write_bytes(content[:-8] + bytes(8))
    elif how == "html_page":
        path.write_bytes(b"<html><body>404 Not Found</body></html>\n")
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "folder":
        path.unlink()
        path.mkdir()
        (path / "inside").write_bytes(b"x")
    elif how == "raw_truncated":
        raw = path.with_suffix("")
        raw.write_bytes(gzip.decompress(content)[:-100])
        path.unlink()
        return raw
    elif how == "raw_wrong_magic":
        raw = path.with_suffix("")
        raw.write_bytes(b"\x00\x00\x99\x03" + gzip.decompress(content)[4:])
        path.unlink()
        return raw
    else:
        raise ValueError(how)
    return path


def mnist_main(data_dir, out, *extra):
    return lstm_ae_mnist.main(["--quick", "--no-download", "--data-dir", str(data_dir),
                               "--figures-dir", str(out / "fig"), "--run-dir", str(out / "run"),
                               *extra])


@pytest.mark.parametrize("name", ["t10k-images-idx3-ubyte.gz", "train-images-idx3-ubyte.gz"])
@pytest.mark.parametrize("how", ["text_mode", "cut_short", "bad_gzip_header", "bad_crc",
                                 "html_page", "empty", "folder", "raw_truncated",
                                 "raw_wrong_magic"])
def test_damaged_mnist_file_is_one_line_naming_it(tmp_path, capsys, name, how):
    data = write_mnist(tmp_path / "mnist", n_train=40, n_test=20)
    bad = damage(data / name, how)
    out = tmp_path / "out"
    line = refused(capsys, lambda: mnist_main(data, out), bad.name, untouched=[data])
    assert ("delete it" in line or "remove" in line) and not out.exists()


def test_unreadable_mnist_file_says_permission_denied(tmp_path, capsys, monkeypatch):
    data = write_mnist(tmp_path / "mnist", n_train=40, n_test=20)
    target = data / "t10k-labels-idx1-ubyte.gz"
    if os.geteuid() != 0:            # a real permission error where the user is not root
        target.chmod(0)
    else:                            # root reads anything: simulate what others get
        real = pathlib.Path.read_bytes

        def read_bytes(self):
            if self.name == target.name:
                raise PermissionError(13, "Permission denied", str(self))
            return real(self)
        monkeypatch.setattr(pathlib.Path, "read_bytes", read_bytes)
    line = refused(capsys, lambda: mnist_main(data, tmp_path / "out"), target.name)
    assert "permission denied" in line and not (tmp_path / "out").exists()
    target.chmod(0o644)


def test_mnist_folder_that_is_a_file(tmp_path, capsys):
    blocker = tmp_path / "mnist"
    blocker.write_text("not a folder")
    call = lambda: lstm_ae_mnist.main(["--quick", "--data-dir", str(blocker),  # noqa: E731
                                       "--figures-dir", str(tmp_path / "f"),
                                       "--run-dir", str(tmp_path / "r")])
    refused(capsys, call, str(blocker), "not a folder", untouched=[tmp_path])


def make_checkpoint(path: pathlib.Path, **fields) -> pathlib.Path:
    torch.save({"format": CHECKPOINT_FORMAT, "run_config": {}, **fields}, path)
    return path


@pytest.mark.parametrize("how", ["cut_short", "text_mode", "garbage", "folder", "missing",
                                 "other_format", "permission"])
def test_damaged_checkpoint_for_eval_only(tmp_path, capsys, monkeypatch, how):
    path = make_checkpoint(tmp_path / "model.pt", model_args={}, history=[1.0] * 50)
    content = path.read_bytes()
    if how == "cut_short":
        path.write_bytes(content[:len(content) // 2])
    elif how == "text_mode":
        path.write_bytes(text_mode_transfer(content))
    elif how == "garbage":
        path.write_bytes(os.urandom(500))
    elif how == "folder":
        path.unlink()
        path.mkdir()
    elif how == "missing":
        path.unlink()
    elif how == "other_format":
        torch.save({"state_dict": {}}, path)
    elif how == "permission":
        def denied(*args, **kwargs):
            raise PermissionError(13, "Permission denied", str(path))
        monkeypatch.setattr(torch, "load", denied)
    out = tmp_path / "out"
    before = snapshot(tmp_path)
    call = lambda: lstm_ae_toy.main(["--eval-only", "--checkpoint", str(path),  # noqa: E731
                                     "--figures-dir", str(out / "fig"), "--run-dir", str(out / "run")])
    refused(capsys, call, "model.pt")
    assert snapshot(tmp_path) == before


def toy_main(run_dir, *extra):
    return lstm_ae_toy.main(["--quick", "--quiet", "--workers", "1", "--run-dir", str(run_dir),
                             "--figures-dir", str(run_dir / "fig"), *extra])


def test_resume_from_a_damaged_checkpoint_is_refused_before_training(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "final.pt").write_bytes(b"PK\x03\x04 cut short")
    refused(capsys, lambda: toy_main(run, "--resume"), "final.pt", "--resume", untouched=[tmp_path])


def test_resume_from_a_damaged_grid_csv_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "grid.csv").write_bytes(b"key,label\n\xff\xfe\x00bad\n")
    refused(capsys, lambda: toy_main(run, "--resume"), "grid.csv", "UTF-8", untouched=[tmp_path])


def test_reading_helper_names_file_problem_and_fix(tmp_path):
    """lstm_ae.errors.reading, the helper every loader uses, on text and zip damage too."""
    text = tmp_path / "prices.csv"
    text.write_bytes("date,price\n2020-01-01,1\u20ac\n".encode("utf-16"))
    with pytest.raises(DataError, match=r"price CSV .*prices.csv is not UTF-8 text .*save it as UTF-8"):
        with reading(text, "price CSV"):
            text.read_text(encoding="utf-8")
    archive = tmp_path / "prices.zip"
    archive.write_bytes(b"PK\x03\x04" + os.urandom(100))
    with pytest.raises(DataError, match=r"prices.zip is not a valid zip archive.*good copy"):
        with reading(archive, "price archive"):
            zipfile.ZipFile(archive)
    with pytest.raises(DataError, match=r"nowhere.csv does not exist"):
        with reading(tmp_path / "nowhere.csv"):
            (tmp_path / "nowhere.csv").read_bytes()


# ---------------------------------------------------------------------------
# 2. Flags that cannot work together, refused before anything is written
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("script", [lstm_ae_toy, lstm_ae_mnist, lstm_ae_snp500])
@pytest.mark.parametrize("flags, named", [
    (["--lr", "1e-3", "0.001"], "--lr"),
    (["--hidden-size", "32", "16", "32"], "--hidden-size"),
    (["--clip", "none", "1", "none"], "--clip"),
    (["--clip", "1", "1.0"], "--clip"),
    (["--batch-size", "8", "8"], "--batch-size"),
    (["--num-layers", "1", "1"], "--num-layers"),
])
def test_a_grid_value_given_twice_is_refused(tmp_path, capsys, script, flags, named):
    call = lambda: script.main(["--quick", "--figures-dir", str(tmp_path / "f"),  # noqa: E731
                                "--run-dir", str(tmp_path / "r"), *flags])
    refused(capsys, call, named, "twice", untouched=[tmp_path])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flags, named", [
    (["--lr"], "--lr"),
    (["--device", "tpu"], "--device"),
    (["--n-sequences", "3"], "--n-sequences"),
    (["--length", "20"], "--length"),
    (["--checkpoint", "model.pt"], "--checkpoint"),
    (["--eval-only", "--resume"], "--resume"),
])
def test_toy_flags_against_the_data_and_each_other(tmp_path, capsys, flags, named):
    refused(capsys, lambda: toy_main(tmp_path / "run", *flags), named, untouched=[tmp_path])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flags, named", [
    (["--val-size", "40"], "--val-size"),
    (["--val-size", "10", "--train-limit", "31"], "--train-limit"),
    (["--test-limit", "21"], "--test-limit"),
    (["--shift", "28"], "--shift"),
])
def test_mnist_sizes_against_the_data(tmp_path, capsys, flags, named):
    data = write_mnist(tmp_path / "mnist", n_train=40, n_test=20)
    out = tmp_path / "out"
    refused(capsys, lambda: mnist_main(data, out, *flags), named, untouched=[data])
    assert not out.exists()


def test_error_lines_are_short(capsys):
    parser = lstm_ae_toy.build_parser()

    def body(args):
        raise UserError("archive holds: " + ", ".join(f"stock_{k}.csv" for k in range(500))
                        + "\nand more; pass --data FILE")
    line = refused(capsys, lambda: run_main(parser, lstm_ae_toy.RECIPE, body, []), "archive holds", "pass --data FILE")
    assert len(line) <= MAX_MESSAGE + len("lstm_ae_toy.py: error: ")
    assert one_line("a\nb") == "a b"


# ---------------------------------------------------------------------------
# 3. --resume and --eval-only continue only a run of the same data
# ---------------------------------------------------------------------------

TINY = ("--n-sequences", "50", "--hidden-size", "8", "--epochs", "1", "--threads", "1")


def test_resume_and_eval_only_refuse_other_data(tmp_path, capsys):
    run = tmp_path / "run"
    toy_main(run, *TINY, "--data-seed", "0")
    checkpoint = torch.load(run / "final.pt", weights_only=True)
    assert len(checkpoint["run_config"]["data_tag"]) == 40
    refused(capsys, lambda: toy_main(run, *TINY, "--data-seed", "5", "--resume"),
            "--resume", "final.pt", "--data-seed 0, not 5", untouched=[tmp_path])
    refused(capsys, lambda: toy_main(run, "--n-sequences", "60", "--hidden-size", "8",
                                     "--epochs", "1", "--resume"),
            "--n-sequences 50, not 60", untouched=[tmp_path])
    refused(capsys, lambda: toy_main(run, "--eval-only", "--data-seed", "5"),
            "--eval-only", "--data-seed 0, not 5", untouched=[tmp_path])
    # A model or training flag would be ignored: refused, naming it.
    refused(capsys, lambda: toy_main(run, "--eval-only", "--hidden-size", "16", "--lr", "1e-3"),
            "--eval-only evaluates the model of checkpoint", "--hidden-size 8, not 16",
            "--lr", "drop those flags", untouched=[tmp_path])
    # Without a data flag, --eval-only takes the checkpoint's data and says so.
    results = toy_main(run, "--eval-only")
    assert "using the checkpoint's data flags: --n-sequences 50 instead of 600" in capsys.readouterr().out
    assert results["epochs"] == 1


def test_resume_refuses_a_checkpoint_without_data_identity(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    make_checkpoint(run / "final.pt", run_config={"n_sequences": 600})
    refused(capsys, lambda: toy_main(run, "--resume"), "final.pt", "no data identity",
            untouched=[tmp_path])


def test_resume_refuses_a_grid_csv_of_other_data(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "grid.csv").write_text("key,label,best_val_loss,best_epoch,epochs,seconds,"
                                  "samples_per_s,val_curve\nabc123,hs=8,0.1,1,1,1.0,10.0,0.1\n")
    refused(capsys, lambda: toy_main(run, "--resume"), "grid.csv", "--resume",
            untouched=[tmp_path])


# ---------------------------------------------------------------------------
# 5. No run writes over the reference figures: its figures go to RUN_DIR/figures/
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("experiment", ["toy", "mnist_row", "mnist_pixel", "snp500"])
@pytest.mark.parametrize("quick", [True, False])
def test_outputs_go_to_an_ignored_run_folder(experiment, quick):
    figures, run_dir = default_output_dirs(experiment, quick=quick)
    assert figures == run_dir / "figures" != REPO_ROOT / "figures"
    assert run_dir == REPO_ROOT / "runs" / ("quick" if quick else "") / experiment
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    for path in (figures / "fig1_1_toy_examples.png", run_dir / "final.pt"):
        check = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=REPO_ROOT)
        assert check.returncode == 0, f"{path} is not ignored by git"


def test_prepare_run_with_quick_uses_them_and_creates_nothing(tmp_path, monkeypatch):
    from lstm_ae.cli import experiment
    monkeypatch.setattr(experiment, "REPO_ROOT", tmp_path)
    args = script_settings(lstm_ae_toy, ["--quick"])
    ctx = prepare_run(args, "toy")
    assert ctx.figures == tmp_path / "runs" / "quick" / "toy" / "figures"
    assert ctx.run_dir == args.run_dir == tmp_path / "runs" / "quick" / "toy"
    assert [p.name for p in ctx.run_dir.iterdir()] == [".lock"]    # held until the run ends
    run_folder.release()
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------
# 6. Leftovers of killed runs
# ---------------------------------------------------------------------------

def test_leftovers_of_killed_runs_are_removed_and_nothing_else(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    alive = os.getppid()
    figures, run = tmp_path / "fig", tmp_path / "run"
    figures.mkdir()
    run.mkdir()
    stale = [run / f".final.{dead.pid}.tmp.pt", run / f".grid.{dead.pid}.tmp.csv",
             figures / f".fig1_1_toy_examples.{dead.pid}.tmp.png", run / f".write-test-{dead.pid}"]
    kept = [run / f".final.{alive}.tmp.pt", run / "notes.tmp", run / ".hidden",
            figures / "fig1_1_toy_examples.png", run / "final.pt"]
    for path in stale + kept:
        path.write_bytes(b"x")
    args = script_settings(lstm_ae_toy, ["--figures-dir", str(figures), "--run-dir", str(run),
                                         "--resume"])
    prepare_run(args, "toy")
    run_folder.release()
    assert [p for p in stale if p.exists()] == [] and all(p.exists() for p in kept)
    assert remove_stale_temp_files(tmp_path / "missing") == []


def test_atomic_write_killed_midway_leaves_only_a_removable_leftover(tmp_path):
    target = tmp_path / "final.pt"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------
# The shared example, where this machine has it
# ---------------------------------------------------------------------------

CASE = REPO_ROOT.parent / "shared" / "cases" / "mnist_corrupt_deflate"


@pytest.mark.skipif(not CASE.is_dir(), reason="../shared/cases not on this machine")
def test_shared_corrupt_deflate_case(tmp_path, capsys):
    data = tmp_path / "mnist"
    shutil.copytree(CASE, data)
    refused(capsys, lambda: mnist_main(data, tmp_path / "out"), "t10k-images-idx3-ubyte.gz",
            "corrupt compressed data", untouched=[data])
    assert not (tmp_path / "out").exists()


def test_eval_only_data_path_given_or_taken_from_the_checkpoint(tmp_path, monkeypatch, capsys):
    """The S&P script's --data: a path that differs from the checkpoint's is refused,
    the same file spelled otherwise is accepted, and no --data takes the checkpoint's."""
    from lstm_ae.cli import experiment
    stored = tmp_path / "prices.csv"
    stored.write_text("x\n")
    checkpoint = {"run_config": {"data": str(stored), "window": 20, "tickers": ["AMZN", "GOOGL"]}}
    monkeypatch.setattr(experiment, "load_checkpoint", lambda path: checkpoint)
    monkeypatch.setattr(experiment, "model_from_checkpoint", lambda ckpt, device: "model")
    def load(*argv):
        args = script_settings(lstm_ae_snp500, argv)
        experiment.load_for_evaluation(args, torch.device("cpu"), ("data", "window", "tickers"),
                                       tmp_path / "final.pt")
        return args
    with pytest.raises(UserError, match=r"--data .*prices.csv, not .*other.csv"):
        load("--data", str(tmp_path / "other.csv"))
    monkeypatch.chdir(tmp_path)
    assert load("--data", "./prices.csv", "--tickers", "AMZN", "GOOGL").window == 20
    capsys.readouterr()
    args = load("--window", "20")
    assert args.data == str(stored)
    assert "using the checkpoint's data flags: --data " in capsys.readouterr().out
    with pytest.raises(UserError, match="--tickers AMZN GOOGL, not AMZN"):
        load("--tickers", "AMZN")


def test_output_name_taken_by_a_folder_is_refused(tmp_path):
    """A folder where an output file should go: one clear error, the folder left as it was."""
    taken = tmp_path / "grid.csv"
    taken.mkdir()
    with pytest.raises(UserError, match="a folder has that name"):
        with atomic_path(taken) as tmp:
            tmp.write_text("x")
    assert taken.is_dir() and list(tmp_path.iterdir()) == [taken]


def test_output_folder_that_cannot_be_made_is_refused_before_training(tmp_path, capsys):
    """/proc accepts no new folders, even for root: one line, before anything is trained."""
    if not pathlib.Path("/proc/self").exists():
        pytest.skip("needs Linux /proc")
    with pytest.raises(SystemExit) as exit_:
        lstm_ae_toy.main(["--quick", "--figures-dir", "/proc/no-such/figs",
                          "--run-dir", str(tmp_path / "run")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "/proc/no-such/figs" in err[0] and "no folder can be made" in err[0]
    assert not (tmp_path / "run").exists()
