"""Part 1: an LSTM autoencoder reconstructs synthetic signals.

10,000 sequences of 50 uniform values in [0, 1], each with 11 consecutive values
scaled down by 0.1 at a random place, split 60/20/20. A grid over hidden size,
learning rate, gradient clipping and batch size is searched on validation loss;
the best configuration is trained for longer and evaluated on the test split
against two baselines that need no model.

    python lstm_ae_toy.py             # default grid + final training (~15 min, 2 cores)
    python lstm_ae_toy.py --quick     # everything end to end in under a minute

Figures (--figures-dir, default RUN_DIR/figures/): fig1_1_toy_examples.png,
fig1_2_toy_reconstruction_a.png, fig1_3_toy_reconstruction_b.png,
fig1_grid_validation_curves.png. Results (--run-dir, default runs/toy/): grid.csv,
results.json, final.pt (the checkpoint).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

from lstm_ae.cli.flags import add_common_flags, args_as_dict, positive_int, run_main
from lstm_ae.errors import UserError
from lstm_ae.cli.experiment import write_results
from lstm_ae.cli.experiment import (base_config, grid_points, load_for_evaluation, prepare_run,
                                    search_then_train)
from lstm_ae.engine.grid_search import grid_summary
from lstm_ae.reporting.provenance import run_provenance
from lstm_ae.reporting.figures import plot_curves, plot_reconstructions, plot_series
from lstm_ae.datasets.splits import split_indices
from lstm_ae.datasets.synthetic import baseline_mse, generate_toy_sequences
from lstm_ae.engine.training import TrainConfig, evaluate, predict, to_device


DATA_FLAGS = ("n_sequences", "length", "data_seed")
# --quick: small data and grid, a few epochs (flags given explicitly still win).
QUICK = dict(n_sequences=600, epochs=3, grid_epochs=2, hidden_size=[8, 16], lr=[1e-2],
             batch_size=[64], clip=[1.0])



def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=Path(__file__).name,
        description="Part 1: LSTM autoencoder on synthetic signals (grid search, "
                    "reconstruction figures, test MSE against baselines).")
    data = parser.add_argument_group("data")
    data.add_argument("--n-sequences", type=positive_int, default=10_000,
                      help="number of sequences (default: 10000)")
    data.add_argument("--length", type=positive_int, default=50,
                      help="sequence length T, at least 35 (default: 50)")
    data.add_argument("--data-seed", type=int, default=0,
                      help="seed of the data generator, separate from --seed (default: 0)")
    # The default grid: 2 x 2 x 2 x 2 = 16 points, hidden sizes below the length
    # so the model cannot copy its input through.
    add_common_flags(parser, experiment="toy", quick="600 sequences, a 2-point grid, 3 epochs",
                     hidden_size=[32, 48], lr=[2e-3, 5e-3],
                     batch_size=[32, 64], clip=[0.1, None], num_layers=[1], epochs=300,
                     grid_epochs=10, lr_schedule="cosine", precision="fp32", workers=2)
    return parser


def load_splits(args: argparse.Namespace) -> tuple[dict, np.ndarray]:
    """{'train'|'val'|'test': {'x': (n, T, 1)}} and the dip positions of the test split."""
    sequences, dip = generate_toy_sequences(args.n_sequences, args.length, args.data_seed)
    train, val, test = split_indices(len(sequences))
    splits = {name: {"x": sequences[idx, :, None]}
              for name, idx in (("train", train), ("val", val), ("test", test))}
    return splits, dip[test]


def check_sizes(args: argparse.Namespace) -> None:
    """Refuse data sizes that cannot work, before anything is written."""
    if args.length < 35:
        raise UserError(f"--length must be at least 35 to hold the window, got {args.length}")
    sizes = [len(part) for part in split_indices(args.n_sequences)]
    if min(sizes) < 1:
        raise UserError(f"--n-sequences {args.n_sequences} leaves an empty split (train/val/test "
                        f"{sizes[0]}/{sizes[1]}/{sizes[2]}); give at least 10")


def run(args: argparse.Namespace) -> dict:
    if not args.eval_only:
        check_sizes(args)
    ctx = prepare_run(args, "toy")
    device, precision, figures, run_dir = ctx.device, ctx.precision, ctx.figures, ctx.run_dir
    if max(args.hidden_size) >= args.length:
        print(f"note: a hidden size of {max(args.hidden_size)} >= the length {args.length} "
              "lets the model copy its input; the assignment keeps it below", file=sys.stderr)

    if args.eval_only:
        model, checkpoint = load_for_evaluation(args, device, DATA_FLAGS)
        check_sizes(args)
    splits, test_dip = load_splits(args)
    tensors = to_device(splits, device)

    if args.eval_only:
        train_config = TrainConfig(**checkpoint["train_config"])
        chosen, history = checkpoint["run_config"].get("chosen_config"), checkpoint["history"]
        grid_rows = []
    else:
        # reverse_output and orthogonal init: the two choices that made this task
        # learnable in minutes (see README, "What made Part 1 work").
        model_args = dict(input_size=1, output_activation="sigmoid", reverse_output=True,
                          init="orthogonal", forget_bias=1.0)
        points = grid_points(args, model_args, base_config(args, precision))
        data_tag = hashlib.sha1(f"toy {args.n_sequences} {args.length} {args.data_seed}".encode()).hexdigest()
        chosen = points[0].label if len(points) == 1 else None
        run_config = dict(args_as_dict(args), script="lstm_ae_toy")
        trained = search_then_train(args, points, splits, tensors, device, data_tag, run_config,
                                    data_flags=DATA_FLAGS)
        model, train_config, history = trained.model, trained.point.train_config, trained.fit.history
        chosen, grid_rows = trained.point.label, trained.grid_rows
        if grid_rows and ctx.is_main:
            plot_curves({row["label"]: row["val_curve"] for row in grid_rows},
                        figures / "fig1_grid_validation_curves.png",
                        f"Toy grid search: validation MSE over {args.grid_epochs} epochs")

    test_metrics = evaluate(model, tensors["test"], train_config, device)
    if not ctx.is_main:  # the test split shared among the ranks above; rank 0 writes
        return {}
    # Figures only now: a refused --resume or --eval-only has written nothing.
    examples = splits["train"]["x"][:3, :, 0]
    plot_series(list(examples), [f"sequence {i + 1}" for i in range(3)],
                figures / "fig1_1_toy_examples.png", "Three synthetic signals")
    reconstruction = predict(model, tensors["test"]["x"][:2], device, precision)["reconstruction"]
    for number, (suffix, k) in enumerate((("a", 0), ("b", 1)), start=2):
        plot_reconstructions([splits["test"]["x"][k, :, 0]], [reconstruction[k, :, 0]],
                             [f"test sequence {k + 1} (window at i={test_dip[k]})"],
                             figures / f"fig1_{number}_toy_reconstruction_{suffix}.png",
                             f"Original vs reconstruction (report Fig 1.{number})")

    baselines = baseline_mse(splits["train"]["x"][:, :, 0], splits["test"]["x"][:, :, 0])
    results = {
        "experiment": "toy",
        "chosen_config": chosen,
        "model": model.model_args,
        "test_mse": test_metrics["reconstruction"],
        "baselines_test_mse": baselines,
        "best_val_mse": min(row["val_loss"] for row in history),
        "epochs": len(history),
        "train_seconds": sum(row["seconds"] for row in history),
        "grid": grid_summary(grid_rows),
        "device": str(device), "precision": precision,
    }
    results["provenance"] = run_provenance()  # command, code, machine, date
    write_results(ctx, args, results)  # --eval-only: added to the training record
    print(f"\nchosen config: {chosen}\ntest MSE: {results['test_mse']:.5f}   baselines: "
          f"per-step train mean {baselines['per_step_train_mean']:.5f}, "
          f"sequence's own mean {baselines['sequence_own_mean']:.5f}\n"
          f"results: {run_dir / 'results.json'}   figures: {figures}")
    return results


def main(argv: list[str] | None = None) -> dict:
    return run_main(build_parser(), run, argv, QUICK)


if __name__ == "__main__":
    main()
