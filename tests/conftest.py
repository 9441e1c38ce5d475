"""Fixtures that write small data files, so no test needs the network or ../shared."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lstm_ae.datasets.standins import (idx_bytes, price_rows, write_mnist, write_prices_csv)  # noqa: F401 (fixtures for the tests)


from lstm_ae.files import REPO_ROOT  # noqa: E402


CACHE_ENV = "LSTM_AE_CACHE_DIR"


@pytest.fixture(scope="session", autouse=True)
def _layout_cache(tmp_path_factory):
    """One layout cache for the whole session (and the scripts it starts): no test writes
    ~/.cache, and a probe of one model shape is paid once."""
    import os
    folder = tmp_path_factory.mktemp("layout-cache")
    before = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(folder)
    yield folder
    if before is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = before


def clean_env(**extra) -> dict:
    """os.environ without the LSTM_AE_ variables a user may have set (the session's
    layout cache kept), plus ``extra``: for scripts run as subprocesses."""
    import os
    env = {k: v for k, v in os.environ.items() if not k.startswith("LSTM_AE_") or k == CACHE_ENV}
    env.update(extra)
    return env


@pytest.fixture(autouse=True)
def _single_thread_and_clean_env(monkeypatch):
    """Tests run one thread each in one process (no oversubscription) and ignore users'
    data variables."""
    torch.set_num_threads(1)
    monkeypatch.delenv("LSTM_AE_MNIST_DIR", raising=False)
    monkeypatch.delenv("LSTM_AE_SP500_CSV", raising=False)
    monkeypatch.setenv("LSTM_AE_PROCS", "1")  # --procs auto is tested where it is named
    monkeypatch.setenv("LSTM_AE_PRECISION", "fp32")  # likewise --precision auto


@pytest.fixture
def mnist_dir(tmp_path) -> Path:
    return write_mnist(tmp_path / "mnist")


@pytest.fixture
def prices_csv(tmp_path) -> Path:
    return write_prices_csv(tmp_path / "prices.csv")


def shared_data(*parts: str) -> Path | None:
    """A file of ../shared/data if this machine has it (never required)."""
    path = REPO_ROOT.parent / "shared" / "data" / Path(*parts)
    return path if path.exists() else None


def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def no_temp_files(folder: Path) -> bool:
    return not any(p.name.startswith(".") and (".tmp" in p.name or ".part" in p.name)
                   for p in folder.rglob("*"))


def script_settings(module, argv=()):
    """A script's settings for ``argv`` as its main() resolves them (the recipe
    applied); reproduce.py has no recipe."""
    from lstm_ae.cli.flags import parse_settings
    parser = module.build_parser()
    if not hasattr(module, "RECIPE"):
        return parser.parse_args(list(argv))
    return parse_settings(parser, module.RECIPE, list(argv))


def snapshot(*folders, mtimes: bool = False) -> dict:
    """Every file and folder under ``folders``: a digest of each file (and its mtime
    with ``mtimes``), to show that nothing was created, changed or removed."""
    import hashlib
    found = {}
    for folder in map(Path, folders):
        if folder.exists():
            for path in [folder, *folder.rglob("*")]:
                if not path.is_file():
                    found[str(path)] = "folder"
                    continue
                digest = hashlib.md5(path.read_bytes()).hexdigest()
                found[str(path)] = (digest, path.stat().st_mtime_ns) if mtimes else digest
    return found


def refused(capsys, call, *names, untouched=(), mtimes: bool = False) -> str:
    """Run call; assert exit 2, one stderr line naming every name, no traceback, and
    nothing created, changed or removed under ``untouched``. Returns the line."""
    import pytest
    from lstm_ae.errors import MAX_MESSAGE
    before = snapshot(*untouched, mtimes=mtimes)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        call()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and len(lines[0]) <= MAX_MESSAGE + 40
    for name in names:
        assert name in lines[0], (name, lines[0])
    assert snapshot(*untouched, mtimes=mtimes) == before
    return lines[0]
