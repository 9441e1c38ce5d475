"""Part 2: an LSTM autoencoder on MNIST, row by row or pixel by pixel.

Each image is a sequence: 28 steps of 28 pixels (``--input row``) or 784 steps
of one pixel (``--input pixel``). The autoencoder learns to reconstruct it;
with ``--ce-weight`` above 0 a classifier head is trained at the same time on
MSE + ce_weight * cross-entropy. A grid is searched on validation loss (5,000
images held out of the 60,000 training images), the best configuration is
trained for longer, and the official 10,000 test images give the final numbers.

    python lstm_ae_mnist.py                   # row by row (~30 min on 2 cores)
    python lstm_ae_mnist.py --input pixel ... # see README for the pixel commands
    python lstm_ae_mnist.py --quick           # smoke run on a slice of the data

Figures (--figures-dir): fig2_1_mnist_<input>_grid.png (validation curves of the
grid), fig2_2_mnist_<input>_reconstructions.png, and the loss and accuracy curves
fig2_3_mnist_row_training.png or fig2_4_mnist_pixel_training.png.
Results (--run-dir, default runs/mnist_<input>/): grid.csv, results.json, final.pt.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from functools import partial
from pathlib import Path

import torch

from cli import (REPO_ROOT, add_common_flags, args_as_dict, non_negative_float,
                 non_negative_int, positive_int, run_main)
from experiment import (base_config, grid_points, load_for_evaluation, prepare_run,
                        search_then_train)
from io_utils import UserError, write_json
from mnist_data import acquire_mnist, load_mnist, mnist_splits, random_shift
from models import CLASSIFIER_INPUTS, INITS
from grid_search import grid_summary
from run_info import run_provenance
from plotting import plot_curves, plot_digits, plot_history
from training import TrainConfig, evaluate, predict, to_device

DATA_FLAGS = ("input", "val_size", "train_limit", "test_limit")
FIGURE_OF_INPUT = {"row": "fig2_3", "pixel": "fig2_4"}
# --quick: a slice of the data, a small model (flags given explicitly still win).
QUICK = dict(train_limit=1000, test_limit=500, hidden_size=[16], lr=[3e-3, 1e-2],
             batch_size=[100], epochs=2, grid_epochs=1)



def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=Path(__file__).name,
        description="Part 2: LSTM autoencoder on MNIST, reconstruction and classification.")
    data = parser.add_argument_group("data")
    data.add_argument("--input", choices=("row", "pixel"), default="row",
                      help="row: 28 steps of 28 pixels; pixel: 784 steps of 1 (default: row)")
    data.add_argument("--data-dir", type=Path,
                      default=Path(os.environ.get("LSTM_AE_MNIST_DIR", REPO_ROOT / "data" / "mnist")),
                      help="folder of the four MNIST IDX files, fetched there when missing "
                           "(default: $LSTM_AE_MNIST_DIR, else data/mnist/ in the repository)")
    data.add_argument("--no-download", action="store_true",
                      help="fail instead of fetching missing files (default: fetch)")
    data.add_argument("--val-size", type=positive_int, default=5000,
                      help="validation images held out of the 60,000 training images (default: 5000)")
    data.add_argument("--train-limit", type=non_negative_int, default=0,
                      help="train on only this many images, 0 for all (default: 0)")
    data.add_argument("--test-limit", type=non_negative_int, default=0,
                      help="test on only this many images, 0 for all 10,000 (default: 0)")
    task = parser.add_argument_group("task")
    task.add_argument("--ce-weight", type=non_negative_float, default=1.0,
                      help="weight of the cross-entropy term; 0 trains reconstruction alone, "
                           "without a classifier (default: 1)")
    task.add_argument("--classifier-input", choices=CLASSIFIER_INPUTS, default="latent",
                      help="what the classifier reads: the latent z, or the decoder's last "
                           "hidden state as the assignment puts it; z measured better, see "
                           "README (default: latent)")
    task.add_argument("--shift", type=non_negative_int, default=2,
                      help="augment training digits by random shifts of up to this many "
                           "pixels, 0 for none (default: 2)")
    task.add_argument("--forget-bias", type=float, default=None,
                      help="initial forget-gate bias of both LSTMs (default: 1 for pixel, "
                           "PyTorch's 0 for row)")
    task.add_argument("--chrono", action="store_true",
                      help="chrono initialisation of the gate biases for the sequence length; "
                           "overrides --forget-bias (default: off)")
    task.add_argument("--init", choices=INITS, default="default",
                      help="LSTM weight initialisation: PyTorch's, or orthogonal recurrent and "
                           "Glorot input weights as in Part 1 (default: default, PyTorch's)")
    task.add_argument("--standardize-input", action="store_true",
                      help="the encoder reads pixels standardized by the training images' "
                           "mean and std; targets stay in [0, 1] (default: off)")
    task.add_argument("--reverse-output", action="store_true",
                      help="the decoder writes the last step first, as in Part 1 (default: off)")
    add_common_flags(parser, experiment="mnist_<input>",
                     quick="1,000 training and 500 test images, a small model, 2 epochs",
                     hidden_size=[128], lr=[1e-3, 3e-3],
                     batch_size=[128], clip=[1.0], num_layers=[1], epochs=30, grid_epochs=2,
                     lr_schedule="cosine", precision="auto", workers=1)
    return parser


def check_sizes(args: argparse.Namespace, arrays: dict) -> None:
    """Refuse sizes the data cannot give, before anything is written. --quick's own
    sizes (not given on the command line) shrink to fit a small data set instead."""
    explicit = getattr(args, "_explicit", frozenset())
    if args.shift >= 28:
        raise UserError(f"--shift {args.shift} moves digits out of the 28-pixel image; give at most 27")
    n_train, n_test = len(arrays["train_images"]), len(arrays["test_images"])
    if args.quick and "val_size" not in explicit:
        args.val_size = min(500, n_train // 5)
    if args.val_size >= n_train:
        raise UserError(f"--val-size {args.val_size} leaves no training images: {args.data_dir} "
                        f"has {n_train:,}; give at most {n_train - 1:,}")
    left = n_train - args.val_size
    if args.train_limit > left:
        if "train_limit" in explicit:
            raise UserError(f"--train-limit {args.train_limit:,} exceeds the {left:,} training "
                            f"images left after --val-size {args.val_size:,}; lower either")
        args.train_limit = 0
    if args.test_limit > n_test:
        if "test_limit" in explicit:
            raise UserError(f"--test-limit {args.test_limit:,} exceeds the {n_test:,} test images "
                            f"in {args.data_dir}; give at most {n_test:,} or 0 for all")
        args.test_limit = 0


def run(args: argparse.Namespace) -> dict:
    ctx = prepare_run(args, f"mnist_{args.input}")
    device, precision, figures, run_dir = ctx.device, ctx.precision, ctx.figures, ctx.run_dir
    if args.eval_only:
        model, checkpoint = load_for_evaluation(args, device, DATA_FLAGS)

    if not args.no_download:
        acquire_mnist(args.data_dir)
    arrays = load_mnist(args.data_dir)
    check_sizes(args, arrays)
    splits = mnist_splits(arrays, args.input, args.val_size,
                          args.train_limit or None, args.test_limit or None)
    tensors = to_device(splits, device)
    n_features = splits["train"]["x"].shape[2]
    prefix = f"mnist_{args.input}"

    if args.eval_only:
        train_config = TrainConfig(**checkpoint["train_config"])
        history, chosen, grid_rows = checkpoint["history"], checkpoint["run_config"].get("chosen_config"), []
    else:
        classify = args.ce_weight > 0
        # Memory must last hundreds of steps pixel by pixel: start the forget gates
        # open (bias 1), as Jozefowicz et al. (2015) advise for LSTMs in general.
        forget_bias = args.forget_bias if args.forget_bias is not None else (
            1.0 if args.input == "pixel" else None)
        model_args = dict(input_size=n_features, output_activation="sigmoid",
                          n_classes=10 if classify else None,
                          classifier_input=args.classifier_input, forget_bias=forget_bias,
                          chrono_steps=splits["train"]["x"].shape[1] if args.chrono else None,
                          init=args.init, reverse_output=args.reverse_output)
        if args.standardize_input:
            train_x = splits["train"]["x"]
            model_args.update(input_mean=float(train_x.mean()), input_std=float(train_x.std()))
        points = grid_points(args, model_args, base_config(args, precision, ce_weight=args.ce_weight))
        data_tag = hashlib.sha1(repr([args_as_dict(args)[k] for k in DATA_FLAGS + ("shift",)])
                                .encode()).hexdigest()
        run_config = dict(args_as_dict(args), script="lstm_ae_mnist")
        augment = partial(random_shift, max_shift=args.shift) if args.shift else None
        trained = search_then_train(args, points, splits, tensors, device, data_tag, run_config,
                                    augment=augment, data_flags=DATA_FLAGS + ("shift",))
        model, train_config, history = trained.model, trained.point.train_config, trained.fit.history
        chosen, grid_rows = trained.point.label, trained.grid_rows
        if grid_rows and ctx.is_main:
            plot_curves({row["label"]: row["val_curve"] for row in grid_rows},
                        figures / f"fig2_1_{prefix}_grid.png",
                        f"MNIST {args.input} by {args.input}: validation loss of each configuration")

    test = evaluate(model, tensors["test"], train_config, device)
    if not ctx.is_main:  # the test split shared among the ranks above; rank 0 writes
        return {}
    shown = tensors["test"]["x"][:8]
    rebuilt = predict(model, shown, device, precision)["reconstruction"]
    plot_digits(shown.cpu().numpy().reshape(-1, 28, 28), rebuilt.reshape(-1, 28, 28),
                figures / f"fig2_2_{prefix}_reconstructions.png",
                f"Test digits (top) and their reconstructions, {args.input} by {args.input}")
    panels = [("loss (MSE + w * CE)", ["train_loss", "val_loss"])]
    if "val_accuracy" in history[0]:
        panels.append(("accuracy (%)", ["train_accuracy", "val_accuracy"]))
    plot_history(history, panels, figures / f"{FIGURE_OF_INPUT[args.input]}_{prefix}_training.png",
                 f"MNIST {args.input} by {args.input}: loss and accuracy per epoch")

    epoch_seconds = [row["seconds"] for row in history]
    results = {
        "experiment": prefix, "chosen_config": chosen, "model": model.model_args,
        "test_accuracy": test.get("accuracy"), "test_reconstruction_mse": test["reconstruction"],
        "test_cross_entropy": test.get("classification"),
        "best_val_accuracy": max((row.get("val_accuracy", 0.0) for row in history), default=None),
        "epochs": len(history), "seconds_per_epoch": sum(epoch_seconds) / len(epoch_seconds),
        "samples_per_s": sum(row["samples_per_s"] for row in history) / len(history),
        "grid": grid_summary(grid_rows),
        "n_test": len(splits["test"]["x"]), "device": str(device), "precision": precision,
        "threads": torch.get_num_threads(),
    }
    results["provenance"] = run_provenance()  # command, code, machine, date
    write_json(run_dir / "results.json", results)
    accuracy = "n/a" if test.get("accuracy") is None else f"{100 * test['accuracy']:.2f}%"
    print(f"\nchosen config: {chosen}\ntest accuracy: {accuracy}   test reconstruction MSE: "
          f"{test['reconstruction']:.5f}   ({results['seconds_per_epoch']:.1f} s/epoch, "
          f"{results['samples_per_s']:,.0f} samples/s)\nresults: {run_dir / 'results.json'}   "
          f"figures: {figures}")
    return results


def main(argv: list[str] | None = None) -> dict:
    return run_main(build_parser(), run, argv, QUICK)


if __name__ == "__main__":
    main()
