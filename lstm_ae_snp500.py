"""Part 3: an LSTM autoencoder on S&P 500 daily highs: reconstruction, one-step
and multi-step prediction, each against a naive baseline.

Stocks are split into train/validation/test (the --tickers always in test, so
their figures show series the model never trained on). Two models are trained
on windows of --window days:

1. Reconstruction: each series min-max scaled to [0, 1] as in the report; grid
   search on validation loss, the best configuration trained for --epochs.
2. Prediction: the same configuration plus a causal head that predicts x_{t+1}
   from x_1..x_t, trained on reconstruction MSE + prediction MSE, on the --scale
   (price_windows.py). The multi-step forecast starts at the middle day of each
   test series, feeding each prediction back in.

Every stock is used over its own dates (ragged histories; price_windows.py);
--complete-only keeps the report's rule. --split time tests on the later dates.
Verdicts against the baselines come from the Diebold-Mariano test
(forecast_tests.py).

Every number is measured on test stocks, scaled and in price units, beside the
baselines "tomorrow equals today" (one step) and "the last seen value stays
flat" (multi-step).

    python lstm_ae_snp500.py --data ../shared/data/sp500/sp500_stock_prices_2016-2021.csv.gz
    python lstm_ae_snp500.py --quick --data FILE     # smoke run

Figures (--figures-dir, default RUN_DIR/figures/): fig3_1_snp500_daily_high.png,
fig3_2..fig3_4_snp500_reconstruction_<TICKER>.png, fig3_5_snp500_prediction_losses.png,
fig3_6_snp500_multistep_<TICKER>.png, plus fig3_grid_validation_curves.png and
fig3_7_snp500_error_by_horizon.png.
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

from lstm_ae.evaluation import forecasting as fc
from lstm_ae.cli.flags import (REPO_ROOT, add_common_flags, args_as_dict, non_negative_float,
                               non_negative_int, positive_int, run_main)
from lstm_ae.cli.experiment import (base_config, grid_points, load_for_evaluation, prepare_run,
                                    search_then_train)
from lstm_ae.evaluation.diebold_mariano import compare
from lstm_ae.errors import DataError, UserError
from lstm_ae.cli.experiment import write_results
from lstm_ae.reporting.provenance import run_provenance
from lstm_ae.reporting.figures import (plot_curves, plot_error_by_horizon, plot_forecast,
                                       plot_history, plot_reconstructions, plot_series)
from lstm_ae.datasets.price_windows import (SCALES, choose_tickers, model_windows, split_series,
                                            stock_series, window_starts)
from lstm_ae.datasets.prices import KAGGLE_FILE, load_prices
from lstm_ae.engine.training import to_device

DATA_FLAGS = ("data", "field", "start", "end", "tickers", "window", "stride", "split", "scale",
              "max_gap", "complete_only")
HORIZONS_REPORTED = (1, 5, 20, 60, 120, 250)
MULTI_STEP_DM_LAGS = 20     # a trading month of autocovariances for the fed-back path


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
                      help=f"daily prices CSV, plain, .gz or .zip (default: $LSTM_AE_SP500_CSV, "
                           f"else data/{KAGGLE_FILE})")
    data.add_argument("--field", default="high",
                      help="price column to model, e.g. high, close (default: high)")
    data.add_argument("--start", type=date_text, default=None,
                      help="first date of the window, YYYY-MM-DD (default: the file's first)")
    data.add_argument("--end", type=date_text, default=None,
                      help="last date of the window, YYYY-MM-DD (default: the file's last)")
    data.add_argument("--tickers", nargs="+", default=["AMZN", "GOOGL"],
                      help="stocks for the figures (any case, repeats dropped), kept in the test "
                           "split; the multi-step figure uses the last one (default: AMZN GOOGL)")
    data.add_argument("--window", type=positive_int, default=50,
                      help="days per training window, at least 2 (default: 50)")
    data.add_argument("--stride", type=positive_int, default=10,
                      help="days between the starts of training windows (default: 10)")
    data.add_argument("--max-gap", type=non_negative_int, default=5,
                      help="a hole of at most this many trading days is filled with the last "
                           "price; a longer one splits the history (default: 5)")
    data.add_argument("--complete-only", action="store_true",
                      help="the report's rule: only stocks with a price on every trading day "
                           "(default: every stock over its own dates)")
    data.add_argument("--split", choices=("stock", "time"), default="stock",
                      help="stock: test on other stocks over all dates; time: train on every "
                           "stock's first 60%% of dates, validate on the next 20%%, test on the "
                           "last 20%% (default: stock)")
    data.add_argument("--scale", choices=SCALES, default="window",
                      help="prediction model's scale: window (log price relative to each "
                           "window's first day), first-half (min-max of the first half), log "
                           "(log price relative to the first day) (default: window)")
    data.add_argument("--prediction-weight", type=non_negative_float, default=1.0,
                      help="weight of the next-day MSE in the prediction model (default: 1)")
    add_common_flags(parser, experiment="snp500", quick="a tiny model, 2 epochs",
                     hidden_size=[32, 64], lr=[2e-3, 5e-3],
                     batch_size=[64], clip=[1.0, None], num_layers=[1], epochs=20,
                     grid_epochs=5, lr_schedule="cosine", precision="fp32", workers=2)
    return parser


def load_data(args: argparse.Namespace):
    """Table, series per split, counts; every flag-vs-data constraint checked here,
    before any file is written."""
    if args.window < 2:
        raise UserError(f"--window {args.window} leaves no next day to predict inside a "
                        "window; use --window 2 or more")
    table = load_prices(args.data, args.field, args.start, args.end)
    min_days = args.window + 1
    series, counts = stock_series(table, args.max_gap, min_days, args.complete_only)
    if not series:
        longest = int(max((~np.isnan(r)).sum() for r in table.values))
        raise DataError(f"--window {args.window} is longer than every stock's history in "
                        f"{args.data.name} (longest {longest} trading days); choose a smaller --window")
    args.tickers = choose_tickers(args.tickers, table, series, min_days)
    splits = split_series(series, args.split, args.window, len(table.dates))
    for name in ("train", "val"):
        if not any(len(s) >= args.window for s in splits[name]):
            raise DataError(f"no {name} series has {args.window} days for --window with "
                            f"--split {args.split}; choose a smaller --window")
    missing = [t for t in args.tickers if t not in {s.ticker for s in splits["test"]}]
    if missing or not splits["test"]:
        raise DataError(f"--tickers {' '.join(missing)} have no test days with --split "
                        f"{args.split}; choose other --tickers")
    return table, splits, counts


def run(args: argparse.Namespace) -> dict:
    if args.eval_only:
        ctx = prepare_run(args, "snp500")
        recon_path = Path(args.checkpoint or ctx.run_dir / "final.pt")
        recon_model, recon_ckpt = load_for_evaluation(args, ctx.device, DATA_FLAGS, recon_path)
        pred_model, pred_ckpt = load_for_evaluation(
            args, ctx.device, path=recon_path.with_name(recon_path.stem + "_prediction.pt"))
        args.data = Path(args.data)
    table, splits, counts = load_data(args)
    if not args.eval_only:
        ctx = prepare_run(args, "snp500")
    device, precision, figures, run_dir = ctx.device, ctx.precision, ctx.figures, ctx.run_dir
    dates, tickers = table.dates, args.tickers
    print(f"{counts['n_stocks']} stocks in {counts['n_series']} series over {len(dates)} trading "
          f"days; {counts['n_too_short_stocks']} stock(s) too short, "
          f"{counts['n_incomplete_stocks']} incomplete left out, {table.n_null_rows} row(s) "
          f"without a price skipped; {', '.join(f'{len(v)} {k}' for k, v in splits.items())} series")

    data = {kind: {name: {"x": model_windows(splits[name], args.window, args.stride, kind)}
                   for name in ("train", "val")} for kind in ("whole", args.scale)}
    data_tag = hashlib.sha1(repr([args_as_dict(args)[k] for k in DATA_FLAGS]).encode()).hexdigest()
    if not args.eval_only:
        model_args = dict(input_size=1, output_activation="none")
        run_config = dict(args_as_dict(args), script="lstm_ae_snp500")
        points = grid_points(args, model_args, base_config(args, precision))
        recon = search_then_train(args, points, data["whole"], to_device(data["whole"], device),
                                  device, data_tag, run_config, data_flags=DATA_FLAGS)
        pred_point = replace(recon.point, model_args=dict(recon.point.model_args, predict_next=True,
                                                          predict_change=True),
                             train_config=replace(recon.point.train_config,
                                                  prediction_weight=args.prediction_weight))
        pred_data = data[args.scale]
        pred = search_then_train(args, [pred_point], pred_data, to_device(pred_data, device),
                                 device, data_tag, run_config, checkpoint_name="final_prediction.pt",
                                 data_flags=DATA_FLAGS)
        recon_model, pred_model = recon.model, pred.model
        chosen, grid_rows, pred_history = recon.point.label, recon.grid_rows, pred.fit.history
        if grid_rows and ctx.is_main:
            plot_curves({row["label"]: row["val_curve"] for row in grid_rows},
                        figures / "fig3_grid_validation_curves.png",
                        f"S&P 500 grid search: validation MSE over {args.grid_epochs} epochs")
    else:
        chosen, pred_history = recon_ckpt["run_config"].get("chosen_config"), pred_ckpt["history"]
    if not ctx.is_main:  # training was the shared part; rank 0 evaluates and writes
        return {}
    # Figures only now: a refused --resume or --eval-only has written nothing.
    plot_series([table.values[table.tickers.index(t)] for t in tickers], tickers,
                figures / "fig3_1_snp500_daily_high.png", f"Daily {args.field} price",
                xlabel="date", ylabel=f"{args.field} (USD)", x=dates)
    results = evaluate(args, table, splits, counts, recon_model, pred_model, pred_history,
                       device, figures)
    results["chosen_config"] = chosen
    results["provenance"] = run_provenance()  # command, code, machine, date
    write_results(ctx, args, results)  # --eval-only: added to the training record
    print_summary(results, run_dir, figures)
    return results


def evaluate(args, table, splits, counts, recon_model, pred_model, pred_history, device,
             figures) -> dict:
    """Figures and numbers on the test series."""
    test, dates, field = splits["test"], table.dates, args.field
    names = [s.ticker for s in test]
    longest = {}
    for k, s in enumerate(test):                       # each ticker's longest test series
        if s.ticker not in longest or len(s) > len(test[longest[s.ticker]]):
            longest[s.ticker] = k
    own = lambda s: dates[s.start:s.start + len(s)]   # noqa: E731
    rebuilt = fc.reconstruct(recon_model, test, args.window, "whole", device)
    shown = list(args.tickers) + [t for t in dict.fromkeys(names) if t not in args.tickers]
    for number, name in zip((2, 3, 4), shown[:3]):
        s = test[longest[name]]
        plot_reconstructions([s.values], [rebuilt[longest[name]]], [name],
                             figures / f"fig3_{number}_snp500_reconstruction_{name}.png",
                             f"Daily {field}: original vs reconstruction (test stock)",
                             x=own(s), ylabel=f"{field} (USD)", mse_unit=" USD²")
    one = fc.one_step(pred_model, test, args.window, args.scale, device)
    multi = fc.multi_step(pred_model, test, args.window, args.scale, device)
    persistence, flat = fc.persistence(test), fc.flat(test)
    plot_history(pred_history, [("reconstruction MSE", ["train_reconstruction", "val_reconstruction"]),
                                ("next-day prediction MSE", ["train_prediction", "val_prediction"])],
                 figures / "fig3_5_snp500_prediction_losses.png",
                 f"Prediction model: both losses per epoch ({args.scale} scale)")
    k = longest[args.tickers[-1]]
    s = test[k]
    padded = np.concatenate([np.full(s.first - 1, np.nan), one[k]])
    plot_forecast(own(s), s.values, padded, multi[k], flat[k], s.start_multi,
                  figures / f"fig3_6_snp500_multistep_{args.tickers[-1]}.png",
                  f"{args.tickers[-1]}: one-step and multi-step predictions from "
                  f"{str(own(s)[s.start_multi])[:10]}", ylabel=f"{field} (USD)")
    truth_one = [s.values[s.first:] for s in test]
    truth_multi = [s.values[s.start_multi:] for s in test]
    rel = lambda preds, truths, seen: [(p - t) / v for p, t, v in zip(preds, truths, seen)]  # noqa: E731
    seen_multi = [s.values[s.start_multi - 1] for s in test]
    horizon = {"model (fed back)": fc.mse_by_horizon(rel(multi, truth_multi, seen_multi),
                                                     [0 * t for t in truth_multi]),
               "last value flat": fc.mse_by_horizon(rel(flat, truth_multi, seen_multi),
                                                    [0 * t for t in truth_multi])}
    plot_error_by_horizon(horizon, figures / "fig3_7_snp500_error_by_horizon.png",
                          "Multi-step error against steps ahead (test stocks)",
                          ylabel="mean squared relative error")
    one_step = compare(one, persistence, truth_one, [s.values[s.first - 1:-1] for s in test],
                       [np.arange(s.start + s.first, s.start + len(s)) for s in test], horizon=1)
    multi_step = compare(multi, flat, truth_multi, [np.full(len(t), v) for t, v in
                                                    zip(truth_multi, seen_multi)],
                         [np.arange(s.start + s.start_multi, s.start + len(s)) for s in test],
                         horizon=MULTI_STEP_DM_LAGS)
    multi_step["by_horizon_relative_mse"] = {name: {h: float(v[h - 1]) for h in HORIZONS_REPORTED
                                                    if h <= len(v)} for name, v in horizon.items()}
    truth_all = np.concatenate([s.values for s in test])
    return {
        "experiment": "snp500", "split": args.split, "scale": args.scale,
        "n_days": len(dates), "counts": dict(counts, n_null_rows=table.n_null_rows,
                                             n_duplicate_rows=table.n_duplicate_rows),
        "n_series": {k: len(v) for k, v in splits.items()},
        "n_windows": {k: sum(len(window_starts(len(s), args.window, args.stride)) for s in v
                             if len(s) >= args.window) for k, v in splits.items()},
        "test_tickers": list(dict.fromkeys(names)),
        "reconstruction": {"mse_price": fc.mse(np.concatenate(rebuilt), truth_all),
                           "rmse_pct": float(100 * np.sqrt(np.mean(
                               (np.concatenate(rebuilt) / truth_all - 1) ** 2)))},
        "one_step": one_step,
        "multi_step": multi_step,
    }


def print_summary(results: dict, run_dir: Path, figures: Path) -> None:
    def line(name, r, base):
        dm = r["diebold_mariano"]
        return (f"{name}: model {r['model']['mse_price']:.2f} vs {base} "
                f"{r['baseline']['mse_price']:.2f} USD^2 (RMSE {r['model']['rmse_pct']:.3f}% vs "
                f"{r['baseline']['rmse_pct']:.3f}%): the model {r['verdict'].upper()} {base} "
                f"(Diebold-Mariano {dm['statistic']:+.2f}, p={dm['p_value']:.3g}, "
                f"{dm['n']} days)")
    c = results["counts"]
    print(f"\nchosen config: {results['chosen_config']}; split by {results['split']}, "
          f"{results['scale']} scale\n"
          f"stocks: {c['n_stocks']} used in {c['n_series']} series, {c['n_too_short_stocks']} too "
          f"short, {c['n_incomplete_stocks']} incomplete left out; {c['n_null_rows']} rows without "
          f"a price skipped; windows {results['n_windows']}\n"
          f"reconstruction, test stocks: {results['reconstruction']['mse_price']:.2f} USD^2 "
          f"(RMSE {results['reconstruction']['rmse_pct']:.3f}%)\n"
          + line("one-step", results["one_step"], "persistence") + "\n"
          + line("multi-step", results["multi_step"], "flat") + "\n"
          f"results: {run_dir / 'results.json'}   figures: {figures}")


def main(argv: list[str] | None = None) -> dict:
    return run_main(build_parser(), run, argv, QUICK)


if __name__ == "__main__":
    main()
