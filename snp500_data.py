"""S&P 500 daily prices for Part 3: reading, pivoting, splitting, scaling, windowing.

Pure functions returning arrays. Two Kaggle layouts are accepted, plain or gzip,
with column names in any case:

* "SP 500 Stock Prices 2014-2017.csv":  symbol,date,open,high,low,close,volume
* "S&P 500 stock data" (all_stocks_5yr.csv): date,open,high,low,close,volume,Name

Nothing assumes a number of days or a date range: the trading days are the
dates present in the chosen window, and stocks missing any of them are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from io_utils import DataError
from splits import SPLIT_SEED

KAGGLE_FILE = "SP 500 Stock Prices 2014-2017.csv"
LAYOUTS = ("symbol,date,open,high,low,close,volume (\"SP 500 Stock Prices 2014-2017.csv\") or "
           "date,open,high,low,close,volume,Name (all_stocks_5yr.csv), plain or .gz")


@dataclass
class PriceTable:
    dates: np.ndarray        # (days,) datetime64[ns]
    tickers: list[str]       # (stocks,)
    values: np.ndarray       # (stocks, days) float64, no missing values
    n_dropped: int           # stocks dropped for missing days in the window


def read_prices(path, field: str = "high") -> pd.DataFrame:
    """Long table with columns date (datetime64), symbol (str), value (float, NaN if missing)."""
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise DataError(f"{path} not found: download the Kaggle S&P 500 prices, put "
                        f"'{KAGGLE_FILE}' in data/ or pass --data PATH; accepted layouts: "
                        f"{LAYOUTS}") from None
    except (OSError, UnicodeDecodeError, EOFError, ValueError, pd.errors.ParserError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(f"{path} cannot be read as a CSV ({reason}); expected {LAYOUTS}") from None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    ticker = "symbol" if "symbol" in frame.columns else "name" if "name" in frame.columns else None
    field = field.lower()
    missing = [c for c in ("date", field) if c not in frame.columns] + ([] if ticker else ["symbol or Name"])
    if missing:
        raise DataError(f"{path} lacks the column(s) {', '.join(missing)} (it has "
                        f"{', '.join(frame.columns) or 'none'}); expected {LAYOUTS}")
    dates = pd.to_datetime(frame["date"], errors="coerce", format="mixed")
    bad = dates.isna()
    if bad.any():
        example = frame.loc[bad, "date"].iloc[0]
        raise DataError(f"{path}: {int(bad.sum())} date(s) cannot be parsed, e.g. {example!r} "
                        f"(row {int(np.flatnonzero(bad.to_numpy())[0]) + 2}); use YYYY-MM-DD")
    values = pd.to_numeric(frame[field], errors="coerce")
    return pd.DataFrame({"date": dates, "symbol": frame[ticker].astype(str).str.strip(),
                         "value": values.astype(float)})


def pivot_prices(prices: pd.DataFrame, start: Optional[str] = None, end: Optional[str] = None,
                 min_stocks: int = 3) -> PriceTable:
    """One series per stock over the window's trading days; stocks with a gap are dropped."""
    window = prices
    if start is not None:
        window = window[window["date"] >= pd.Timestamp(start)]
    if end is not None:
        window = window[window["date"] <= pd.Timestamp(end)]
    if window.empty:
        raise DataError(f"no prices between {start or 'the start'} and {end or 'the end'}; "
                        "widen --start/--end")
    window = window.drop_duplicates(["date", "symbol"], keep="last")
    table = window.pivot(index="date", columns="symbol", values="value").sort_index()
    complete = table.columns[table.notna().all(axis=0) & (table > 0).all(axis=0)]
    n_dropped = table.shape[1] - len(complete)
    if len(complete) < min_stocks:
        raise DataError(f"only {len(complete)} stock(s) have a price on all {len(table)} trading "
                        f"days of the window ({n_dropped} dropped for gaps); at least "
                        f"{min_stocks} are needed, so choose a wider file or a shorter window")
    table = table[complete]
    return PriceTable(dates=table.index.to_numpy(), tickers=[str(t) for t in table.columns],
                      values=table.to_numpy(dtype=np.float64).T, n_dropped=int(n_dropped))


def split_by_stock(tickers: Sequence[str], fractions=(0.6, 0.2, 0.2), keep_in_test: Sequence[str] = (),
                   seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """Indices of train/val/test stocks; ``keep_in_test`` tickers always land in test."""
    tickers = list(tickers)
    unknown = [t for t in keep_in_test if t not in tickers]
    if unknown:
        raise DataError(f"ticker(s) {', '.join(unknown)} not among the {len(tickers)} complete "
                        "stocks of the window; choose others with --tickers")
    forced = [tickers.index(t) for t in keep_in_test]
    others = np.array([i for i in range(len(tickers)) if i not in forced], dtype=np.int64)
    others = others[np.random.default_rng(seed).permutation(len(others))]
    n_train = int(round(fractions[0] * len(tickers)))
    n_val = int(round(fractions[1] * len(tickers)))
    if n_train < 1 or n_val < 1 or len(others) < n_train + n_val:
        raise DataError(f"{len(tickers)} stocks are too few for train/validation/test splits "
                        "(need at least 3 beyond the --tickers)")
    return {"train": others[:n_train], "val": others[n_train:n_train + n_val],
            "test": np.concatenate([np.array(forced, dtype=np.int64), others[n_train + n_val:]])}


def minmax_scale(values: np.ndarray, fit_length: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """Scale each row to [0, 1] by the min and max of its first ``fit_length`` values
    (all when None). Returns (scaled, scale) with scale (stocks, 2) = (min, max)."""
    fitted = values if fit_length is None else values[:, :fit_length]
    low, high = fitted.min(axis=1), fitted.max(axis=1)
    span = np.where(high > low, high - low, 1.0)
    return (values - low[:, None]) / span[:, None], np.stack([low, low + span], axis=1)


def unscale(scaled: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Back to prices: scaled (stocks, ...) with the (stocks, 2) scale of minmax_scale."""
    low, high = scale[:, 0], scale[:, 1]
    shape = (-1,) + (1,) * (scaled.ndim - 1)
    return scaled * (high - low).reshape(shape) + low.reshape(shape)


def make_windows(series: np.ndarray, window: int, stride: int) -> np.ndarray:
    """(stocks, days) -> (n, window) windows starting every ``stride`` days; the last
    window of each stock is aligned with its end so no day is left out."""
    days = series.shape[1]
    if window > days:
        raise DataError(f"--window {window} is longer than the {days} trading days")
    starts = list(range(0, days - window + 1, stride))
    if starts[-1] != days - window:
        starts.append(days - window)
    return np.concatenate([series[:, s:s + window] for s in starts], axis=0)


def tile_windows(days: int, window: int) -> list[tuple[int, int]]:
    """(start, first new day) pairs of windows covering 0..days-1 without gaps; the
    last window is aligned with the end and contributes only its new days."""
    tiles, start = [], 0
    while start + window < days:
        tiles.append((start, start))
        start += window
    tiles.append((days - window, start))
    return tiles
