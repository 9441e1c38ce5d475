"""Part 3: an LSTM autoencoder on S&P 500 daily highs: reconstruction, one-step
and multi-step prediction, each against a naive baseline.

Stocks are split into train/validation/test by a fixed seed, whatever --tickers
says: --tickers only picks the stocks drawn in the figures, from whichever split
holds them (a figure's title says "test stock", "validation stock" or "training
stock: seen in training"). Two models are trained on windows of --window days:

1. Reconstruction: each series min-max scaled to [0, 1] as in the report; grid
   search on validation loss, the best configuration trained for --epochs.
2. Prediction: the same configuration plus a causal head that predicts x_{t+1}
   from x_1..x_t, trained on reconstruction MSE + prediction MSE, on the --scale
   (lstm_ae/datasets/price_windows.py). The multi-step forecast starts at the
   middle day of each test series, feeding each prediction back in.

Every stock is used over its own dates (ragged histories; price_windows.py);
--complete-only keeps the report's rule. --split time tests on the later dates.
Every number is measured on the test split alone (never on --tickers outside
it), in price units and relative to the last price seen, beside the baselines
"tomorrow equals today" (one step) and "the last seen value stays flat"
(multi-step). The verdict (beats / ties with / loses to a baseline) is the
Diebold-Mariano test at the 5% level on the squared relative error averaged over
the stocks of each day (lstm_ae/evaluation/diebold_mariano.py).

    python lstm_ae_snp500.py --data FILE             # the daily-prices CSV (docs/data.md)
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
import datetime
import sys
from pathlib import Path


from lstm_ae.choices import SCALES
from lstm_ae.cli.flags import (COMMON_DEFAULTS, REPO_ROOT, add_common_flags, add_setting,
                               new_parser, non_negative_float, non_negative_int, parse_settings,
                               precision_default,
                               positive_int)
from lstm_ae.cli.recipes import FromEnv, Recipe
from lstm_ae.datasets.prices import KAGGLE_FILE, check_price_file

# Every default of this script, and what --quick changes (flags given explicitly win).
RECIPE = Recipe(
    common=COMMON_DEFAULTS,
    defaults=dict(data=FromEnv("LSTM_AE_SP500_CSV", REPO_ROOT / "data" / KAGGLE_FILE, Path,
                               f"data/{KAGGLE_FILE}"),
                  field="high", start=None, end=None, tickers=["AMZN", "GOOGL"], window=50,
                  stride=10, max_gap=5, complete_only=False, split="stock", scale="window",
                  prediction_weight=1.0, hidden_size=[32, 64], lr=[2e-3, 5e-3], batch_size=[64],
                  clip=[1.0, None], epochs=20, grid_epochs=5, lr_schedule="cosine",
                  precision=precision_default("fp32"), workers=2),
    quick=dict(hidden_size=[8, 16], lr=[1e-2], clip=[1.0], batch_size=[64], epochs=2,
               grid_epochs=1))
# What the models are trained and tested on (the data tag, --resume and --eval-only checks);
# --tickers is not among them: it only picks the figures' stocks.
DATA_FLAGS = ("data", "field", "start", "end", "window", "stride", "split", "scale",
              "max_gap", "complete_only")
HORIZONS_REPORTED = (1, 5, 20, 60, 120, 250)
MODEL_ARGS = dict(input_size=1, output_activation="none")   # the reconstruction model
# Whether bf16 was checked not to cost accuracy here: no, so --precision auto stays fp32.
BF16_CHECKED = False
MULTI_STEP_DM_LAGS = 20     # a trading month of autocovariances for the fed-back path


def date_text(text: str) -> str:
    """A date as YYYY-MM-DD (01/02/2016 is refused: day or month first is ambiguous)."""
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {text!r} (use YYYY-MM-DD)") from None
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(Path(__file__).name, "Part 3: LSTM autoencoder on S&P 500 daily "
                        "prices: reconstruction, one-step and multi-step prediction against "
                        "naive baselines.")
    add_data_flags(parser.add_argument_group("data"))
    add_common_flags(parser, RECIPE, experiment="snp500")
    return parser


def add_data_flags(group) -> None:
    add_setting(group, RECIPE, "--data", "daily prices CSV, plain, .gz or .zip", type=Path)
    add_setting(group, RECIPE, "--field", "price column to model, e.g. high, close")
    add_setting(group, RECIPE, "--start", "first date of the window, YYYY-MM-DD (none: the "
                "file's first)", type=date_text)
    add_setting(group, RECIPE, "--end", "last date of the window, YYYY-MM-DD (none: the "
                "file's last)", type=date_text)
    add_setting(group, RECIPE, "--tickers", "stocks drawn in the figures (any case, repeats "
                "dropped), from whichever split holds them (titles say which); they never "
                "change the split or the test numbers; the multi-step figure uses the last one",
                nargs="+")
    add_setting(group, RECIPE, "--window", "days per training window, at least 2",
                type=positive_int)
    add_setting(group, RECIPE, "--stride", "days between the starts of training windows",
                type=positive_int)
    add_setting(group, RECIPE, "--max-gap", "a hole of at most this many trading days is "
                "filled with the last price; a longer one splits the history", type=non_negative_int)
    add_setting(group, RECIPE, "--complete-only", "the report's rule: only stocks with a price "
                "on every trading day (off: every stock over its own dates)", action="store_true")
    add_setting(group, RECIPE, "--split", "stock: test on other stocks over all dates; time: "
                "train on every stock's first 60%% of dates, validate on the next 20%%, test on "
                "the last 20%%", choices=("stock", "time"))
    add_setting(group, RECIPE, "--scale", "prediction model's scale: window (log price "
                "relative to each window's first day), first-half (min-max of the first half), "
                "log (log price relative to the first day)", choices=SCALES)
    add_setting(group, RECIPE, "--prediction-weight", "weight of the next-day MSE in the "
                "prediction model", type=non_negative_float)


def check_paths(args: argparse.Namespace) -> None:
    check_price_file(args.data)


if __name__ == "__main__":  # a bad flag or file is refused here, before torch loads (about 3 s)
    parse_settings(build_parser(), RECIPE, sys.argv[1:], check_paths)

import hashlib  # noqa: E402
from dataclasses import replace  # noqa: E402

import numpy as np  # noqa: E402

from lstm_ae.cli.experiment import (base_config, grid_points, load_for_evaluation,  # noqa: E402
                                    prepare_run, search_then_train, write_results)
from lstm_ae.cli.flags import args_as_dict  # noqa: E402
from lstm_ae.cli.main import run_main  # noqa: E402
from lstm_ae.datasets.price_windows import (Series, choose_tickers, model_windows,  # noqa: E402
                                            split_series, stock_series, window_starts)
from lstm_ae.datasets.prices import load_prices  # noqa: E402
from lstm_ae.engine.layout import ProbeShape  # noqa: E402
from lstm_ae.engine.training import to_device  # noqa: E402
from lstm_ae.errors import DataError, UserError  # noqa: E402
from lstm_ae.evaluation import forecasting as fc  # noqa: E402
from lstm_ae.evaluation.diebold_mariano import compare  # noqa: E402
from lstm_ae.reporting.figures import (plot_curves, plot_error_by_horizon,  # noqa: E402
                                       plot_forecast, plot_history, plot_reconstructions,
                                       plot_series)
from lstm_ae.reporting.provenance import run_provenance  # noqa: E402


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
    if not splits["test"]:
        raise DataError(f"no test series with --split {args.split}; choose a smaller --window")
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
        run_config = dict(args_as_dict(args), script="lstm_ae_snp500")
        points = grid_points(args, MODEL_ARGS, base_config(args, precision))
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
    """Numbers on the test series (whatever --tickers), then the figures."""
    out = forecast_test_split(args, splits["test"], recon_model, pred_model, device)
    horizon = horizon_errors(splits["test"], out)
    results = headline_numbers(args, table, splits, counts, out, horizon)
    results["figure_tickers"] = draw_test_figures(args, table.dates, splits, out, horizon,
                                                  (recon_model, pred_model), pred_history,
                                                  device, figures)
    return results


def forecast_test_split(args, test, recon_model, pred_model, device) -> dict:
    """The model's and the baselines' prices on every test series, one array each."""
    return {"rebuilt": fc.reconstruct(recon_model, test, args.window, "whole", device),
            "one": fc.one_step(pred_model, test, args.window, args.scale, device),
            "multi": fc.multi_step(pred_model, test, args.window, args.scale, device),
            "persistence": fc.persistence(test), "flat": fc.flat(test)}


def horizon_errors(test, out: dict) -> dict:
    """Mean squared error relative to the last price seen, per step ahead, of the
    fed-back forecast and of the flat baseline."""
    truth = [s.values[s.start_multi:] for s in test]
    seen = [s.values[s.start_multi - 1] for s in test]
    rel = lambda preds: [(p - t) / v for p, t, v in zip(preds, truth, seen)]  # noqa: E731
    return {"model (fed back)": fc.mse_by_horizon(rel(out["multi"]), [0 * t for t in truth]),
            "last value flat": fc.mse_by_horizon(rel(out["flat"]), [0 * t for t in truth])}


def headline_numbers(args, table, splits, counts, out: dict, horizon: dict) -> dict:
    """results.json's numbers, on the test split alone."""
    test = splits["test"]
    truth_one = [s.values[s.first:] for s in test]
    truth_multi = [s.values[s.start_multi:] for s in test]
    seen_multi = [s.values[s.start_multi - 1] for s in test]
    one_step = compare(out["one"], out["persistence"], truth_one,
                       [s.values[s.first - 1:-1] for s in test],
                       [np.arange(s.start + s.first, s.start + len(s)) for s in test], horizon=1)
    multi_step = compare(out["multi"], out["flat"], truth_multi,
                         [np.full(len(t), v) for t, v in zip(truth_multi, seen_multi)],
                         [np.arange(s.start + s.start_multi, s.start + len(s)) for s in test],
                         horizon=MULTI_STEP_DM_LAGS)
    multi_step["by_horizon_relative_mse"] = {name: {h: float(v[h - 1]) for h in HORIZONS_REPORTED
                                                    if h <= len(v)} for name, v in horizon.items()}
    truth_all, rebuilt = np.concatenate([s.values for s in test]), np.concatenate(out["rebuilt"])
    return {
        "experiment": "snp500", "split": args.split, "scale": args.scale,
        "n_days": len(table.dates), "counts": dict(counts, n_null_rows=table.n_null_rows,
                                                   n_duplicate_rows=table.n_duplicate_rows),
        "n_series": {k: len(v) for k, v in splits.items()},
        "n_windows": {k: sum(len(window_starts(len(s), args.window, args.stride)) for s in v
                             if len(s) >= args.window) for k, v in splits.items()},
        "test_tickers": list(dict.fromkeys(s.ticker for s in test)),
        "reconstruction": {"mse_price": fc.mse(rebuilt, truth_all),
                           "rmse_pct": float(100 * np.sqrt(np.mean((rebuilt / truth_all - 1) ** 2)))},
        "one_step": one_step,
        "multi_step": multi_step,
    }


# Figure titles: where the drawn series comes from.
SPLIT_WORDS = {"stock": {"test": "test stock", "val": "validation stock",
                         "train": "training stock: seen in training"},
               "time": {"test": "test period", "val": "validation period",
                        "train": "training period: seen in training"}}


def figure_series(splits: dict, ticker: str) -> tuple[str, int, Series]:
    """(split, index, series): the ticker's longest series in the first of test, val,
    train that holds it. Outside test the forecasts start at its middle day."""
    for name in ("test", "val", "train"):
        found = [k for k, s in enumerate(splits[name]) if s.ticker == ticker]
        if found:
            k = max(found, key=lambda k: len(splits[name][k]))
            s = splits[name][k]
            if name != "test":
                s = replace(s, first=1, start_multi=max(len(s) // 2, 1))
            return name, k, s
    raise DataError(f"--tickers {ticker}: no series of it in any split")


def draw_test_figures(args, dates, splits, out, horizon, models, pred_history, device,
                      figures) -> list[str]:
    """fig3_2..fig3_4 (reconstructions), fig3_5 (losses), fig3_6 (multi-step), fig3_7;
    returns the tickers drawn."""
    recon_model, pred_model = models
    own = lambda s: dates[s.start:s.start + len(s)]   # noqa: E731
    field, words = args.field, SPLIT_WORDS[args.split]
    names = list(dict.fromkeys(s.ticker for s in splits["test"]))
    shown = list(args.tickers) + [t for t in names if t not in args.tickers]
    for number, ticker in zip((2, 3, 4), shown[:3]):
        name, k, s = figure_series(splits, ticker)
        rebuilt = (out["rebuilt"][k] if name == "test" else
                   fc.reconstruct(recon_model, [s], args.window, "whole", device)[0])
        plot_reconstructions([s.values], [rebuilt], [ticker],
                             figures / f"fig3_{number}_snp500_reconstruction_{ticker}.png",
                             f"Daily {field}: original vs reconstruction ({words[name]})",
                             x=own(s), ylabel=f"{field} (USD)", mse_unit=" USD²")
    plot_history(pred_history, [("reconstruction MSE", ["train_reconstruction", "val_reconstruction"]),
                                ("next-day prediction MSE", ["train_prediction", "val_prediction"])],
                 figures / "fig3_5_snp500_prediction_losses.png",
                 f"Prediction model: both losses per epoch ({args.scale} scale)")
    ticker = args.tickers[-1]
    name, k, s = figure_series(splits, ticker)
    if name == "test":
        one, multi, flat = out["one"][k], out["multi"][k], out["flat"][k]
    else:   # the same forecasts, on this one series
        one, multi = (f(pred_model, [s], args.window, args.scale, device)[0]
                      for f in (fc.one_step, fc.multi_step))
        flat = fc.flat([s])[0]
    padded = np.concatenate([np.full(s.first - 1, np.nan), one])
    plot_forecast(own(s), s.values, padded, multi, flat, s.start_multi,
                  figures / f"fig3_6_snp500_multistep_{ticker}.png",
                  f"{ticker}: one-step and multi-step predictions from "
                  f"{str(own(s)[s.start_multi])[:10]} ({words[name]})", ylabel=f"{field} (USD)")
    plot_error_by_horizon(horizon, figures / "fig3_7_snp500_error_by_horizon.png",
                          "Multi-step error against steps ahead (test stocks)",
                          ylabel="mean squared relative error")
    return list(dict.fromkeys(shown[:3] + [ticker]))


VERDICT_WORDS = {"beats": "beats", "ties": "ties with", "loses": "loses to"}


def verdict_text(result: dict, baseline: str) -> str:
    """'the model loses to flat on ... (Diebold-Mariano +2.31, p=0.02, 1234 days)': the
    verdict of compare(), judged at the 5% level on the squared error relative to the
    last price seen, averaged over the stocks of each day."""
    dm = result["diebold_mariano"]
    return (f"the model {VERDICT_WORDS[result['verdict']]} {baseline} on squared relative error "
            f"(daily mean over stocks; Diebold-Mariano {dm['statistic']:+.2f}, "
            f"p={dm['p_value']:.3g}, {dm['n']} days)")


def print_summary(results: dict, run_dir: Path, figures: Path) -> None:
    def line(name, r, base):
        return (f"{name}: model {r['model']['mse_price']:.2f} vs {base} "
                f"{r['baseline']['mse_price']:.2f} USD^2 (RMSE {r['model']['rmse_pct']:.3f}% vs "
                f"{r['baseline']['rmse_pct']:.3f}%): {verdict_text(r, base)}")
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


def probe_shape(args: argparse.Namespace) -> ProbeShape:
    """The model and batch --procs/--precision auto measure: the reconstruction
    model's first grid point on windows of --window days (validation about a third
    of the training windows: the 60/20/20 split)."""
    model = dict(MODEL_ARGS, hidden_size=args.hidden_size[0], num_layers=args.num_layers[0])
    return ProbeShape(model, steps=args.window, batch_size=args.batch_size[0], val_fraction=1 / 3)


def main(argv: list[str] | None = None) -> dict:
    return run_main(build_parser(), RECIPE, run, argv, experiment="snp500", check=check_paths,
                    checkpoints=("final.pt", "final_prediction.pt"), probe_shape=probe_shape,
                    allow_bf16=BF16_CHECKED)


if __name__ == "__main__":
    main()
