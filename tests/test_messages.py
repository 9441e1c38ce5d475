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
