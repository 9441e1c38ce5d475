"""Part 3: an LSTM autoencoder on S&P 500 daily highs: reconstruction, one-step
and multi-step prediction, each against a naive baseline.

Stocks are split into train/validation/test (the --tickers always in test, so
their figures show series the model never trained on). Two models are trained
on windows of --window days:

1. Reconstruction: each series min-max scaled to [0, 1] as in the report; grid
   search on validation loss, the best configuration trained for --epochs.
2. Prediction: the same configuration plus a causal head that predicts x_{t+1}
   from x_1..x_t, trained on reconstruction MSE + prediction MSE. Each series is
   scaled by its first half only, the part a forecaster would have seen. The
   multi-step forecast starts at the middle day, feeding each prediction back in.

Every number is measured on test stocks, scaled and in price units, beside the
baselines "tomorrow equals today" (one step) and "the last seen value stays
flat" (multi-step).

    python lstm_ae_snp500.py --data ../shared/data/sp500/sp500_stock_prices_2016-2021.csv.gz
    python lstm_ae_snp500.py --quick --data FILE     # smoke run

Figures: fig3_1_snp500_daily_high.png, fig3_2..fig3_4_snp500_reconstruction_<TICKER>.png,
fig3_5_snp500_prediction_losses.png, fig3_6_snp500_multistep_<TICKER>.png, plus
fig3_grid_validation_curves.png and fig3_7_snp500_error_by_horizon.png.
Results (--run-dir, default runs/snp500/): grid.csv, results.json,
final.pt (reconstruction) and final_prediction.pt (prediction); --eval-only
--checkpoint PATH takes the reconstruction checkpoint and finds PATH_prediction.pt beside it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

import forecasting as fc
from cli import REPO_ROOT, add_common_flags, args_as_dict, non_negative_float, positive_int, run_main
from experiment import (base_config, grid_points, load_for_evaluation, prepare_run,
                        search_then_train)
from io_utils import UserError, write_json
from run_info import run_provenance
from plotting import (plot_curves, plot_error_by_horizon, plot_forecast, plot_history,
                      plot_reconstructions, plot_series)
from snp500_data import (KAGGLE_FILE, make_windows, minmax_scale, pivot_prices, read_prices,
                         split_by_stock, unscale)
from training import to_device

DATA_FLAGS = ("data", "field", "start", "end", "tickers", "window", "stride")
HORIZONS_REPORTED = (1, 5, 20, 60, 120, 250)


def date_text(text: str) -> str:
    try:
        pd.Timestamp(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {text!r} (use YYYY-MM-DD)") from None
    return text
# --quick: a tiny model, two epochs (flags given explicitly still win).
QUICK = dict(hidden_size=[8, 16], lr=[1e-2], clip=[1.0], batch_size=[64], epochs=2,
             grid_epochs=1)



def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=Path(__file__).name,
        description="Part 3: LSTM autoencoder on S&P 500 daily prices: reconstruction, "
                    "one-step and multi-step prediction against naive baselines.")
    data = parser.add_argument_group("data")
    data.add_argument("--data", type=Path,
                      default=Path(os.environ.get("LSTM_AE_SP500_CSV", REPO_ROOT / "data" / KAGGLE_FILE)),
                      help=f"daily prices CSV, plain or .gz (default: $LSTM_AE_SP500_CSV, else "
                           f"data/{KAGGLE_FILE})")
    data.add_argument("--field", default="high",
                      help="price column to model, e.g. high, close (default: high)")
    data.add_argument("--start", type=date_text, default=None,
                      help="first date of the window, YYYY-MM-DD (default: the file's first)")
    data.add_argument("--end", type=date_text, default=None,
                      help="last date of the window, YYYY-MM-DD (default: the file's last)")
    data.add_argument("--tickers", nargs="+", default=["AMZN", "GOOGL"],
                      help="stocks for the figures, kept in the test split; the multi-step "
                           "figure uses the last one (default: AMZN GOOGL)")
    data.add_argument("--window", type=positive_int, default=50,
                      help="days per training window (default: 50)")
    data.add_argument("--stride", type=positive_int, default=10,
                      help="days between the starts of training windows (default: 10)")
    data.add_argument("--prediction-weight", type=non_negative_float, default=1.0,
                      help="weight of the next-day MSE in the prediction model (default: 1)")
    add_common_flags(parser, experiment="snp500", quick="a tiny model, 2 epochs",
                     hidden_size=[32, 64], lr=[2e-3, 5e-3],
                     batch_size=[64], clip=[1.0, None], num_layers=[1], epochs=20,
                     grid_epochs=5, lr_schedule="cosine", precision="fp32", workers=2)
    return parser


def window_splits(scaled: np.ndarray, split: dict, window: int, stride: int) -> dict:
    """Windows (n, window, 1) of the train and validation stocks; test stocks are
    evaluated on whole series instead (forecasting.py)."""
    return {name: {"x": make_windows(scaled[split[name]], window, stride)[:, :, None]}
            for name in ("train", "val")}


def run(args: argparse.Namespace) -> dict:
    ctx = prepare_run(args, "snp500")
    device, precision, figures, run_dir = ctx.device, ctx.precision, ctx.figures, ctx.run_dir
    if args.eval_only:
        # --checkpoint names the reconstruction model; the prediction model lies beside it.
        recon_path = Path(args.checkpoint or run_dir / "final.pt")
        recon_model, recon_ckpt = load_for_evaluation(args, device, DATA_FLAGS, recon_path)
        pred_model, pred_ckpt = load_for_evaluation(
            args, device, path=recon_path.with_name(recon_path.stem + "_prediction.pt"))

    table = pivot_prices(read_prices(args.data, args.field), args.start, args.end)
    dates, tickers, prices = table.dates, table.tickers, table.values
    split = split_by_stock(tickers, keep_in_test=args.tickers)
    print(f"{len(tickers)} complete stocks over {len(dates)} trading days "
          f"({table.n_dropped} dropped for gaps); {len(split['train'])} train, "
          f"{len(split['val'])} validation, {len(split['test'])} test stocks")
    if args.window >= len(dates):
        raise UserError(f"--window {args.window} must be shorter than the {len(dates)} trading days")
    if ctx.is_main:  # rank 0 alone writes (data-parallel runs)
        plot_series([prices[tickers.index(t)] for t in args.tickers], args.tickers,
                    figures / "fig3_1_snp500_daily_high.png", f"Daily {args.field} price",
                    xlabel="date", ylabel=f"{args.field} (USD)", x=dates)

    whole_scaled, whole_scale = minmax_scale(prices)            # the report's scaling
    half = len(dates) // 2
    half_scaled, half_scale = minmax_scale(prices, fit_length=half)  # no future in the scale
    recon_data = window_splits(whole_scaled, split, args.window, args.stride)
    pred_data = window_splits(half_scaled, split, args.window, args.stride)
    data_tag = hashlib.sha1(repr([args_as_dict(args)[k] for k in DATA_FLAGS]).encode()).hexdigest()

    if not args.eval_only:
        model_args = dict(input_size=1, output_activation="none")
        run_config = dict(args_as_dict(args), script="lstm_ae_snp500")
        points = grid_points(args, model_args, base_config(args, precision))
        recon = search_then_train(args, points, recon_data, to_device(recon_data, device),
                                  device, data_tag, run_config)
        pred_point = replace(recon.point, model_args=dict(recon.point.model_args, predict_next=True,
                                                          predict_change=True),
                             train_config=replace(recon.point.train_config,
                                                  prediction_weight=args.prediction_weight))
        pred = search_then_train(args, [pred_point], pred_data, to_device(pred_data, device),
                                 device, data_tag, run_config, checkpoint_name="final_prediction.pt")
        recon_model, pred_model = recon.model, pred.model
        chosen, grid_rows, pred_history = recon.point.label, recon.grid_rows, pred.fit.history
        if grid_rows and ctx.is_main:
            plot_curves({row["label"]: row["val_curve"] for row in grid_rows},
                        figures / "fig3_grid_validation_curves.png",
                        f"S&P 500 grid search: validation MSE over {args.grid_epochs} epochs")
    else:
        chosen, grid_rows = recon_ckpt["run_config"].get("chosen_config"), []
        pred_history = pred_ckpt["history"]

    if not ctx.is_main:  # training was the shared part; rank 0 evaluates and writes
        return {}
    test = split["test"]
    test_names = [tickers[i] for i in test]
    # Reconstruction of whole test series, window by window.
    truth = whole_scaled[test]
    rebuilt = fc.reconstruct_series(recon_model, truth, args.window, device)
    rebuilt_price = unscale(rebuilt, whole_scale[test])
    shown = list(args.tickers) + [t for t in test_names if t not in args.tickers]
    for number, name in zip((2, 3, 4), shown[:3]):
        k = test_names.index(name)
        scaled_mse = fc.mse(rebuilt[k], truth[k])
        plot_reconstructions([prices[test[k]]], [rebuilt_price[k]],
                             [f"{name}: scaled MSE {scaled_mse:.5f}"],
                             figures / f"fig3_{number}_snp500_reconstruction_{name}.png",
                             f"Daily {args.field}: original vs reconstruction (test stock)",
                             x=dates, ylabel=f"{args.field} (USD)", mse_unit=" USD²")

    # One-step and multi-step prediction, against the naive baselines.
    series, scale = half_scaled[test], half_scale[test]
    one_step = fc.one_step_predictions(pred_model, series, args.window, device)
    persistence = fc.persistence_forecast(series)
    multi = fc.multi_step_forecast(pred_model, series, half, args.window, device)
    flat = fc.flat_forecast(series, half)
    to_price = lambda values: unscale(values, scale)  # noqa: E731
    plot_history(pred_history, [("reconstruction MSE", ["train_reconstruction", "val_reconstruction"]),
                                ("next-day prediction MSE", ["train_prediction", "val_prediction"])],
                 figures / "fig3_5_snp500_prediction_losses.png",
                 "Prediction model: both losses per epoch (scaled by each series' first half)")
    k = test_names.index(args.tickers[-1])
    plot_forecast(dates, prices[test[k]], to_price(one_step)[k], to_price(multi)[k],
                  to_price(flat)[k], half, figures / f"fig3_6_snp500_multistep_{args.tickers[-1]}.png",
                  f"{args.tickers[-1]}: one-step and multi-step predictions from "
                  f"{str(dates[half])[:10]} (day {half})",
                  ylabel=f"{args.field} (USD)")
    horizon = {"model (fed back)": fc.mse_by_horizon(multi, series[:, half:]),
               "last value flat": fc.mse_by_horizon(flat, series[:, half:])}
    plot_error_by_horizon(horizon, figures / "fig3_7_snp500_error_by_horizon.png",
                          "Multi-step error against steps ahead (test stocks)")

    def pair(pred_scaled, truth_scaled, price_truth):
        return {"mse_scaled": fc.mse(pred_scaled, truth_scaled),
                "mse_price": fc.mse(to_price(pred_scaled), price_truth)}
    prices_test = prices[test]
    results = {
        "experiment": "snp500", "chosen_config": chosen, "n_stocks": len(tickers),
        "n_days": len(dates), "n_dropped": table.n_dropped, "test_tickers": test_names,
        "reconstruction": {"mse_scaled": fc.mse(rebuilt, truth),
                           "mse_price": fc.mse(rebuilt_price, prices_test)},
        "one_step": {"model": pair(one_step, series[:, 1:], prices_test[:, 1:]),
                     "persistence": pair(persistence, series[:, 1:], prices_test[:, 1:])},
        "multi_step": {"start_day": half,
                       "model": pair(multi, series[:, half:], prices_test[:, half:]),
                       "flat": pair(flat, series[:, half:], prices_test[:, half:]),
                       "by_horizon_scaled": {name: {h: float(v[h - 1]) for h in HORIZONS_REPORTED
                                                    if h <= len(v)} for name, v in horizon.items()}},
    }
    results["provenance"] = run_provenance()  # command, code, machine, date
    write_json(run_dir / "results.json", results)
    print_summary(results, run_dir, figures)
    return results


def print_summary(results: dict, run_dir: Path, figures: Path) -> None:
    one, multi = results["one_step"], results["multi_step"]
    verdict = lambda a, b: "beats" if a < b else "does NOT beat"  # noqa: E731
    print(f"\nchosen config: {results['chosen_config']}\n"
          f"reconstruction, test stocks: MSE {results['reconstruction']['mse_scaled']:.5f} scaled, "
          f"{results['reconstruction']['mse_price']:.2f} USD^2\n"
          f"one-step: model {one['model']['mse_scaled']:.6f} vs persistence "
          f"{one['persistence']['mse_scaled']:.6f} (scaled; "
          f"{one['model']['mse_price']:.2f} vs {one['persistence']['mse_price']:.2f} USD^2): "
          f"the model {verdict(one['model']['mse_scaled'], one['persistence']['mse_scaled'])} "
          f"persistence\n"
          f"multi-step from day {multi['start_day']}: model {multi['model']['mse_scaled']:.5f} vs "
          f"flat {multi['flat']['mse_scaled']:.5f} (scaled): the model "
          f"{verdict(multi['model']['mse_scaled'], multi['flat']['mse_scaled'])} the flat baseline\n"
          f"results: {run_dir / 'results.json'}   figures: {figures}")


def main(argv: list[str] | None = None) -> dict:
    return run_main(build_parser(), run, argv, QUICK)


if __name__ == "__main__":
    main()
