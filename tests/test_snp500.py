import json

import numpy as np
import pytest
import torch

import forecasting as fc
import lstm_ae_snp500
from conftest import is_png, shared_data, write_prices_csv
from io_utils import DataError
from models import LSTMAutoencoder
from snp500_data import (make_windows, minmax_scale, pivot_prices, read_prices, split_by_stock,
                         tile_windows, unscale)

CPU = torch.device("cpu")


@pytest.mark.parametrize("layout, gz", [("symbol", False), ("name", False), ("symbol", True)])
def test_both_layouts_plain_or_gzip(tmp_path, layout, gz):
    path = write_prices_csv(tmp_path / ("p.csv.gz" if gz else "p.csv"), layout=layout, gz=gz)
    table = pivot_prices(read_prices(path, "high"))
    assert table.values.shape == (12, 160) and table.n_dropped == 0
    assert table.tickers[:2] == ["AMZN", "GOOGL"] or {"AMZN", "GOOGL"} <= set(table.tickers)
    assert np.all(np.diff(table.dates) > np.timedelta64(0))


def test_column_names_in_any_case(tmp_path):
    path = write_prices_csv(tmp_path / "p.csv")
    text = path.read_text().splitlines()
    text[0] = text[0].upper()
    path.write_text("\n".join(text) + "\n")
    assert pivot_prices(read_prices(path, "High")).values.shape == (12, 160)


def test_same_values_from_both_layouts(tmp_path):
    a = pivot_prices(read_prices(write_prices_csv(tmp_path / "a.csv", layout="symbol"), "close"))
    b = pivot_prices(read_prices(write_prices_csv(tmp_path / "b.csv", layout="name"), "close"))
    assert a.tickers == b.tickers and np.allclose(a.values, b.values)


def test_ragged_histories_and_gaps_are_dropped_and_counted(tmp_path):
    path = write_prices_csv(tmp_path / "p.csv", drop={"S00": range(0, 30), "S01": [70]})
    table = pivot_prices(read_prices(path))
    assert table.n_dropped == 2 and "S00" not in table.tickers and "S01" not in table.tickers
    # a window after S00's late start keeps it
    late = pivot_prices(read_prices(path), start=str(table.dates[30])[:10], end=str(table.dates[60])[:10])
    assert "S00" in late.tickers and late.values.shape[1] == 31 and late.n_dropped == 0


def test_nan_values_drop_the_stock(tmp_path):
    path = write_prices_csv(tmp_path / "p.csv")
    lines = path.read_text().splitlines()
    fields = lines[5].split(",")
    fields[3] = ""                                   # an empty high for AMZN on one day
    lines[5] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    table = pivot_prices(read_prices(path))
    assert "AMZN" not in table.tickers and table.n_dropped == 1


def test_window_cut_by_dates(tmp_path, prices_csv):
    full = pivot_prices(read_prices(prices_csv))
    start, end = str(full.dates[10])[:10], str(full.dates[99])[:10]
    cut = pivot_prices(read_prices(prices_csv), start, end)
    assert cut.values.shape == (12, 90) and cut.dates[0] == full.dates[10]
    assert np.array_equal(cut.values, full.values[:, 10:100])


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "not found.*SP 500 Stock Prices 2014-2017.csv.*accepted layouts"),
    (lambda p: p.write_bytes(b"\x1f\x8b\x08garbage"), "cannot be read"),
    (lambda p: p.write_text("symbol,date,open\nA,2020-01-01,3\n"), "lacks the column.*high"),
    (lambda p: p.write_text("ticker,date,high\nA,2020-01-01,3\n"), "lacks the column.*symbol or Name"),
    (lambda p: p.write_text("symbol,date,high\nA,2020-01-01,3\nA,yesterday,4\n"),
     "cannot be parsed.*yesterday"),
    (lambda p: p.write_text(""), "cannot be read"),
])
def test_bad_files_give_clear_errors(tmp_path, make, message):
    path = tmp_path / "prices.csv"
    make(path)
    with pytest.raises(DataError, match=message):
        pivot_prices(read_prices(path))


def test_too_few_complete_stocks(tmp_path):
    path = write_prices_csv(tmp_path / "p.csv", n_stocks=4, drop={"S00": [3], "S01": [4]})
    with pytest.raises(DataError, match="only 2 stock"):
        pivot_prices(read_prices(path))


def test_split_keeps_named_tickers_in_test_and_is_fixed():
    tickers = [f"T{k}" for k in range(20)] + ["AMZN", "GOOGL"]
    split = split_by_stock(tickers, keep_in_test=["AMZN", "GOOGL"])
    test_names = [tickers[i] for i in split["test"]]
    assert {"AMZN", "GOOGL"} <= set(test_names)
    everything = np.concatenate([split["train"], split["val"], split["test"]])
    assert sorted(everything.tolist()) == list(range(22))
    again = split_by_stock(tickers, keep_in_test=["AMZN", "GOOGL"])
    assert all(np.array_equal(split[name], again[name]) for name in split)
    with pytest.raises(DataError, match="TSLA"):
        split_by_stock(tickers, keep_in_test=["TSLA"])


def test_scale_fitted_on_the_first_half_sees_no_future():
    rng = np.random.default_rng(0)
    prices = rng.uniform(10, 20, (3, 40))
    scaled, scale = minmax_scale(prices, fit_length=20)
    changed = prices.copy()
    changed[:, 20:] *= 5
    scaled_changed, scale_changed = minmax_scale(changed, fit_length=20)
    assert np.array_equal(scale, scale_changed)
    assert np.array_equal(scaled[:, :20], scaled_changed[:, :20])
    assert scaled[:, :20].min() == 0 and scaled[:, :20].max() == 1
    assert np.allclose(unscale(scaled, scale), prices)
    whole, _ = minmax_scale(prices)
    assert whole.min() == 0 and whole.max() == 1


def test_windows_cover_every_day():
    series = np.arange(2 * 23, dtype=float).reshape(2, 23)
    windows = make_windows(series, 10, 5)
    assert windows.shape == (2 * 4, 10)              # starts 0, 5, 10 and the end-aligned 13
    assert np.array_equal(windows[-1], series[1, 13:])
    assert tile_windows(23, 10) == [(0, 0), (10, 10), (13, 20)]
    assert tile_windows(20, 10) == [(0, 0), (10, 10)]


# ---------------------------------------------------------------------------
# Forecasts and baselines
# ---------------------------------------------------------------------------

def predictor(seed=0):
    torch.manual_seed(seed)
    model = LSTMAutoencoder(1, 6, predict_next=True, predict_change=True, output_activation="none")
    torch.nn.init.normal_(model.predictor.weight, std=0.3)
    return model.eval()


def test_baselines_on_a_hand_made_series():
    series = np.array([[1.0, 2.0, 4.0, 3.0, 5.0]])
    assert fc.mse(fc.persistence_forecast(series), series[:, 1:]) == pytest.approx((1 + 4 + 1 + 4) / 4)
    flat = fc.flat_forecast(series, start=2)          # last seen value: 2.0
    assert flat.tolist() == [[2.0, 2.0, 2.0]]
    assert fc.mse(flat, series[:, 2:]) == pytest.approx((4 + 1 + 9) / 3)
    assert fc.mse_by_horizon(flat, series[:, 2:]).tolist() == [4.0, 1.0, 9.0]


def test_multi_step_uses_only_the_first_half():
    rng = np.random.default_rng(1)
    series = rng.random((3, 40))
    model = predictor()
    forecast = fc.multi_step_forecast(model, series, 20, 8, CPU)
    assert forecast.shape == (3, 20)
    future_changed = series.copy()
    future_changed[:, 20:] = 99.0
    assert np.array_equal(forecast, fc.multi_step_forecast(model, future_changed, 20, 8, CPU))
    past_changed = series.copy()
    past_changed[:, 19] += 1.0
    assert not np.allclose(forecast, fc.multi_step_forecast(model, past_changed, 20, 8, CPU))


def test_multi_step_feeds_its_own_predictions_back():
    series = np.random.default_rng(2).random((2, 30))
    model = predictor()
    forecast = fc.multi_step_forecast(model, series, 15, 6, CPU)
    history = np.concatenate([series[:, :15], forecast[:, :1]], axis=1)
    with torch.no_grad():
        second = model(torch.tensor(history[:, -6:, None], dtype=torch.float32)).next_step[:, -1, 0]
    assert np.allclose(forecast[:, 1], second.numpy(), atol=1e-6)


def test_one_step_predictions_are_causal_and_windowed():
    series = np.random.default_rng(3).random((2, 30))
    model = predictor()
    preds = fc.one_step_predictions(model, series, 8, CPU)
    assert preds.shape == (2, 29)
    for t in (3, 12, 25):                           # prediction of day t+1 is preds[:, t]
        changed = series.copy()
        changed[:, t + 1:] = -5.0
        assert np.allclose(fc.one_step_predictions(model, changed, 8, CPU)[:, :t + 1], preds[:, :t + 1])
    with torch.no_grad():
        window = torch.tensor(series[:, 12 - 8 + 1:13, None], dtype=torch.float32)
        expected = model(window).next_step[:, -1, 0].numpy()
    assert np.allclose(preds[:, 12], expected, atol=1e-6)


def test_whole_series_reconstruction_is_window_by_window():
    series = np.random.default_rng(4).random((2, 23))
    model = predictor()
    rebuilt = fc.reconstruct_series(model, series, 10, CPU)
    with torch.no_grad():
        last = model(torch.tensor(series[:, 13:, None], dtype=torch.float32)).reconstruction[..., 0].numpy()
        first = model(torch.tensor(series[:, :10, None], dtype=torch.float32)).reconstruction[..., 0].numpy()
    assert np.allclose(rebuilt[:, 20:], last[:, 7:], atol=1e-6)
    assert np.allclose(rebuilt[:, :10], first, atol=1e-6)


# ---------------------------------------------------------------------------
# The script end to end
# ---------------------------------------------------------------------------

def run_quick(tmp_path, csv, *extra):
    return lstm_ae_snp500.main(["--quick", "--data", str(csv), "--window", "20", "--stride", "10",
                                "--workers", "1", "--figures-dir", str(tmp_path / "fig"),
                                "--run-dir", str(tmp_path / "run"), *extra])


def test_quick_run_writes_every_figure_and_honest_results(tmp_path, prices_csv, capsys):
    run_quick(tmp_path, prices_csv)
    for name in ("fig3_1_snp500_daily_high", "fig3_2_snp500_reconstruction_AMZN",
                 "fig3_3_snp500_reconstruction_GOOGL", "fig3_5_snp500_prediction_losses",
                 "fig3_6_snp500_multistep_GOOGL", "fig3_7_snp500_error_by_horizon",
                 "fig3_grid_validation_curves"):
        assert is_png(tmp_path / "fig" / f"{name}.png"), name
    assert len(list((tmp_path / "fig").glob("fig3_4_snp500_reconstruction_*.png"))) == 1
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert {"AMZN", "GOOGL"} <= set(saved["test_tickers"])
    one = saved["one_step"]
    assert one["persistence"]["mse_scaled"] > 0 and one["model"]["mse_scaled"] > 0
    assert saved["multi_step"]["start_day"] == 80
    assert set(saved["multi_step"]["by_horizon_scaled"]["last value flat"]) >= {"1", "5", "20", "60"}
    out = capsys.readouterr().out
    assert "persistence" in out and ("beats" in out or "does NOT beat" in out)
    again = run_quick(tmp_path, prices_csv, "--eval-only")
    assert again["one_step"]["model"]["mse_scaled"] == pytest.approx(one["model"]["mse_scaled"])


@pytest.mark.parametrize("flags, message", [
    (["--window", "0"], "must be at least 1"),
    (["--start", "notadate"], "not a date"),
    (["--tickers", "ZZZZ"], "ZZZZ not among"),
    (["--window", "500"], "--window 500"),
    (["--start", "2030-01-01"], "no prices between"),
])
def test_bad_flags_are_one_line_and_status_2(tmp_path, prices_csv, capsys, flags, message):
    with pytest.raises(SystemExit) as exit_info:
        run_quick(tmp_path, prices_csv, *flags)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_file_message(tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_quick(tmp_path, tmp_path / "nothing.csv")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not found" in err[0] and "accepted layouts" in err[0]


@pytest.mark.skipif(shared_data("sp500", "sp500_stock_prices_2016-2021.csv.gz") is None,
                    reason="real S&P 500 file not on this machine")
def test_real_file_if_present():
    table = pivot_prices(read_prices(shared_data("sp500", "sp500_stock_prices_2016-2021.csv.gz")))
    assert table.values.shape == (449, 1259) and table.n_dropped == 21
    assert {"AMZN", "GOOGL"} <= set(table.tickers)
