"""Part 2: an LSTM autoencoder on MNIST, row by row or pixel by pixel.

Each image is a sequence: 28 steps of 28 pixels (``--input row``) or 784 steps
of one pixel (``--input pixel``). The autoencoder learns to reconstruct it;
with ``--ce-weight`` above 0 a classifier head is trained at the same time on
MSE + ce_weight * cross-entropy. A grid is searched on validation loss (5,000
images held out of the 60,000 training images), the best configuration is
trained for longer, and the official 10,000 test images give the final numbers.

    python lstm_ae_mnist.py                   # row by row (~16 min on 2 cores)
    python lstm_ae_mnist.py --input pixel     # pixel by pixel, an hour on 2 cores with bf16 (README)
    python lstm_ae_mnist.py --quick           # smoke run on a slice of the data

Figures (--figures-dir, default RUN_DIR/figures/): fig2_1_mnist_<input>_grid.png
(validation curves of the grid), fig2_2_mnist_<input>_reconstructions.png, the
loss and accuracy curves fig2_3_mnist_row_training.png or fig2_4_mnist_pixel_training.png,
fig2_5_mnist_<input>_latents.png (test latents on two principal components) and, with
--latent-sweep, fig2_6_mnist_<input>_rate_distortion.png.
Results (--run-dir, default runs/mnist_<input>/): grid.csv, results.json (with the
baselines of baselines.py beside the test numbers), final.pt. Defaults that depend
on --input are in RECIPE (modes); flags given explicitly win.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lstm_ae.choices import CLASSIFIER_INPUTS, DECODER_STATES, INITS
from lstm_ae.cli.flags import (COMMON_DEFAULTS, REPO_ROOT, add_common_flags, add_setting,
                               new_parser, non_negative_float, non_negative_int, parse_settings,
                               precision_default,
                               positive_int)
from lstm_ae.cli.recipes import FromEnv, Recipe
from lstm_ae.datasets.mnist import check_folder
from lstm_ae.errors import UserError

POSITION_PERIODS = {"row": (7, 14, 28), "pixel": (7, 14, 28, 196, 392, 784)}
# Every default of this script: those that depend on --input (row: one rate, 24 epochs
# on BCE with the pixel recipe's initialisation, a bidirectional encoder, the decoder started
# from z, a light cross-entropy weight and shifts of one pixel, the first measured to beat
# PCA at 99.3% or more; pixel: 25 epochs on BCE at a peak rate of 3e-3, 99.03% and MSE 0.0131 in
# 56 to 59 min on a 2-core CPU with AVX-512 BF16, --epochs 7 on an AVX2-only one; both in docs/mnist.md),
# and what --quick changes. Flags given explicitly win.
RECIPE = Recipe(
    common=COMMON_DEFAULTS,
    defaults=dict(input="row", data_dir=FromEnv("LSTM_AE_MNIST_DIR", REPO_ROOT / "data" / "mnist",
                                                Path, "data/mnist/ in the repository"),
                  no_download=False, val_size=5000, train_limit=0, test_limit=0,
                  classifier_input="latent", clip=[1.0], lr_schedule="cosine",
                  precision=precision_default("auto"), workers=1, latent_size=None,
                  export_latents=False,
                  latent_sweep=None),
    mode_flag="input",
    modes={
        "row": dict(hidden_size=[128], lr=[4e-3], batch_size=[32], grid_epochs=1,
                    epochs=24, shift=1, ce_weight=0.1, forget_bias=None, chrono=True,
                    init="orthogonal", standardize_input=True, reverse_output=False,
                    decoder_position=True, decoder_state="latent", reconstruction_loss="bce",
                    bidirectional_encoder=True),
        "pixel": dict(hidden_size=[64], lr=[3e-3], batch_size=[32], epochs=25, shift=0,
                      ce_weight=0.1, forget_bias=1.0, chrono=True, init="orthogonal",
                      standardize_input=True, reverse_output=True, decoder_position=True,
                      decoder_state="zero", grid_epochs=2, reconstruction_loss="bce",
                      bidirectional_encoder=False),
    },
    quick=dict(train_limit=1000, test_limit=500, hidden_size=[16], lr=[3e-3, 1e-2],
               batch_size=[100], epochs=2, grid_epochs=1))
DATA_FLAGS = ("input", "val_size", "train_limit", "test_limit")
FIGURE_OF_INPUT = {"row": "fig2_3", "pixel": "fig2_4"}
FIGURE_POINTS = 2000   # test latents drawn in the latent figure
# Whether bf16 was checked not to cost accuracy, per --input (pixel: 96.06% test accuracy
# in bf16 against 95.89% in fp32; row: 99.28% and MSE 0.00297 in bf16 against 99.23% and
# 0.00294 in fp32, docs/mnist.md), so --precision auto may pick it.
BF16_CHECKED = {"row": True, "pixel": True}


# What an epoch of the defaults costs, measured on 2-core AMD EPYC CPUs (docs/mnist.md).
EPOCH_COSTS = ("What one epoch of the defaults costs on 2 CPU cores (measured; every epoch line "
               "also says when the run should end): pixel by pixel 123 to 140 s on a CPU with "
               "AVX-512 BF16 (two bf16 processes: the 25 epochs in 52 to 59 min, the hour it is "
               "tuned for) and about 450 s on an AVX2-only CPU (one fp32 process: 25 epochs "
               "take 3 h there; --epochs 7 fits the hour, 95.9% with the earlier MSE recipe at "
               "2e-3); row by row 31 to 35 s on the "
               "AVX-512 BF16 CPU (one bf16 process: 24 epochs in 12 to 14 min; 40 s in fp32) and "
               "about 84 s on a slower AVX2-only CPU (one fp32 process: 34 min; there "
               "--epochs 12 takes 17 min and still beats PCA).")


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(Path(__file__).name, "Part 2: LSTM autoencoder on MNIST, "
                        "reconstruction and classification.")
    add_data_flags(parser.add_argument_group("data"))
    add_task_flags(parser.add_argument_group("task"))
    add_common_flags(parser, RECIPE, experiment="mnist_<input>")
    parser.epilog = EPOCH_COSTS
    return parser


def add_data_flags(group) -> None:
    add_setting(group, RECIPE, "--input", "row: 28 steps of 28 pixels; pixel: 784 steps of 1",
                choices=("row", "pixel"))
    add_setting(group, RECIPE, "--data-dir", "folder of the four MNIST IDX files, fetched there "
                "when missing", type=Path)
    add_setting(group, RECIPE, "--no-download", "fail instead of fetching missing files",
                action="store_true")
    add_setting(group, RECIPE, "--val-size", "validation images held out of the 60,000 "
                "training images", type=positive_int)
    add_setting(group, RECIPE, "--train-limit", "train on only this many images, 0 for all",
                type=non_negative_int)
    add_setting(group, RECIPE, "--test-limit", "test on only this many images, 0 for all "
                "10,000", type=non_negative_int)


def add_task_flags(group) -> None:
    on_off = dict(action=argparse.BooleanOptionalAction)
    add_setting(group, RECIPE, "--latent-size", "size K of the latent z, a linear bottleneck "
                "after the encoder's last hidden state (none: the hidden size, the assignment's "
                "architecture with the same parameter count)", type=positive_int)
    add_setting(group, RECIPE, "--latent-sweep", "run once per latent size K, in "
                "RUN_DIR/latent_K/ (--resume skips a finished one), then write "
                "RUN_DIR/rate_distortion.csv and .json and Fig 2.6", type=positive_int, nargs="+")
    add_setting(group, RECIPE, "--export-latents", "write RUN_DIR/latents.npz: the test images' "
                "latents z (n_test, latent) and their labels; also with --eval-only",
                action="store_true")
    add_setting(group, RECIPE, "--reconstruction-loss", "what the reconstruction is trained on: "
                "MSE, or binary cross-entropy of the sigmoid outputs; the test numbers are MSE "
                "either way", choices=("mse", "bce"))
    add_setting(group, RECIPE, "--ce-weight", "weight of the cross-entropy term; 0 trains "
                "reconstruction alone, without a classifier", type=non_negative_float)
    add_setting(group, RECIPE, "--classifier-input", "what the classifier reads: the latent z, "
                "or the decoder's last hidden state as the assignment puts it; z measured "
                "better (docs/mnist.md)", choices=CLASSIFIER_INPUTS)
    add_setting(group, RECIPE, "--shift", "augment training digits by random shifts of up to "
                "this many pixels, 0 for none", type=non_negative_int)
    add_setting(group, RECIPE, "--forget-bias", "initial forget-gate bias of both LSTMs (none: "
                "PyTorch's 0); ignored with --chrono", type=float)
    add_setting(group, RECIPE, "--chrono", "chrono initialisation of the gate biases for the "
                "sequence length; overrides --forget-bias", **on_off)
    add_setting(group, RECIPE, "--init", "LSTM weight initialisation: PyTorch's, or orthogonal "
                "recurrent and Glorot input weights as in Part 1", choices=INITS)
    add_setting(group, RECIPE, "--standardize-input", "the encoder reads pixels standardized by "
                "the training images' mean and std; targets stay in [0, 1]", **on_off)
    add_setting(group, RECIPE, "--reverse-output", "the decoder writes the last step first, as "
                "in Part 1", **on_off)
    add_setting(group, RECIPE, "--decoder-state", "the decoder's initial state: zeros (the "
                "assignment), or h0 = tanh(A z), c0 = B z from the latent (docs/mnist.md)",
                choices=DECODER_STATES)
    add_setting(group, RECIPE, "--bidirectional-encoder", "the encoder also reads the image "
                "backwards; z = Linear(both directions' last states), same latent size; not in "
                "the assignment (docs/mnist.md)", **on_off)
    add_setting(group, RECIPE, "--decoder-position", "the decoder also reads sin/cos of its "
                f"output position (periods {' '.join(map(str, POSITION_PERIODS['row']))} for row, "
                f"{' '.join(map(str, POSITION_PERIODS['pixel']))} for pixel); not in the "
                "assignment (docs/mnist.md)", **on_off)


def check_paths(args: argparse.Namespace) -> None:
    if args.latent_sweep and (args.latent_size is not None or args.eval_only):
        other = "--latent-size" if args.latent_size is not None else "--eval-only"
        raise UserError(f"--latent-sweep trains one model per size and cannot be combined "
                        f"with {other}; drop one of the two")
    check_folder(args.data_dir)


if __name__ == "__main__":  # a bad flag is refused here, before torch loads (about 3 s)
    parse_settings(build_parser(), RECIPE, sys.argv[1:], check_paths)

import copy  # noqa: E402
import csv  # noqa: E402
import hashlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
from functools import partial  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from lstm_ae.cli.experiment import (base_config, check_same_settings, grid_points,  # noqa: E402
                                    load_for_evaluation, prepare_run, search_then_train,
                                    write_results)
from lstm_ae.cli.flags import args_as_dict  # noqa: E402
from lstm_ae.cli.main import run_main  # noqa: E402
from lstm_ae.cli.run_folder import clear_run, held_run  # noqa: E402
from lstm_ae.datasets.augmentation import random_shift  # noqa: E402
from lstm_ae.datasets.mnist import acquire_mnist, load_mnist, mnist_splits  # noqa: E402
from lstm_ae.engine import distributed  # noqa: E402
from lstm_ae.engine.grid_search import grid_summary  # noqa: E402
from lstm_ae.engine.layout import ProbeShape  # noqa: E402
from lstm_ae.engine.training import (TrainConfig, encode_latents, evaluate,  # noqa: E402
                                     predict, to_device)
from lstm_ae.files import write_bytes_atomic, write_json, write_text_atomic  # noqa: E402
from lstm_ae.evaluation.baselines import mnist_baselines  # noqa: E402
from lstm_ae.reporting.figures import (plot_curves, plot_digits, plot_history,  # noqa: E402
                                       plot_latents, plot_rate_distortion)
from lstm_ae.reporting.provenance import run_provenance  # noqa: E402


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
    if args.latent_sweep:
        return latent_sweep(args)
    ctx = prepare_run(args, f"mnist_{args.input}")
    if args.eval_only:
        model, checkpoint = load_for_evaluation(args, ctx.device, DATA_FLAGS)
    if not args.no_download:
        acquire_mnist(args.data_dir)
    arrays = load_mnist(args.data_dir)
    check_sizes(args, arrays)
    splits = mnist_splits(arrays, args.input, args.val_size,
                          args.train_limit or None, args.test_limit or None)
    tensors = to_device(splits, ctx.device)
    if args.eval_only:
        train_config, history = TrainConfig(**checkpoint["train_config"]), checkpoint["history"]
        chosen, grid_rows = checkpoint["run_config"].get("chosen_config"), []
    else:
        model, train_config, history, chosen, grid_rows = train(args, ctx, splits, tensors)
    test = evaluate(model, tensors["test"], train_config, ctx.device)
    if not ctx.is_main:  # the test split shared among the ranks above; rank 0 writes
        return {}
    draw_figures(args, model, tensors, history, ctx)
    latent_outputs(args, model, splits, tensors, ctx)
    baselines = mnist_baselines(splits["train"]["x"], splits["test"]["x"], splits["test"]["y"],
                                latent_size=model.latent_size)
    baselines["model_beats_pca"] = bool(test["reconstruction"] < baselines["pca_mse"])
    results = results_record(args, model, test, history, chosen, grid_rows, baselines, ctx)
    results["n_test"] = len(splits["test"]["x"])
    write_results(ctx, args, results)  # --eval-only: added to the training record
    accuracy = "n/a" if test.get("accuracy") is None else f"{100 * test['accuracy']:.2f}%"
    print(f"\nchosen config: {chosen}\ntest accuracy: {accuracy}   test reconstruction MSE: "
          f"{test['reconstruction']:.5f}   ({results['seconds_per_epoch']:.1f} s/epoch, "
          f"{results['samples_per_s']:,.0f} samples/s)")
    print(baseline_summary(test["reconstruction"], baselines, classify=test.get("accuracy") is not None))
    print(f"results: {ctx.run_dir / 'results.json'}   figures: {ctx.figures}")
    return results


def latent_sweep(args: argparse.Namespace) -> dict:
    """One run per --latent-sweep size in RUN_DIR/latent_K/, then the rate-distortion
    table (RUN_DIR/rate_distortion.csv and .json) and Fig 2.6."""
    run_dir, sizes = Path(args.run_dir), sorted(set(args.latent_sweep))
    figures = Path(args.figures_dir or run_dir / "figures")
    # Before any run's process group exists, so rank 0 is told by its launcher's RANK.
    if args.overwrite and distributed.env_layout().is_main:
        clear_sweep(run_dir, figures, keep=sizes)
    runs = {}
    for k in sizes:
        sub = copy.copy(args)
        sub.latent_sweep, sub.latent_size = None, k
        sub.run_dir = run_dir / f"latent_{k}"
        sub.figures_dir = sub.run_dir / "figures"
        done = sub.run_dir / "results.json"
        if args.resume and done.exists():
            check_same_settings(sub.run_dir, sub, "give the flags the sweep was started with, "
                                "or start afresh with --overwrite instead of --resume")
            print(f"latent size {k}: done, {done} kept")
            runs[k] = json.loads(done.read_text())
            continue
        print(f"\n=== latent size {k} ===", flush=True)
        runs[k] = run(sub)
    if not all(runs.values()):  # a data-parallel rank other than 0: rank 0 writes the table
        return {}
    # Each run's own PCA baseline has K = its latent size, on the same splits.
    rows = [dict(latent_size=k, model_test_mse=runs[k]["test_reconstruction_mse"],
                 pca_test_mse=runs[k]["baselines"]["pca_mse"],
                 test_accuracy=runs[k]["test_accuracy"]) for k in sizes]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(run_dir / "rate_distortion.csv", buffer.getvalue())
    write_json(run_dir / "rate_distortion.json", {"experiment": f"mnist_{args.input}", "rows": rows})
    plot_rate_distortion(sizes, {"LSTM autoencoder": [r["model_test_mse"] for r in rows],
                                 "PCA, K components": [r["pca_test_mse"] for r in rows]},
                         figures / f"fig2_6_mnist_{args.input}_rate_distortion.png",
                         f"MNIST {args.input} by {args.input}: test MSE against latent size")
    print(f"rate-distortion: {run_dir / 'rate_distortion.csv'}   figure: {figures}")
    return {"rows": rows}


def clear_sweep(run_dir: Path, figures: Path, keep: list[int]) -> None:
    """--overwrite of a sweep: the previous table and figure go (as any run's records),
    and so do the runs of sizes this sweep does not have (the sizes it has are
    overwritten one by one)."""
    clear_run(run_dir, figures)
    for folder in sorted(run_dir.glob("latent_*")):
        size = folder.name.removeprefix("latent_")
        if folder.is_dir() and size.isdigit() and int(size) not in keep and held_run(folder):
            shutil.rmtree(folder)


def model_settings(args: argparse.Namespace, splits: dict) -> dict:
    """The model's arguments the flags describe (grid axes aside)."""
    # Pixel by pixel the forget gates start open (bias 1, as Jozefowicz et al.
    # (2015) advise) unless chrono initialisation sets them.
    train_x = splits["train"]["x"]
    model_args = dict(input_size=train_x.shape[2], output_activation="sigmoid",
                      n_classes=10 if args.ce_weight > 0 else None,
                      classifier_input=args.classifier_input, forget_bias=args.forget_bias,
                      chrono_steps=train_x.shape[1] if args.chrono else None,
                      init=args.init, reverse_output=args.reverse_output,
                      position_periods=(POSITION_PERIODS[args.input]
                                        if args.decoder_position else None))
    if args.latent_size is not None:  # absent otherwise: grid keys as before the flag
        model_args["latent_size"] = args.latent_size
    if args.decoder_state != "zero":  # likewise
        model_args["decoder_state"] = args.decoder_state
    if args.bidirectional_encoder:  # likewise
        model_args["bidirectional_encoder"] = True
    if args.standardize_input:
        model_args.update(input_mean=float(train_x.mean()), input_std=float(train_x.std()))
    return model_args


def train(args: argparse.Namespace, ctx, splits: dict, tensors: dict):
    """Grid search, then the best point for --epochs: (model, train config, history,
    chosen label, grid rows)."""
    points = grid_points(args, model_settings(args, splits),
                         base_config(args, ctx.precision, ce_weight=args.ce_weight,
                                     reconstruction_loss=args.reconstruction_loss))
    if args.reconstruction_loss != "mse":
        for point in points:
            point.params["loss"] = args.reconstruction_loss
    data_tag = hashlib.sha1(repr([args_as_dict(args)[k] for k in DATA_FLAGS + ("shift",)])
                            .encode()).hexdigest()
    run_config = dict(args_as_dict(args), script="lstm_ae_mnist")
    augment = partial(random_shift, max_shift=args.shift) if args.shift else None
    trained = search_then_train(args, points, splits, tensors, ctx.device, data_tag, run_config,
                                augment=augment, data_flags=DATA_FLAGS + ("shift",))
    if trained.grid_rows and ctx.is_main:
        plot_curves({row["label"]: row["val_curve"] for row in trained.grid_rows},
                    ctx.figures / f"fig2_1_mnist_{args.input}_grid.png",
                    f"MNIST {args.input} by {args.input}: validation loss of each configuration")
    return (trained.model, trained.point.train_config, trained.fit.history, trained.point.label,
            trained.grid_rows)


def draw_figures(args: argparse.Namespace, model, tensors: dict, history: list, ctx) -> None:
    """Report Fig 2.2 (test digits and reconstructions) and Fig 2.3 / 2.4 (curves)."""
    prefix = f"mnist_{args.input}"
    shown = tensors["test"]["x"][:8]
    rebuilt = predict(model, shown, ctx.device, ctx.precision)["reconstruction"]
    plot_digits(shown.cpu().numpy().reshape(-1, 28, 28), rebuilt.reshape(-1, 28, 28),
                ctx.figures / f"fig2_2_{prefix}_reconstructions.png",
                f"Test digits (top) and their reconstructions, {args.input} by {args.input}")
    trained_on = args.reconstruction_loss.upper()
    panels = [(f"loss ({trained_on} + w * CE)", ["train_loss", "val_loss"])]
    if "val_accuracy" in history[0]:
        panels.append(("accuracy (%)", ["train_accuracy", "val_accuracy"]))
    plot_history(history, panels, ctx.figures / f"{FIGURE_OF_INPUT[args.input]}_{prefix}_training.png",
                 f"MNIST {args.input} by {args.input}: loss and accuracy per epoch")


def latent_outputs(args: argparse.Namespace, model, splits: dict, tensors: dict, ctx) -> None:
    """Fig 2.5 (the first FIGURE_POINTS test latents on their first two principal
    components), and RUN_DIR/latents.npz with --export-latents (every test image)."""
    n = len(splits["test"]["x"]) if args.export_latents else min(FIGURE_POINTS, len(splits["test"]["x"]))
    # in fp32 whatever the run trained in: the export equals model.encode in a user's Python
    z = encode_latents(model, tensors["test"]["x"][:n], ctx.device, "fp32")
    labels = np.asarray(splits["test"]["y"][:n], dtype=np.int64)
    plot_latents(z[:FIGURE_POINTS], labels[:FIGURE_POINTS],
                 ctx.figures / f"fig2_5_mnist_{args.input}_latents.png",
                 f"MNIST {args.input} by {args.input}: test latents (K={model.latent_size}), "
                 "first two principal components")
    if args.export_latents:
        buffer = io.BytesIO()
        np.savez(buffer, z=z, labels=labels)
        write_bytes_atomic(ctx.run_dir / "latents.npz", buffer.getvalue())
        print(f"latents: {ctx.run_dir / 'latents.npz'} ({z.shape[0]:,} x {z.shape[1]})")


def results_record(args, model, test: dict, history: list, chosen, grid_rows: list,
                   baselines: dict, ctx) -> dict:
    epoch_seconds = [row["seconds"] for row in history]
    return {
        "experiment": f"mnist_{args.input}", "chosen_config": chosen, "model": model.model_args,
        "latent_size": model.latent_size,
        "test_accuracy": test.get("accuracy"), "test_reconstruction_mse": test["reconstruction"],
        "test_cross_entropy": test.get("classification"),
        "best_val_accuracy": max((row.get("val_accuracy", 0.0) for row in history), default=None),
        "epochs": len(history), "seconds_per_epoch": sum(epoch_seconds) / len(epoch_seconds),
        "samples_per_s": sum(row["samples_per_s"] for row in history) / len(history),
        "baselines": baselines, "grid": grid_summary(grid_rows),
        "device": str(ctx.device), "precision": ctx.precision, "threads": torch.get_num_threads(),
        "provenance": run_provenance(),  # command, code, machine, date
    }


def baseline_summary(mse: float, baselines: dict, classify: bool = True) -> str:
    """Two lines: the baselines beside the model's test numbers, and whether it beats PCA."""
    k = baselines["pca_components"]
    chance = f", chance accuracy {100 * baselines['chance_accuracy']:.2f}%" if classify else ""
    verdict = ("beats" if mse < baselines["pca_mse"] else "does NOT beat")
    return (f"baselines on the same test images: mean-image MSE {baselines['mean_image_mse']:.5f}, "
            f"PCA with {k} components (= latent size) MSE {baselines['pca_mse']:.5f}{chance}\n"
            f"reconstruction: the model {verdict} PCA ({mse:.5f} vs {baselines['pca_mse']:.5f})"
            + ("" if mse < baselines["mean_image_mse"] else ", and not even the mean image"))


def probe_shape(args: argparse.Namespace) -> ProbeShape:
    """The model and batch --procs/--precision auto measure: the first grid point on
    images of this --input, validation --val-size images per training set."""
    steps, size = (28, 28) if args.input == "row" else (784, 1)
    model = dict(model_settings(args, {"train": {"x": torch.full((1, steps, size), 0.5)}}),
                 hidden_size=args.hidden_size[0], num_layers=args.num_layers[0])
    if args.standardize_input:  # the data's own mean and spread do not change the speed
        model.update(input_mean=0.13, input_std=0.31)
    train = args.train_limit or 60_000 - args.val_size
    return ProbeShape(model, steps, args.batch_size[0], val_fraction=args.val_size / train,
                      ce_weight=args.ce_weight)


def main(argv: list[str] | None = None) -> dict:
    return run_main(build_parser(), RECIPE, run, argv, check=check_paths,
                    experiment=lambda args: f"mnist_{args.input}", probe_shape=probe_shape,
                    allow_bf16=lambda args: BF16_CHECKED[args.input])


if __name__ == "__main__":
    main()
