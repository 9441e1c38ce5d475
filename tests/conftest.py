"""Fixtures that write small data files, so no test needs the network or ../shared."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch


REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _single_thread_and_clean_env(monkeypatch):
    """Tests run one thread each in one process (no oversubscription) and ignore users'
    data variables."""
    torch.set_num_threads(1)
    monkeypatch.delenv("LSTM_AE_MNIST_DIR", raising=False)
    monkeypatch.delenv("LSTM_AE_SP500_CSV", raising=False)
    monkeypatch.setenv("LSTM_AE_PROCS", "1")  # --procs auto is tested where it is named


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array in the IDX format (magic 0x0000 08 ndim, big-endian dims)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_mnist(folder: Path, n_train: int = 300, n_test: int = 100, gz: bool = True,
                seed: int = 0) -> Path:
    """A small MNIST-shaped data set: each class is a bright bar in its own row band,
    so it can be learned in a few epochs."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = (rng.random((n, 28, 28)) * 40).astype(np.uint8)
        for k, label in enumerate(labels):
            images[k, 2 + 2 * label:4 + 2 * label, 4:24] = 255
        for kind, array in (("images-idx3-ubyte", images), ("labels-idx1-ubyte", labels)):
            content = idx_bytes(array)
            name = f"{prefix}-{kind}"
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(content))
            else:
                (folder / name).write_bytes(content)
    return folder


@pytest.fixture
def mnist_dir(tmp_path) -> Path:
    return write_mnist(tmp_path / "mnist")


def price_rows(n_stocks: int = 12, n_days: int = 160, seed: int = 0):
    """Random-walk daily prices: (tickers, dates, {field: (stocks, days)})."""
    rng = np.random.default_rng(seed)
    tickers = ["AMZN", "GOOGL"] + [f"S{k:02d}" for k in range(n_stocks - 2)]
    dates = np.array(np.busday_offset("2015-01-01", np.arange(n_days), roll="forward"),
                     dtype="datetime64[D]")
    close = 50 * np.exp(np.cumsum(rng.normal(0.0005, 0.02, (n_stocks, n_days)), axis=1))
    high = close * (1 + rng.uniform(0, 0.02, close.shape))
    low = close * (1 - rng.uniform(0, 0.02, close.shape))
    return tickers, dates, {"open": close, "high": high, "low": low, "close": close,
                            "volume": rng.integers(1000, 5000, close.shape)}


def write_prices_csv(path: Path, layout: str = "symbol", n_stocks: int = 12, n_days: int = 160,
                     drop: dict | None = None, gz: bool = False) -> Path:
    """A CSV in either Kaggle layout. ``drop`` maps ticker -> day indices to leave out
    (a ragged history or a gap)."""
    tickers, dates, fields = price_rows(n_stocks, n_days)
    lines = (["symbol,date,open,high,low,close,volume"] if layout == "symbol"
             else ["date,open,high,low,close,volume,Name"])
    for s, ticker in enumerate(tickers):
        for d, date in enumerate(dates):
            if drop and d in drop.get(ticker, ()):
                continue
            values = ",".join(f"{fields[f][s, d]:.4f}" for f in ("open", "high", "low", "close"))
            volume = fields["volume"][s, d]
            lines.append(f"{ticker},{date},{values},{volume}" if layout == "symbol"
                         else f"{date},{values},{volume},{ticker}")
    text = "\n".join(lines) + "\n"
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


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
