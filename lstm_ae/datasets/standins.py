"""Small synthetic stand-ins for the real data files, in their real layouts.

``reproduce.py --quick`` runs every part on them when the real MNIST and price
files are not given, and the test suite builds its fixtures from them, so
neither needs the network or ``../shared``. Deterministic for a given seed; the
gzip files carry no timestamp, so the same call writes the same bytes.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Optional

import numpy as np

from lstm_ae.files import write_bytes_atomic, write_text_atomic


def idx_bytes(array: np.ndarray) -> bytes:
    """A uint8 array in the IDX format of LeCun et al.'s MNIST files: magic
    0x0000 08 ndim, then each dimension as a big-endian 32-bit integer, then the data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_mnist(folder: Path, n_train: int = 300, n_test: int = 100, gz: bool = True,
                seed: int = 0) -> Path:
    """The four MNIST files (train-/t10k- images and labels, 28x28 uint8) in ``folder``.

    Each class is a bright bar (255) in its own row band on faint noise (0-39), so
    a model learns it in a few epochs. ``gz``: gzip-compressed ``.gz`` files, as
    distributed; else raw IDX. Returns ``folder``.
    """
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = (rng.random((n, 28, 28)) * 40).astype(np.uint8)
        for k, label in enumerate(labels):
            images[k, 2 + 2 * label:4 + 2 * label, 4:24] = 255
        for kind, array in (("images-idx3-ubyte", images), ("labels-idx1-ubyte", labels)):
            content = idx_bytes(array)
            name = f"{prefix}-{kind}"
            if gz:
                write_bytes_atomic(folder / f"{name}.gz", gzip.compress(content, mtime=0))
            else:
                write_bytes_atomic(folder / name, content)
    return folder


def price_rows(n_stocks: int = 12, n_days: int = 160, seed: int = 0):
    """Random-walk daily prices on business days from 2015-01-01:
    (tickers ["AMZN", "GOOGL", "S00", ...], dates (days,), {field: (stocks, days)}),
    prices in USD around 50, daily log-returns N(0.0005, 0.02)."""
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
                     drop: Optional[dict] = None, gz: bool = False) -> Path:
    """A daily-prices CSV in either Kaggle layout: ``symbol`` ("SP 500 Stock Prices
    2014-2017.csv": symbol,date,open,high,low,close,volume) or ``Name``
    ("all_stocks_5yr.csv": date,open,high,low,close,volume,Name). ``drop`` maps
    ticker -> day indices to leave out (a ragged history or a gap). Returns ``path``."""
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
        write_bytes_atomic(Path(path), gzip.compress(text.encode(), mtime=0))
    else:
        write_text_atomic(Path(path), text)
    return path
