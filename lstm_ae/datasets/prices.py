"""S&P 500 daily prices for Part 3: reading and cleaning a price file into one
(stocks, days) table on the union of the file's trading days.

Pure functions returning arrays. Accepted: a CSV (plain, .gz or inside a .zip)
with a date column, a price column (``--field``) and a ticker column named
``symbol``, ``name`` or ``ticker`` (any case), one row per stock and day, as in

* Kaggle "SP 500 Stock Prices 2014-2017.csv":  symbol,date,open,high,low,close,volume
* Kaggle "S&P 500 stock data" (all_stocks_5yr.csv, also read from the Kaggle zip)
* Kaggle sp500_stocks.csv: Date,Symbol,Adj Close,Close,High,Low,Open,Volume
* per-stock Yahoo Finance exports merged with a Name column (``null`` rows)
* Nasdaq historical-data downloads (``$1,273.33``, ``Close/Last``, M/D/YYYY, newest first)

Cleaning rules (each counted in :class:`PriceTable`):
  * a row with no price in any price column (``null``, empty, bare commas) is not
    a trading day: skipped and counted;
  * ``$`` and thousands separators are removed; any other non-number is an error
    naming the cell and its row;
  * dates are read in ONE format for the whole file: ISO, else month first,
    else day first (when only that parses every date), never a mix;
  * identical duplicate rows collapse; conflicting ones are an error.
"""

from __future__ import annotations

import gzip
import io
import zipfile
import zlib
from dataclasses import dataclass, field as dc_field
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from lstm_ae.errors import DataError

KAGGLE_FILE = "SP 500 Stock Prices 2014-2017.csv"
KNOWN_ZIP_MEMBERS = ("all_stocks_5yr.csv", "sp500_stocks.csv", KAGGLE_FILE)
TICKER_COLUMNS = ("symbol", "name", "ticker")
PRICE_COLUMNS = ("open", "high", "low", "close", "adj close", "close/last")
LAYOUTS = "a CSV (plain, .gz or .zip) with date, price and symbol/Name/Ticker columns"
# Tried in order; the first that reads every date of the file is used for all of them.
DATE_FORMATS = ("ISO8601", "%m/%d/%Y", "%d/%m/%Y", "%m/%d/%y", "%d/%m/%y", "%d.%m.%Y", "%Y%m%d")


@dataclass
class PriceTable:
    """Prices of every stock on the union of the file's trading days.

    dates (days,) datetime64[ns]; tickers (stocks,); values (stocks, days) float64
    with NaN where a stock has no price (before its listing, after its delisting,
    a hole). Counts: rows skipped for having no price at all, collapsed duplicates.
    """
    dates: np.ndarray
    tickers: list[str]
    values: np.ndarray
    n_null_rows: int = 0
    n_duplicate_rows: int = 0
    date_format: str = "ISO8601"
    notes: list = dc_field(default_factory=list)


# ---------------------------------------------------------------------------
# Bytes -> text, with one line for every way a file can be damaged
# ---------------------------------------------------------------------------

def check_price_file(path, what: str = "price file") -> None:
    """DataError (one line naming the file and the fix) when ``path`` is missing
    or a folder: the check a script makes before anything heavy loads."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{what} {path} not found: pass --data PATH or set "
                        f"$LSTM_AE_SP500_CSV to a daily-prices CSV ({LAYOUTS})")
    if path.is_dir():
        raise DataError(f"{path} is a folder, not a {what}: pass the CSV file inside it")


def read_text_file(path, what: str = "price file") -> str:
    """The UTF-8 text of ``path`` (plain, .gz, or the known CSV inside a .zip).

    Raises DataError, one line naming the file and the fix, for: missing file,
    a folder, no permission, corrupt or truncated gzip/deflate, a bad zip, a zip
    without a known member, text that is not UTF-8.
    """
    path = Path(path)
    name = str(path)
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        check_price_file(path, what)
        raise
    except PermissionError:
        raise DataError(f"{path} cannot be read (permission denied): fix its permissions "
                        "(chmod u+r) or copy it somewhere readable") from None
    except OSError as error:
        raise DataError(f"{path} cannot be read ({error.strerror or error}); "
                        "check the disk or copy the file again") from None
    redownload = "download or copy it again (in binary mode)"
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            kind = "is truncated" if isinstance(error, EOFError) else "is damaged"
            raise DataError(f"{name}: the gzip data {kind} ({_first_line(error)}); "
                            f"{redownload}") from None
    elif raw[:4] == b"PK\x03\x04" or zipfile.is_zipfile(io.BytesIO(raw)) or path.suffix == ".zip":
        raw = _zip_member(path, raw, redownload)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError(f"{name} is not UTF-8 text (byte {error.start}): save it as UTF-8 CSV, "
                        "or it is not a CSV at all") from None


def _zip_member(path: Path, raw: bytes, redownload: str) -> bytes:
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            names = [n for n in archive.namelist() if not n.endswith("/")]
            by_base = {Path(n).name: n for n in names}
            member = next((by_base[k] for k in KNOWN_ZIP_MEMBERS if k in by_base), None)
            csvs = [n for n in names if n.lower().endswith((".csv", ".csv.gz"))]
            if member is None and len(csvs) == 1:
                member = csvs[0]
            if member is None:
                raise DataError(f"{path} is a zip of {len(names)} files without "
                                f"{KNOWN_ZIP_MEMBERS[0]}: unzip it and pass --data with the "
                                "one CSV of all stocks")
            content = archive.read(member)
            return gzip.decompress(content) if content[:2] == b"\x1f\x8b" else content
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as error:
        raise DataError(f"{path} is a damaged zip archive ({_first_line(error)}); "
                        f"{redownload}") from None


def _first_line(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:120]


# ---------------------------------------------------------------------------
# Text -> long table
# ---------------------------------------------------------------------------

def parse_numbers(cells: pd.Series, column: str, where: str) -> pd.Series:
    """Numbers from text cells: '$1,273.33' -> 1273.33; '', 'null', 'NaN' -> NaN.
    Any other text raises DataError naming the cell and its row (header = row 1)."""
    text = cells.astype("string").str.strip()
    text = text.str.replace(r"^\$|(?<=\d),(?=\d{3})", "", regex=True).str.replace("$", "", regex=False)
    missing = text.isna() | text.str.lower().isin(["", "null", "nan", "na", "n/a", "-", "none"])
    values = pd.to_numeric(text.mask(missing), errors="coerce")
    bad = values.isna() & ~missing
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{where}: {int(bad.sum())} {column} cell(s) are not numbers, e.g. "
                        f"{str(cells.iloc[row])[:40]!r} in row {row + 2}; fix or remove them")
    return values.astype(float)


def parse_dates(cells: pd.Series, where: str) -> tuple[pd.Series, str]:
    """Dates in the one format (of DATE_FORMATS) that reads every cell; raises DataError."""
    text = cells.astype(str).str.strip()
    best = None
    for fmt in DATE_FORMATS:
        dates = pd.to_datetime(text, format=fmt, errors="coerce")
        n_bad = int(dates.isna().sum())
        if n_bad == 0:
            return dates, fmt
        if best is None or n_bad < best[0]:
            best = (n_bad, dates)
    n_bad, dates = best
    row = int(np.flatnonzero(dates.isna().to_numpy())[0])
    raise DataError(f"{where}: {n_bad} date(s) do not fit one date format, e.g. "
                    f"{text.iloc[row]!r} in row {row + 2}; write every date as YYYY-MM-DD")


def read_prices(path, field: str = "high") -> tuple[pd.DataFrame, dict]:
    """Long table (date datetime64, symbol str, value float with NaN for a missing
    cell), sorted by symbol and date, plus counts {n_null_rows, n_duplicate_rows,
    date_format}. Raises DataError (one line) for every problem listed in the module
    docstring."""
    name = str(path)
    text = read_text_file(path)
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False,
                            skip_blank_lines=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as error:
        raise DataError(f"{name} cannot be read as a CSV ({_first_line(error)}); expected "
                        f"{LAYOUTS}") from None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    wanted = field.lower()
    if wanted not in frame.columns and wanted == "close" and "close/last" in frame.columns:
        wanted = "close/last"
    ticker = next((c for c in TICKER_COLUMNS if c in frame.columns), None)
    missing = [c for c in ("date", wanted) if c not in frame.columns]
    missing += [] if ticker else ["symbol/Name/Ticker"]
    if missing:
        raise DataError(f"{name} lacks the column(s) {', '.join(missing)} (it has "
                        f"{', '.join(frame.columns)[:200] or 'none'}); expected {LAYOUTS}")
    price_columns = [c for c in frame.columns if c in PRICE_COLUMNS or c == wanted]
    cells = frame[price_columns].apply(lambda c: c.str.strip().str.lower())
    empty = cells.isin(["", "null", "nan", "na", "n/a", "-", "none"]).all(axis=1)
    n_null = int(empty.sum())
    frame = frame[~empty].reset_index(drop=True)
    if frame.empty:
        raise DataError(f"{name} has no row with a price; expected {LAYOUTS}")
    values = parse_numbers(frame[wanted], wanted, name)
    dates, fmt = parse_dates(frame["date"], name)
    symbols = frame[ticker].str.strip().str.upper()
    if (symbols == "").any():
        row = int(np.flatnonzero((symbols == "").to_numpy())[0])
        raise DataError(f"{name}: row {row + 2} has a price but no {ticker}; fill it in or remove it")
    long = pd.DataFrame({"date": dates, "symbol": symbols, "value": values})
    before = len(long)
    long = long.drop_duplicates()
    n_dup = before - len(long)
    conflict = long.duplicated(["symbol", "date"], keep=False)
    if conflict.any():
        first = long[conflict].iloc[0]
        raise DataError(f"{name}: {int(conflict.sum())} rows give different {field} prices for "
                        f"the same stock and day, e.g. {first['symbol']} on "
                        f"{str(first['date'])[:10]}; keep one row per stock and day")
    long = long.sort_values(["symbol", "date"]).reset_index(drop=True)
    return long, {"n_null_rows": n_null, "n_duplicate_rows": n_dup, "date_format": fmt}


def pivot_prices(prices, start: Optional[str] = None, end: Optional[str] = None) -> PriceTable:
    """(long table, counts) from read_prices -> PriceTable on the union of trading
    days between start and end. Raises DataError when no price lies in the window."""
    long, counts = prices if isinstance(prices, tuple) else (prices, {})
    window = long
    if start is not None:
        window = window[window["date"] >= pd.Timestamp(start)]
    if end is not None:
        window = window[window["date"] <= pd.Timestamp(end)]
    window = window[window["value"].notna()]
    if window.empty:
        raise DataError(f"no prices between {start or 'the start'} and {end or 'the end'}; "
                        "widen --start/--end")
    table = window.pivot(index="date", columns="symbol", values="value").sort_index()
    values = table.to_numpy(dtype=np.float64).T.copy()
    values[~(values > 0)] = np.nan          # a price <= 0 is not a price
    return PriceTable(dates=table.index.to_numpy(), tickers=[str(t) for t in table.columns],
                      values=values, n_null_rows=counts.get("n_null_rows", 0),
                      n_duplicate_rows=counts.get("n_duplicate_rows", 0),
                      date_format=counts.get("date_format", "ISO8601"))


def load_prices(path, field: str = "high", start: Optional[str] = None,
                end: Optional[str] = None) -> PriceTable:
    """read_prices then pivot_prices."""
    return pivot_prices(read_prices(path, field), start, end)
