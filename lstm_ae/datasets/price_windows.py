"""From a PriceTable to the series, splits, scales and windows the models see.

Ragged histories: every stock is used over its own dates. On the union calendar
of the file, a hole of at most ``max_gap`` trading days (another market's
holiday, a missing row) is filled by carrying the last price over; a longer hole
splits the stock's history into separate series. A series shorter than
``min_days`` is "too short" and counted. ``complete_only`` restores the course
report's rule: only stocks with a price on every trading day, one series each.

Scales (``--scale``), each a map z = (f(x) - a) / b per window with f the identity
or log, so a prediction maps back to a price exactly:

* ``first-half``: min-max of the series' first half (the report's prediction scale);
* ``window``: log price relative to the window's FIRST day, times 10: every
  window starts at 0, every step's scale is already seen (causal), so it is
  scale-free across stocks and time; the change head predicts log returns;
* ``log``: log price relative to the series' first day (a global causal scale).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from lstm_ae.choices import SCALES
from lstm_ae.errors import DataError
from lstm_ae.datasets.prices import PriceTable
from lstm_ae.datasets.splits import SPLIT_SEED

# SCALES: the prediction model's scales; "whole" is the reconstruction model's min-max
WINDOW_LOG_FACTOR = 10.0


@dataclass
class Series:
    """One contiguous price history of one stock: days start..start+len-1 of the
    table's calendar; ``first`` is the first day evaluated (one-step), ``start_multi``
    the multi-step forecast's first day (both indices into values)."""
    ticker: str
    start: int
    values: np.ndarray            # (days,) prices, no NaN
    first: int = 1
    start_multi: int = 0

    def __len__(self) -> int:
        return len(self.values)


def stock_series(table: PriceTable, max_gap: int = 5, min_days: int = 2,
                 complete_only: bool = False) -> tuple[list[Series], dict]:
    """Series per stock (see module docstring) and counts {n_stocks, n_series,
    n_too_short_series, n_too_short_stocks, n_filled_days, n_split_holes,
    n_incomplete_stocks (complete_only)}."""
    series, counts = [], dict(n_filled_days=0, n_split_holes=0, n_too_short_series=0,
                              n_incomplete_stocks=0)
    days = len(table.dates)
    for ticker, row in zip(table.tickers, table.values):
        have = np.flatnonzero(~np.isnan(row))
        if complete_only:
            if len(have) < days:
                counts["n_incomplete_stocks"] += 1
                continue
        if len(have) == 0:
            continue
        gaps = np.diff(have) - 1                       # missing trading days between prices
        cuts = np.flatnonzero(gaps > max_gap)
        counts["n_split_holes"] += len(cuts)
        bounds = np.split(have, cuts + 1)
        for part in bounds:
            lo, hi = part[0], part[-1] + 1
            values = row[lo:hi].copy()
            hole = np.isnan(values)
            counts["n_filled_days"] += int(hole.sum())
            if hole.any():                              # carry the last price over
                index = np.where(~hole, np.arange(len(values)), 0)
                values = values[np.maximum.accumulate(index)]
            if len(values) < min_days:
                counts["n_too_short_series"] += 1
                continue
            series.append(Series(ticker, int(lo), values))
    used = {s.ticker for s in series}
    counts.update(n_stocks=len(used), n_series=len(series),
                  n_too_short_stocks=len(set(table.tickers)) - len(used) - counts["n_incomplete_stocks"])
    return series, counts


def choose_tickers(requested: Sequence[str], table: PriceTable, series: list[Series],
                   min_days: int) -> list[str]:
    """--tickers upper-cased, repeats dropped, commas read as separators ("GOOG,AMZN"
    is two tickers); DataError tells a ticker not in the file from one in the file
    whose history is too short."""
    names = [part.strip().upper() for t in requested for part in str(t).split(",")]
    chosen = list(dict.fromkeys(name for name in names if name))
    usable = {s.ticker for s in series}
    for ticker in chosen:
        if ticker in usable:
            continue
        if ticker in table.tickers:
            row = table.values[table.tickers.index(ticker)]
            n = int((~np.isnan(row)).sum())
            raise DataError(f"--tickers {ticker}: it is in the file but its history is too short "
                            f"({n} day(s) with a price; {min_days} needed "
                            "for --window); choose another ticker or a smaller --window")
        raise DataError(f"--tickers {ticker}: not in the file ({len(table.tickers)} tickers, "
                        f"e.g. {', '.join(table.tickers[:5])}); choose others with --tickers")
    return chosen


def split_by_stock(tickers: Sequence[str], fractions=(0.6, 0.2, 0.2),
                   seed: int = SPLIT_SEED) -> dict[str, list[str]]:
    """Tickers of train/val/test stocks by a fixed generator, whatever stocks the
    figures show (--tickers), so the test numbers never move with them. Raises
    DataError when a split would be empty."""
    tickers = np.array(sorted(set(tickers)), dtype=object)
    tickers = tickers[np.random.default_rng(seed).permutation(len(tickers))]
    n_train = int(round(fractions[0] * len(tickers)))
    n_val = int(round(fractions[1] * len(tickers)))
    if n_train < 1 or n_val < 1 or len(tickers) < n_train + n_val + 1:
        raise DataError(f"{len(tickers)} usable stocks are too few for train/validation/test "
                        "splits (need at least 3); use a longer file or a smaller --window")
    return {"train": list(tickers[:n_train]), "val": list(tickers[n_train:n_train + n_val]),
            "test": list(tickers[n_train + n_val:])}


def split_series(series: list[Series], kind: str, window: int, days: int,
                 fractions=(0.6, 0.2, 0.2)) -> dict[str, list[Series]]:
    """Series of each split.

    ``stock``: stocks split 60/20/20 by a fixed seed; a test series is evaluated
    on all its days, the multi-step forecast starting at its middle day.
    ``time``: every stock's days before calendar day 0.6*days train, up to 0.8*days
    validate, the rest test; a test series keeps ``window`` days before the test
    period as history and is evaluated on test days only (multi-step from the first).
    """
    if kind == "stock":
        names = split_by_stock([s.ticker for s in series], fractions)
        out = {name: [Series(s.ticker, s.start, s.values, 1, len(s) // 2) for s in series
                      if s.ticker in set(members)] for name, members in names.items()}
        return out
    cut_val, cut_test = int(round(fractions[0] * days)), int(round(sum(fractions[:2]) * days))
    out = {"train": [], "val": [], "test": []}
    for s in series:
        end = s.start + len(s)
        for name, lo, hi, lead in (("train", 0, cut_val, 0), ("val", cut_val, cut_test, 0),
                                   ("test", cut_test, days, window)):
            a, b = max(s.start, lo - lead), min(end, hi)
            if b - a <= max(lead, 1):
                continue
            values = s.values[a - s.start:b - s.start]
            first = max(1, lo - a)
            out[name].append(Series(s.ticker, a, values, first, first))
    return out


def scale_params(kind: str, windows: np.ndarray, series_params: Optional[np.ndarray] = None):
    """(log?, a, b) of z = (f(x) - a) / b for price windows (n, w). ``series_params``
    (n, 2) are the per-window (low, span) of first-half or (log first price, 1) of log."""
    if kind == "window":
        return True, np.log(windows[:, :1]), np.full((len(windows), 1), 1 / WINDOW_LOG_FACTOR)
    if kind == "log":
        return True, series_params[:, :1], series_params[:, 1:]
    return False, series_params[:, :1], series_params[:, 1:]


def series_params(kind: str, s: Series) -> np.ndarray:
    """(2,) per-series parameters: first-half (low, span) over the series' days before
    its multi-step start (at least 2 days), or (log first price, 1) for log."""
    if kind == "log":
        return np.array([np.log(s.values[0]), 1.0])
    seen = s.values if kind == "whole" else s.values[:max(s.start_multi, 2)]
    low, high = seen.min(), seen.max()
    return np.array([low, high - low if high > low else 1.0])


def encode(kind: str, windows: np.ndarray, params: Optional[np.ndarray]) -> np.ndarray:
    log, a, b = scale_params(kind, windows, params)
    return ((np.log(windows) if log else windows) - a) / b


def decode(kind: str, z: np.ndarray, windows: np.ndarray, params: Optional[np.ndarray]) -> np.ndarray:
    """Prices from model values z (n, k) made from price windows (n, w)."""
    log, a, b = scale_params(kind, windows, params)
    x = z * b + a
    return np.exp(x) if log else x


def window_starts(days: int, window: int, stride: int) -> list[int]:
    """Starts every ``stride`` days; the last window is aligned with the end."""
    starts = list(range(0, days - window + 1, stride))
    if starts and starts[-1] != days - window:
        starts.append(days - window)
    return starts


def model_windows(series: list[Series], window: int, stride: int, kind: str) -> np.ndarray:
    """Scaled training windows (n, window, 1) of every series at least ``window`` long."""
    out = []
    for s in series:
        if len(s) < window:
            continue
        starts = window_starts(len(s), window, stride)
        raw = np.stack([s.values[i:i + window] for i in starts])
        params = np.repeat(series_params(kind, s)[None], len(raw), axis=0)
        out.append(encode(kind, raw, params))
    if not out:
        return np.zeros((0, window, 1))
    return np.concatenate(out)[:, :, None]


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


def tile_windows(days: int, window: int) -> list[tuple[int, int]]:
    """(start, first new day) pairs of windows covering 0..days-1 without gaps; the
    last window is aligned with the end and contributes only its new days."""
    tiles, start = [], 0
    while start + window < days:
        tiles.append((start, start))
        start += window
    tiles.append((max(days - window, 0), start))
    return tiles
