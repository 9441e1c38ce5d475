"""Part 1: an LSTM autoencoder reconstructs synthetic signals.

10,000 sequences of 50 uniform values in [0, 1], each with 11 consecutive values
scaled down by 0.1 at a random place, split 60/20/20. A grid over hidden size,
learning rate, gradient clipping and batch size is searched on validation loss;
the best configuration is trained for longer and evaluated on the test split
against two baselines that need no model.

    python lstm_ae_toy.py             # default grid + final training (5 to 10 min, 2 cores)
    python lstm_ae_toy.py --quick     # everything end to end in under a minute

Figures (--figures-dir, default RUN_DIR/figures/): fig1_1_toy_examples.png,
fig1_2_toy_reconstruction_a.png, fig1_3_toy_reconstruction_b.png,
fig1_grid_validation_curves.png. Results (--run-dir, default runs/toy/): grid.csv,
results.json, final.pt (the checkpoint).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lstm_ae.cli.flags import (COMMON_DEFAULTS, add_common_flags, add_setting, new_parser,
                               precision_default,
                               parse_settings, positive_int)
from lstm_ae.cli.recipes import Recipe
from lstm_ae.datasets.splits import split_indices
from lstm_ae.errors import UserError

# Every default of this script, and what --quick changes (flags given explicitly win).
# The grid: 2 x 2 x 2 x 2 = 16 points, hidden sizes below the length so the model
# cannot copy its input through.
RECIPE = Recipe(
    common=COMMON_DEFAULTS,
    defaults=dict(n_sequences=10_000, length=50, data_seed=0,
                  # peak rates up to 1.5e-2 and a clip at 0.05: 0.00237 (AVX-512) and 0.00289 (AVX2
                  # kernels) where {5e-3, 1e-2} x {0.1, none} ended at 0.00342 and 0.00426 (docs/toy.md)
                  hidden_size=[32, 48], lr=[1e-2, 1.5e-2], batch_size=[32, 64], clip=[0.05, None],
                  epochs=150, grid_epochs=3, lr_schedule="onecycle",
                  precision=precision_default("fp32"), workers=2),
    # --quick trains its two tiny points in this process: a worker pool's start-up
    # (a PyTorch import per worker) costs more than the two points themselves.
    quick=dict(n_sequences=600, epochs=3, grid_epochs=2, hidden_size=[8, 16], lr=[1e-2],
               batch_size=[64], clip=[1.0], workers=1))
DATA_FLAGS = ("n_sequences", "length", "data_seed")
# reverse_output and orthogonal init: the two choices that made this task learnable
# in minutes (docs/toy.md).
MODEL_ARGS = dict(input_size=1, output_activation="sigmoid", reverse_output=True,
                  init="orthogonal", forget_bias=1.0)
# Whether bf16 was checked not to cost accuracy here: no, so --precision auto stays fp32.
BF16_CHECKED = False


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(Path(__file__).name, "Part 1: LSTM autoencoder on synthetic signals "
                        "(grid search, reconstruction figures, test MSE against baselines).")
    data = parser.add_argument_group("data")
    add_setting(data, RECIPE, "--n-sequences", "number of sequences", type=positive_int)
    add_setting(data, RECIPE, "--length", "sequence length T, at least 35", type=positive_int)
    add_setting(data, RECIPE, "--data-seed", "seed of the data generator, separate from --seed",
                type=int)
    add_common_flags(parser, RECIPE, experiment="toy")
    return parser


def check_sizes(args: argparse.Namespace) -> None:
    """Refuse data sizes that cannot work, before anything is written."""
    if args.length < 35:
        raise UserError(f"--length must be at least 35 to hold the window, got {args.length}")
    sizes = [len(part) for part in split_indices(args.n_sequences)]
    if min(sizes) < 1:
        raise UserError(f"--n-sequences {args.n_sequences} leaves an empty split (train/val/test "
                        f"{sizes[0]}/{sizes[1]}/{sizes[2]}); give at least 10")


def check_inputs(args: argparse.Namespace) -> None:
    if not args.eval_only:  # --eval-only takes the sizes of its checkpoint
        check_sizes(args)


if __name__ == "__main__":  # a bad flag is refused here, before torch loads (about 3 s)
    parse_settings(build_parser(), RECIPE, sys.argv[1:], check_inputs)

import hashlib  # noqa: E402

import numpy as np  # noqa: E402

from lstm_ae.cli.experiment import (base_config, grid_points, load_for_evaluation,  # noqa: E402
                                    prepare_run, search_then_train, write_results)
from lstm_ae.cli.flags import args_as_dict  # noqa: E402
from lstm_ae.cli.main import run_main  # noqa: E402
from lstm_ae.datasets.synthetic import baseline_mse, generate_toy_sequences  # noqa: E402
from lstm_ae.engine.grid_search import grid_summary  # noqa: E402
from lstm_ae.engine.layout import ProbeShape  # noqa: E402
from lstm_ae.engine.training import TrainConfig, evaluate, predict, to_device  # noqa: E402
from lstm_ae.reporting.figures import plot_curves, plot_reconstructions, plot_series  # noqa: E402
from lstm_ae.reporting.provenance import run_provenance  # noqa: E402


def load_splits(args: argparse.Namespace) -> tuple[dict, np.ndarray]:
    """{'train'|'val'|'test': {'x': (n, T, 1)}} and the dip positions of the test split."""
    sequences, dip = generate_toy_sequences(args.n_sequences, args.length, args.data_seed)
    train, val, test = split_indices(len(sequences))
    splits = {name: {"x": sequences[idx, :, None]}
              for name, idx in (("train", train), ("val", val), ("test", test))}
    return splits, dip[test]


def run(args: argparse.Namespace) -> dict:
    if not args.eval_only:
        check_sizes(args)
    ctx = prepare_run(args, "toy")
    if max(args.hidden_size) >= args.length:
        print(f"note: a hidden size of {max(args.hidden_size)} >= the length {args.length} "
              "lets the model copy its input; the assignment keeps it below", file=sys.stderr)
    if args.eval_only:
        model, checkpoint = load_for_evaluation(args, ctx.device, DATA_FLAGS)
        check_sizes(args)
    splits, test_dip = load_splits(args)
    tensors = to_device(splits, ctx.device)
    if args.eval_only:
        train_config, history = TrainConfig(**checkpoint["train_config"]), checkpoint["history"]
        chosen, grid_rows = checkpoint["run_config"].get("chosen_config"), []
    else:
        model, train_config, history, chosen, grid_rows = train(args, ctx, splits, tensors)
    test_metrics = evaluate(model, tensors["test"], train_config, ctx.device)
    if not ctx.is_main:  # the test split shared among the ranks above; rank 0 writes
        return {}
    # Figures only now: a refused --resume or --eval-only has written nothing.
    draw_figures(model, splits, tensors, test_dip, ctx)
    baselines = baseline_mse(splits["train"]["x"][:, :, 0], splits["test"]["x"][:, :, 0])
    results = {
        "experiment": "toy", "chosen_config": chosen, "model": model.model_args,
        "test_mse": test_metrics["reconstruction"], "baselines_test_mse": baselines,
        "best_val_mse": min(row["val_loss"] for row in history), "epochs": len(history),
        "train_seconds": sum(row["seconds"] for row in history), "grid": grid_summary(grid_rows),
        "device": str(ctx.device), "precision": ctx.precision,
    }
    results["provenance"] = run_provenance()  # command, code, machine, date
    write_results(ctx, args, results)  # --eval-only: added to the training record
    print(f"\nchosen config: {chosen}\ntest MSE: {results['test_mse']:.5f}   baselines: "
          f"per-step train mean {baselines['per_step_train_mean']:.5f}, "
          f"sequence's own mean {baselines['sequence_own_mean']:.5f}\n"
          f"results: {ctx.run_dir / 'results.json'}   figures: {ctx.figures}")
    return results


def train(args: argparse.Namespace, ctx, splits: dict, tensors: dict):
    """Grid search, then the best point for --epochs: (model, train config, history,
    chosen label, grid rows)."""
    points = grid_points(args, MODEL_ARGS, base_config(args, ctx.precision))
    data_tag = hashlib.sha1(f"toy {args.n_sequences} {args.length} {args.data_seed}".encode()).hexdigest()
    run_config = dict(args_as_dict(args), script="lstm_ae_toy")
    trained = search_then_train(args, points, splits, tensors, ctx.device, data_tag, run_config,
                                data_flags=DATA_FLAGS)
    if trained.grid_rows and ctx.is_main:
        plot_curves({row["label"]: row["val_curve"] for row in trained.grid_rows},
                    ctx.figures / "fig1_grid_validation_curves.png",
                    f"Toy grid search: validation MSE over {args.grid_epochs} epochs")
    return (trained.model, trained.point.train_config, trained.fit.history, trained.point.label,
            trained.grid_rows)


def draw_figures(model, splits: dict, tensors: dict, test_dip, ctx) -> None:
    """Report Figs 1.1-1.3: three training signals, two test reconstructions."""
    examples = splits["train"]["x"][:3, :, 0]
    plot_series(list(examples), [f"sequence {i + 1}" for i in range(3)],
                ctx.figures / "fig1_1_toy_examples.png", "Three synthetic signals")
    reconstruction = predict(model, tensors["test"]["x"][:2], ctx.device,
                             ctx.precision)["reconstruction"]
    for number, (suffix, k) in enumerate((("a", 0), ("b", 1)), start=2):
        plot_reconstructions([splits["test"]["x"][k, :, 0]], [reconstruction[k, :, 0]],
                             [f"test sequence {k + 1} (window at i={test_dip[k]})"],
                             ctx.figures / f"fig1_{number}_toy_reconstruction_{suffix}.png",
                             f"Original vs reconstruction (report Fig 1.{number})")


def probe_shape(args: argparse.Namespace) -> ProbeShape:
    """The model and batch --procs/--precision auto measure: the first grid point
    (validation is a third of the training rows: the 60/20/20 split)."""
    model = dict(MODEL_ARGS, hidden_size=args.hidden_size[0], num_layers=args.num_layers[0])
    return ProbeShape(model, steps=args.length, batch_size=args.batch_size[0], val_fraction=1 / 3)


def main(argv: list[str] | None = None) -> dict:
    return run_main(build_parser(), RECIPE, run, argv, experiment="toy", check=check_inputs,
                    probe_shape=probe_shape, allow_bf16=BF16_CHECKED)


if __name__ == "__main__":
    main()
