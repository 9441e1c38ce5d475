"""Messages that say which file or flag is wrong and what to do: one line on
stderr, exit status 2, nothing half-written."""

from __future__ import annotations

import errno
import os

import pytest

import lstm_ae_mnist
import lstm_ae_toy
from lstm_ae.errors import UserError
from lstm_ae.files import write_text_atomic


def toy(tmp_path, *extra):
    return lstm_ae_toy.main(["--quick", "--hidden-size", "8", "--epochs", "1", "--quiet",
                             "--run-dir", str(tmp_path / "run"),
                             "--figures-dir", str(tmp_path / "fig"), *extra])


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_a_full_disk_names_the_file_and_the_way_on(tmp_path, monkeypatch):
    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(UserError) as refused:
        write_text_atomic(tmp_path / "results.json", "{}")
    message = str(refused.value)
    assert f"cannot write {tmp_path / 'results.json'} (no space left on the device" in message
    assert "MiB free there" in message and "--resume" in message
    assert list(tmp_path.iterdir()) == []          # the temporary file is gone too


def test_a_full_disk_during_a_run_is_one_line(tmp_path, monkeypatch, capsys):
    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(SystemExit) as stopped:
        toy(tmp_path)
    assert stopped.value.code == 2
    line = one_error_line(capsys)
    assert "cannot write" in line and "no space left on the device" in line
    assert "Errno" not in line and "rank" not in line


def test_resume_with_another_hidden_size_names_it(tmp_path, capsys):
    toy(tmp_path)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        toy(tmp_path, "--resume", "--hidden-size", "12")
    line = one_error_line(capsys)
    assert "--hidden-size 8, not 12" in line and "final.pt" in line


def test_data_dir_that_is_a_file_says_so(tmp_path, mnist_dir, capsys):
    one_file = next(mnist_dir.iterdir())
    for extra in (["--no-download"], []):
        with pytest.raises(SystemExit) as stopped:
            lstm_ae_mnist.main(["--quick", "--data-dir", str(one_file), *extra,
                                "--run-dir", str(tmp_path / "run")])
        assert stopped.value.code == 2
        line = one_error_line(capsys)
        assert f"--data-dir {one_file} is a file, not a folder" in line
        assert str(mnist_dir) in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("script, argv, expected", [
    ("lstm_ae_toy.py", ["--hiden-size", "3"], "--hiden-size: did you mean --hidden-size?"),
    ("lstm_ae_toy.py", ["--length", "10"], "--length must be at least 35"),
    ("lstm_ae_toy.py", ["--eval-only", "--checkpoint", "no-such.pt"], "no-such.pt does not exist"),
    ("lstm_ae_snp500.py", ["--start", "01/02/2016"], "use YYYY-MM-DD"),
    ("lstm_ae_mnist.py", ["--input", "pixels"], "invalid choice: 'pixels'"),
    ("lstm_ae_mnist.py", ["--data-dir", "README.md"], "is a file, not a folder"),
    ("lstm_ae_snp500.py", ["--data", "no-such-prices.csv"], "no-such-prices.csv not found"),
    ("lstm_ae_snp500.py", ["--windw", "20"], "did you mean --window?"),
])
def test_bad_flags_and_missing_files_are_refused_before_torch_loads(script, argv, expected):
    """One line, exit status 2, and torch never imported (it alone takes about 3 s)."""
    import subprocess
    import sys
    from conftest import REPO_ROOT
    done = subprocess.run([sys.executable, "-X", "importtime", script, *argv], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    errors = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")}
    assert done.returncode == 2 and len(errors) == 1 and expected in errors[0], done.stderr[-2000:]
    assert "torch" not in imported and "matplotlib" not in imported
