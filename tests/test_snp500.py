import json

import numpy as np
import pytest
import torch

from lstm_ae.evaluation import forecasting as fc
import lstm_ae_snp500
from conftest import is_png, price_rows, shared_data, write_prices_csv
from lstm_ae.errors import DataError
from models import LSTMAutoencoder
from lstm_ae.datasets.price_windows import (Series, choose_tickers, decode, encode, model_windows,
                                            split_series, stock_series, tile_windows,
                                            window_starts)
from lstm_ae.datasets.prices import load_prices

CPU = torch.device("cpu")


def write_layout(path, header, row, n_stocks=4, n_days=40, skip=None, newest_first=False,
                 date=lambda d: str(d), extra=""):
    """A CSV with any header; ``row(ticker, date_text, high)`` gives one line."""
    tickers, dates, fields = price_rows(n_stocks, n_days)
    lines = [header]
    for s, ticker in enumerate(tickers):
        days = range(n_days - 1, -1, -1) if newest_first else range(n_days)
        for d in days:
            if skip and d in skip.get(ticker, ()):
                continue
            lines.append(row(ticker, date(dates[d].astype(object)), fields["high"][s, d]))
    path.write_text("\n".join(lines) + "\n" + extra)
    return path, tickers, fields["high"]


@pytest.mark.parametrize("layout, gz", [("symbol", False), ("name", False), ("symbol", True)])
def test_both_kaggle_layouts_plain_or_gzip(tmp_path, layout, gz):
    path = write_prices_csv(tmp_path / ("p.csv.gz" if gz else "p.csv"), layout=layout, gz=gz)
    table = load_prices(path, "high")
    assert table.values.shape == (12, 160) and not np.isnan(table.values).any()
    assert {"AMZN", "GOOGL"} <= set(table.tickers)
    assert np.all(np.diff(table.dates) > np.timedelta64(0))


@pytest.mark.parametrize("column", ["symbol", "Symbol", "Name", "Ticker", "ticker"])
def test_ticker_column_names(tmp_path, column):
    path, tickers, high = write_layout(tmp_path / "p.csv", f"Date,High,{column}",
                                       lambda t, d, h: f"{d},{h:.4f},{t}")
    table = load_prices(path, "HIGH")
    assert sorted(table.tickers) == sorted(tickers)
    k = table.tickers.index("AMZN")
    assert np.allclose(table.values[k], high[0], atol=1e-4)


def test_dollar_signs_thousands_and_newest_first(tmp_path):
    path, tickers, high = write_layout(
        tmp_path / "p.csv", "Date,Close/Last,Volume,Open,High,Low,Symbol",
        lambda t, d, h: f'{d},$1.00,100,$1.00,"${h * 30:,.2f}",$1.00,{t}', newest_first=True,
        date=lambda d: d.strftime("%m/%d/%Y"))
    table = load_prices(path, "high")
    assert table.date_format == "%m/%d/%Y" and np.all(np.diff(table.dates) > np.timedelta64(0))
    k = table.tickers.index("AMZN")
    assert np.allclose(table.values[k], np.round(high[0] * 30, 2))
    assert table.values[k].max() > 1000                    # "$1,273.33" read as 1273.33
    assert np.allclose(load_prices(path, "close").values, 1.0)   # close -> Close/Last


def test_a_cell_that_is_not_a_number_is_named_with_its_row(tmp_path):
    path, _, _ = write_layout(tmp_path / "p.csv", "Date,High,Symbol", lambda t, d, h: f"{d},${h:.2f},{t}")
    lines = path.read_text().splitlines()
    lines[7] = lines[7].replace("$", "USD ")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"1 high cell\(s\) are not numbers.*'USD .*row 8"):
        load_prices(path)


def test_null_rows_and_bare_commas_are_skipped_and_counted(tmp_path):
    header = "Date,Open,High,Low,Close,Adj Close,Volume,Name"
    path, tickers, _ = write_layout(tmp_path / "p.csv", header,
                                    lambda t, d, h: f"{d},{h},{h},{h},{h},{h},100,{t}",
                                    extra="2015-01-01,null,null,null,null,null,null,AMZN\n"
                                          "2015-01-02,null,null,null,null,null,null,GOOGL\n,,,,,,,\n,,,,,,,\n")
    table = load_prices(path)
    assert table.n_null_rows == 4 and table.values.shape == (4, 40)
    series, counts = stock_series(table, min_days=21)
    assert counts["n_stocks"] == 4 and counts["n_split_holes"] == 0


def test_day_first_dates_are_read_day_first_and_mixes_refused(tmp_path):
    path, _, high = write_layout(tmp_path / "p.csv", "date,high,symbol",
                                 lambda t, d, h: f"{d},{h:.4f},{t}", date=lambda d: d.strftime("%d/%m/%Y"))
    table = load_prices(path)
    assert table.date_format == "%d/%m/%Y" and str(table.dates[0])[:10] == "2015-01-01"
    assert len(table.dates) == 40
    lines = path.read_text().splitlines()
    day, month, year = lines[30].split(",")[0].split("/")
    lines[30] = lines[30].replace(f"{day}/{month}/{year}", f"{year}-{month}-{day}")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="do not fit one date format.*row"):
        load_prices(path)


def test_duplicates_collapse_when_identical_and_are_refused_when_not(tmp_path):
    path, _, _ = write_layout(tmp_path / "p.csv", "date,high,symbol", lambda t, d, h: f"{d},{h:.4f},{t}")
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines + lines[1:4]) + "\n")
    table = load_prices(path)
    assert table.n_duplicate_rows == 3 and table.values.shape == (4, 40)
    d, h, t = lines[5].split(",")
    path.write_text("\n".join(lines + [f"{d},{float(h) + 1},{t}"]) + "\n")
    with pytest.raises(DataError, match=f"2 rows give different high prices.*{t} on {d}"):
        load_prices(path)


def test_ragged_histories_holes_and_other_calendars_are_used(tmp_path):
    skip = {"S00": range(0, 60),                 # listed late
            "S01": range(120, 160),              # delisted early
            "S02": [50, 51],                     # a short hole: filled
            "S03": range(70, 80),                # a long hole: two series
            "S04": [5, 25, 45, 65, 85, 105],     # another market's holidays
            "S05": range(0, 150)}                # too short for the window
    path = write_prices_csv(tmp_path / "p.csv", drop=skip)
    table = load_prices(path)
    series, counts = stock_series(table, max_gap=5, min_days=21)
    by = {}
    for s in series:
        by.setdefault(s.ticker, []).append(s)
    assert counts["n_stocks"] == 11 and counts["n_too_short_stocks"] == 1 and "S05" not in by
    assert len(by["S00"][0]) == 100 and by["S00"][0].start == 60
    assert len(by["S01"][0]) == 120
    assert len(by["S02"]) == 1 and len(by["S02"][0]) == 160
    assert by["S02"][0].values[50] == by["S02"][0].values[49] == by["S02"][0].values[51]
    assert [len(s) for s in by["S03"]] == [70, 80] and counts["n_split_holes"] == 1
    assert len(by["S04"]) == 1 and counts["n_filled_days"] == 2 + 6
    complete, c2 = stock_series(table, complete_only=True)
    assert c2["n_incomplete_stocks"] == 6 and len(complete) == 6


def test_tickers_case_repeats_and_too_short_versus_absent(tmp_path):
    path = write_prices_csv(tmp_path / "p.csv", drop={"S05": range(0, 150)})
    table = load_prices(path)
    series, _ = stock_series(table, min_days=21)
    assert choose_tickers(["amzn", "AMZN", "googl"], table, series, 21) == ["AMZN", "GOOGL"]
    with pytest.raises(DataError, match="S05: it is in the file but its history is too short"):
        choose_tickers(["S05"], table, series, 21)
    with pytest.raises(DataError, match="ZZZZ: not in the file"):
        choose_tickers(["ZZZZ"], table, series, 21)


def test_split_by_stock_and_by_time():
    rng = np.random.default_rng(0)
    series = [Series(t, 0, rng.uniform(10, 20, 100)) for t in ["AMZN", "GOOGL"] + [f"T{k}" for k in range(8)]]
    by_stock = split_series(series, "stock", window=10, days=100)
    names = {k: [s.ticker for s in v] for k, v in by_stock.items()}
    assert sorted(sum(names.values(), [])) == sorted(s.ticker for s in series)
    assert [len(v) for v in names.values()] == [6, 2, 2]
    assert all(s.start_multi == 50 and s.first == 1 for s in by_stock["test"])
    by_time = split_series(series, "time", window=10, days=100)
    assert all(s.start + len(s) <= 60 for s in by_time["train"])
    assert all(60 <= s.start and s.start + len(s) <= 80 for s in by_time["val"])
    assert all(s.start == 70 and s.first == 10 == s.start_multi and len(s) == 30 for s in by_time["test"])
    assert len(by_time["test"]) == 10


@pytest.mark.parametrize("kind", ["first-half", "window", "log", "whole"])
def test_scales_round_trip_and_window_scale_is_causal(kind):
    prices = np.random.default_rng(1).uniform(10, 300, (5, 12))
    params = np.tile([[10.0, 290.0]] if kind in ("first-half", "whole") else [[np.log(50.0), 1.0]], (5, 1))
    z = encode(kind, prices, params)
    assert np.allclose(decode(kind, z, prices, params), prices)
    if kind == "window":
        later = prices.copy()
        later[:, 6:] *= 3
        assert np.allclose(encode(kind, later, None)[:, :6], z[:, :6]) and np.all(z[:, 0] == 0)


def test_windows_cover_every_day_and_skip_short_series():
    series = [Series("A", 0, np.arange(1, 24, dtype=float)), Series("B", 0, np.arange(1, 6, dtype=float))]
    windows = model_windows(series, 10, 5, "whole")
    assert windows.shape == (4, 10, 1)                # starts 0, 5, 10, 13 of A; B too short
    assert window_starts(23, 10, 5) == [0, 5, 10, 13]
    assert tile_windows(23, 10) == [(0, 0), (10, 10), (13, 20)]


# ---------------------------------------------------------------------------
# Forecasts, baselines and the Diebold-Mariano test
# ---------------------------------------------------------------------------

def predictor(seed=0):
    torch.manual_seed(seed)
    model = LSTMAutoencoder(1, 6, predict_next=True, predict_change=True, output_activation="none")
    torch.nn.init.normal_(model.predictor.weight, std=0.3)
    return model.eval()


def test_baselines_on_a_hand_made_series():
    s = Series("A", 0, np.array([1.0, 2.0, 4.0, 3.0, 5.0]), first=1, start_multi=2)
    assert fc.persistence([s])[0].tolist() == [1.0, 2.0, 4.0, 3.0]
    assert fc.flat([s])[0].tolist() == [2.0, 2.0, 2.0]


@pytest.mark.parametrize("kind", ["first-half", "window"])
def test_one_step_is_causal_and_multi_step_sees_only_the_past(kind):
    values = np.random.default_rng(3).uniform(50, 60, (2, 30))
    series = [Series(t, 0, v, 1, 15) for t, v in zip("AB", values)]
    model = predictor()
    preds = fc.one_step(model, series, 8, kind, CPU)
    assert preds[0].shape == (29,)
    # first-half's scale is fitted on days 0..14, so only later days may change for it
    for t in ((3, 12, 25) if kind == "window" else (14, 20, 25)):   # preds[k][t]: day t+1
        changed = [Series(s.ticker, 0, np.concatenate([s.values[:t + 1], s.values[t + 1:] * 2]), 1, 15)
                   for s in series]
        assert np.allclose(fc.one_step(model, changed, 8, kind, CPU)[0][:t + 1], preds[0][:t + 1])
    multi = fc.multi_step(model, series, 8, kind, CPU)
    future = [Series(s.ticker, 0, np.concatenate([s.values[:15], s.values[15:] + 9]), 1, 15) for s in series]
    assert multi[0].shape == (15,) and np.allclose(fc.multi_step(model, future, 8, kind, CPU)[0], multi[0])


def test_diebold_mariano_hln_by_hand_and_verdicts():
    from lstm_ae.evaluation.diebold_mariano import compare, diebold_mariano, verdict
    from scipy import stats
    rng = np.random.default_rng(0)
    a, b = rng.random(50), rng.random(50)
    d = a - b
    dm = d.mean() / np.sqrt(np.mean((d - d.mean()) ** 2) / 50) * np.sqrt((50 + 1 - 2) / 50)
    out = diebold_mariano(a, b)
    assert out["statistic"] == pytest.approx(dm)
    assert out["p_value"] == pytest.approx(2 * stats.t.sf(abs(dm), 49))
    assert verdict(diebold_mariano(a * 0.5, a)) == "beats" and verdict(diebold_mariano(a, a * 0.5)) == "loses"
    assert verdict(diebold_mariano(a, a)) == "ties" and verdict(out) == "ties"
    truth = [np.full(40, 100.0)]
    result = compare([truth[0] + 1.0], [truth[0] + 1.0 + 0.01 * rng.standard_normal(40)], truth,
                     [np.full(40, 100.0)], [np.arange(40)])
    assert result["verdict"] == "ties" and result["model"]["mse_price"] == pytest.approx(1.0)


# ---------------------------------------------------------------------------
# The script end to end
# ---------------------------------------------------------------------------

def run_quick(tmp_path, csv, *extra):
    return lstm_ae_snp500.main(["--quick", "--data", str(csv), "--window", "20", "--stride", "10",
                                "--workers", "1", "--figures-dir", str(tmp_path / "fig"),
                                "--run-dir", str(tmp_path / "run"), *extra])


def record_titles(monkeypatch):
    """{figure file name: title} of the reconstruction and forecast figures a run draws."""
    titles = {}
    for name in ("plot_reconstructions", "plot_forecast"):
        real = getattr(lstm_ae_snp500, name)

        def spy(*args, _real=real, **kwargs):
            titles[args[-2].name] = args[-1]
            return _real(*args, **kwargs)
        monkeypatch.setattr(lstm_ae_snp500, name, spy)
    return titles


def test_quick_run_on_a_ragged_file_and_eval_only(tmp_path, capsys, monkeypatch):
    csv = write_prices_csv(tmp_path / "p.csv", drop={"S00": range(0, 60), "S03": [70, 71],
                                                     "S05": range(0, 150)})
    titles = record_titles(monkeypatch)
    # AMZN is a validation stock and GOOGL a training stock of this file's split
    run_quick(tmp_path, csv, "--tickers", "amzn", "GOOGL", "googl")
    for name in ("fig3_1_snp500_daily_high", "fig3_2_snp500_reconstruction_AMZN",
                 "fig3_3_snp500_reconstruction_GOOGL", "fig3_4_snp500_reconstruction_S03",
                 "fig3_5_snp500_prediction_losses", "fig3_6_snp500_multistep_GOOGL",
                 "fig3_7_snp500_error_by_horizon", "fig3_grid_validation_curves"):
        assert is_png(tmp_path / "fig" / f"{name}.png"), name
    assert titles["fig3_2_snp500_reconstruction_AMZN.png"].endswith("(validation stock)")
    assert titles["fig3_3_snp500_reconstruction_GOOGL.png"].endswith("(training stock: seen in training)")
    assert titles["fig3_4_snp500_reconstruction_S03.png"].endswith("(test stock)")
    assert titles["fig3_6_snp500_multistep_GOOGL.png"].endswith("(training stock: seen in training)")
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["test_tickers"] == ["S03", "S08"]
    assert saved["counts"]["n_stocks"] == 11 and saved["counts"]["n_too_short_stocks"] == 1
    for part in ("one_step", "multi_step"):
        dm = saved[part]["diebold_mariano"]
        assert saved[part]["verdict"] in ("beats", "ties", "loses") and 0 <= dm["p_value"] <= 1
        assert saved[part]["model"]["mse_price"] > 0 and saved[part]["baseline"]["mse_price"] > 0
    out = capsys.readouterr().out
    assert "Diebold-Mariano" in out and "too short" in out
    assert "on squared relative error" in out and " TIES " not in out
    again = run_quick(tmp_path, csv, "--eval-only")
    assert again["one_step"]["model"]["mse_price"] == pytest.approx(saved["one_step"]["model"]["mse_price"])
    # --tickers only picks figures: --eval-only may draw others, the numbers stay
    other = run_quick(tmp_path, csv, "--eval-only", "--tickers", "S08")
    assert titles["fig3_6_snp500_multistep_S08.png"].endswith("(test stock)")
    for part in ("reconstruction", "one_step", "multi_step"):
        assert other[part] == again[part], part


def test_headline_numbers_do_not_depend_on_tickers(tmp_path):
    csv = write_prices_csv(tmp_path / "p.csv")
    tiny = ("--hidden-size", "4", "--epochs", "1")
    first = run_quick(tmp_path / "a", csv, "--tickers", "AMZN", "GOOGL", *tiny)   # not test stocks
    second = run_quick(tmp_path / "b", csv, "--tickers", "S07", "S00", *tiny)     # test stocks
    assert first["test_tickers"] == second["test_tickers"] == ["S00", "S03", "S07"]
    for part in ("reconstruction", "one_step", "multi_step", "n_series", "n_windows"):
        assert first[part] == second[part], part


@pytest.mark.parametrize("verdict, words", [("beats", "beats"), ("ties", "ties with"),
                                            ("loses", "loses to")])
def test_summary_verdict_reads_as_english_and_names_the_error(verdict, words):
    result = {"verdict": verdict, "diebold_mariano": {"statistic": 2.314, "p_value": 0.0213, "n": 1234}}
    assert lstm_ae_snp500.verdict_text(result, "flat") == (
        f"the model {words} flat on squared relative error (daily mean over stocks; "
        "Diebold-Mariano +2.31, p=0.0213, 1234 days)")


def test_quick_time_split(tmp_path):
    result = run_quick(tmp_path, write_prices_csv(tmp_path / "p.csv"), "--split", "time", "--scale",
                       "first-half", "--complete-only")
    assert result["split"] == "time" and result["n_series"]["test"] == 12
    assert result["one_step"]["n_forecasts"] == 12 * 32 and result["multi_step"]["n_forecasts"] == 12 * 32


@pytest.mark.parametrize("flags, message", [
    (["--window", "1"], "--window 1 leaves no next day"),
    (["--window", "0"], "must be at least 1"),
    (["--start", "notadate"], "not a date"),
    (["--tickers", "ZZZZ"], "ZZZZ: not in the file"),
    (["--window", "500"], "--window 500 is longer than every stock's history"),
    (["--start", "2030-01-01"], "no prices between"),
    (["--window", "130", "--split", "time"], "no train series has 130 days"),
])
def test_bad_flags_are_one_line_status_2_and_write_nothing(tmp_path, prices_csv, capsys, flags, message):
    with pytest.raises(SystemExit) as exit_info:
        run_quick(tmp_path, prices_csv, *flags)
    assert exit_info.value.code == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines()    # argparse's usage aside
           if not line.startswith(("usage:", " "))]
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "fig").exists() and not (tmp_path / "run").exists()


def _zip(members):
    import io
    import zipfile
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def test_kaggle_archive_read_from_its_known_member(tmp_path):
    text = write_prices_csv(tmp_path / "a.csv", layout="name").read_text()
    path = tmp_path / "archive.zip"
    path.write_bytes(_zip({"all_stocks_5yr.csv": text, "getSandP.py": "x",
                           **{f"individual_stocks_5yr/S{k}_data.csv": "date\n" for k in range(40)}}))
    assert load_prices(path).values.shape == (12, 160)


def _damaged(tmp_path, kind):
    import gzip
    text = write_prices_csv(tmp_path / "ok.csv").read_bytes()
    packed = gzip.compress(text)
    path = tmp_path / {"zip": "p.zip", "zipmany": "p.zip", "zipcut": "p.zip"}.get(kind, "p.csv.gz")
    if kind == "textmode":                           # a binary file sent as text
        path.write_bytes(packed.replace(b"\n", b"\r\n"))
    elif kind == "truncated":
        path.write_bytes(packed[:len(packed) // 2])
    elif kind == "crc":
        broken = bytearray(packed)
        broken[-8] ^= 0xFF
        path.write_bytes(bytes(broken))
    elif kind == "zipcut":
        path.write_bytes(_zip({"all_stocks_5yr.csv": text})[:300])
    elif kind == "zipmany":
        path.write_bytes(_zip({f"member_{k}.csv": "a" for k in range(60)}))
    elif kind == "latin1":
        path = tmp_path / "p.csv"
        path.write_bytes(text.replace(b"AMZN", "AMZ\xc9".encode("latin-1")))
    elif kind == "folder":
        path = tmp_path / "p.csv"
        path.mkdir()
    return path


@pytest.mark.parametrize("kind, message", [
    ("textmode", "gzip data is damaged"), ("truncated", "gzip data is truncated"),
    ("crc", "gzip data is damaged"), ("zipcut", "damaged zip archive"),
    ("zipmany", "zip of 60 files without all_stocks_5yr.csv"), ("latin1", "is not UTF-8 text"),
    ("folder", "is a folder"),
])
def test_damaged_files_one_line_status_2(tmp_path, capsys, kind, message):
    path = _damaged(tmp_path, kind)
    with pytest.raises(SystemExit) as exit_info:
        run_quick(tmp_path, path)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and len(err[0]) < 300
    assert message in err[0] and str(path) in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "fig").exists() and not (tmp_path / "run").exists()


def test_permission_error_is_one_line(tmp_path, monkeypatch):
    from pathlib import Path
    path = write_prices_csv(tmp_path / "p.csv")

    def refuse(self):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(DataError, match="permission denied.*chmod"):
        load_prices(path)


def test_missing_file_message(tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_quick(tmp_path, tmp_path / "nothing.csv")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not found" in err[0] and "$LSTM_AE_SP500_CSV" in err[0]
    assert "--data PATH" in err[0] and "Kaggle" not in err[0]


def test_tickers_with_commas_are_two_tickers(prices_csv):
    table = load_prices(prices_csv)
    series, _ = stock_series(table, min_days=20)
    first, second = table.tickers[:2]
    assert choose_tickers([f"{first.lower()},{second}"], table, series, 20) == [first, second]
    assert choose_tickers([f"{first},", second], table, series, 20) == [first, second]


@pytest.mark.skipif(shared_data("sp500", "sp500_stock_prices_2016-2021.csv.gz") is None,
                    reason="real S&P 500 file not on this machine")
def test_real_file_if_present():
    table = load_prices(shared_data("sp500", "sp500_stock_prices_2016-2021.csv.gz"))
    assert table.values.shape == (470, 1259)
    series, counts = stock_series(table, min_days=51)
    assert counts["n_stocks"] == 468 and {"AMZN", "GOOGL"} <= {s.ticker for s in series}
    assert stock_series(table, complete_only=True)[1]["n_incomplete_stocks"] == 21
