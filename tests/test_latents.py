"""MNIST latent size, latent export, BCE training and the latent sweep, on the fixture."""

import csv
import json
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

import lstm_ae_mnist
from conftest import is_png, refused, script_settings
from lstm_ae.datasets.mnist import load_mnist, mnist_splits
from lstm_ae.engine.checkpoints import CHECKPOINT_FORMAT, load_model
from lstm_ae.engine.training import TrainConfig
from lstm_ae.evaluation.baselines import pca_mse, pca_mse_curve
from models import LSTMAutoencoder

DOCS = Path(__file__).resolve().parents[1] / "docs" / "mnist.md"


def run_quick(tmp_path, mnist_dir, *extra):
    return lstm_ae_mnist.main(["--quick", "--no-download", "--data-dir", str(mnist_dir),
                               "--run-dir", str(tmp_path / "run"), "--lr", "1e-2",
                               "--epochs", "1", "--hidden-size", "8", "--quiet", *extra])


def test_latent_size_sets_the_shape_of_z_and_keeps_the_reconstruction():
    x = torch.rand(3, 28, 28)
    plain, default = LSTMAutoencoder(28, 12), LSTMAutoencoder(28, 12, latent_size=None)
    small = LSTMAutoencoder(28, 12, latent_size=16)
    assert plain.encode(x)[0].shape == (3, 12) and small.encode(x)[0].shape == (3, 16)
    assert small(x).reconstruction.shape == (3, 28, 28) and small.latent_size == 16
    assert default.n_parameters() == plain.n_parameters() != small.n_parameters()


def test_decoder_state_from_the_latent_starts_the_decoder_from_z():
    torch.manual_seed(0)
    x = torch.rand(3, 28, 28)
    zero, latent = LSTMAutoencoder(28, 12), LSTMAutoencoder(28, 12, decoder_state="latent")
    assert zero.initial_decoder_state(zero.encode(x)[0]) is None
    # A (12 -> 2 x 12) more weights and biases than the assignment's model, nothing else
    assert latent.n_parameters() - zero.n_parameters() == 12 * 24 + 24
    z, _ = latent.encode(x)
    h_0, c_0 = latent.initial_decoder_state(z)
    assert h_0.shape == c_0.shape == (1, 3, 12) and h_0.abs().max() < 1
    expected = latent.to_decoder_state(z)
    assert torch.allclose(h_0[0], torch.tanh(expected[:, :12])) and torch.allclose(c_0[0], expected[:, 12:])
    assert latent(x).reconstruction.shape == (3, 28, 28)
    with pytest.raises(ValueError, match="decoder_state"):
        LSTMAutoencoder(28, 12, decoder_state="copy")


def test_a_bidirectional_encoder_puts_both_directions_into_z():
    torch.manual_seed(0)
    x = torch.rand(3, 28, 28)
    model = LSTMAutoencoder(28, 12, bidirectional_encoder=True, n_classes=10,
                            classifier_input="encoder-mean")
    _, (h_n, _) = model.encoder(x)
    both = torch.cat([h_n[0], h_n[1]], dim=1)          # forward, then backward
    assert model.to_latent.in_features == 24 and model.latent_size == 12
    assert torch.allclose(model.encode(x)[0], model.to_latent(both))
    # the backward direction sees the whole image: its last state changes with row 0
    changed = x.clone()
    changed[:, 0] += 1
    assert not torch.allclose(model.encoder(changed)[1][0][1], h_n[1])
    out = model(x)
    assert out.reconstruction.shape == (3, 28, 28) and out.logits.shape == (3, 10)
    assert model.classifier.in_features == 24 and model.encode(x)[1].shape == (3, 28, 24)
    with pytest.raises(ValueError, match="causal encoder"):
        LSTMAutoencoder(28, 12, bidirectional_encoder=True, predict_next=True)


def test_the_bidirectional_flag_reaches_the_model_and_is_the_row_default(
        tmp_path, mnist_dir):
    results = run_quick(tmp_path, mnist_dir, "--bidirectional-encoder")
    assert results["model"]["bidirectional_encoder"] is True
    model = load_model(tmp_path / "run" / "final.pt")
    assert model.encoder.bidirectional and model.to_latent.in_features == 2 * 8
    # row by row it is the default; the one-way model's settings (its grid keys) carry no key
    splits = dict(train=dict(x=np.random.rand(4, 28, 28).astype(np.float32)))
    row = lstm_ae_mnist.model_settings(script_settings(lstm_ae_mnist), splits)
    assert row["bidirectional_encoder"] is True
    one_way = lstm_ae_mnist.model_settings(
        script_settings(lstm_ae_mnist, ["--no-bidirectional-encoder"]), splits)
    pixel = lstm_ae_mnist.model_settings(script_settings(lstm_ae_mnist, ["--input", "pixel"]),
                                         dict(train=dict(x=np.random.rand(4, 784, 1))))
    assert "bidirectional_encoder" not in one_way and "bidirectional_encoder" not in pixel


def test_pca_mse_curve_equals_a_direct_numpy_computation():
    rng = np.random.default_rng(0)
    train, test = rng.random((40, 6, 5)), rng.random((10, 6, 5))
    flat_train, flat_test = train.reshape(40, -1), test.reshape(10, -1)
    mean = flat_train.mean(0)
    _, _, vt = np.linalg.svd(flat_train - mean, full_matrices=False)
    expected = []
    for k in (1, 3, 8):
        projected = (flat_test - mean) @ vt[:k].T @ vt[:k]
        expected.append(np.mean((flat_test - mean - projected) ** 2))
    assert pca_mse_curve(train, test, [1, 3, 8]) == pytest.approx(expected, rel=1e-9)
    assert pca_mse_curve(train, test, [3])[0] == pytest.approx(pca_mse(train, test, 3), rel=1e-12)


def test_export_equals_encode_and_bce_runs_report_mse(tmp_path, mnist_dir):
    results = run_quick(tmp_path, mnist_dir, "--latent-size", "4", "--export-latents",
                        "--reconstruction-loss", "bce", "--decoder-state", "latent")
    run = tmp_path / "run"
    assert is_png(run / "figures" / "fig2_5_mnist_row_latents.png")
    saved = json.loads((run / "results.json").read_text())
    assert saved["latent_size"] == 4 and saved["baselines"]["pca_components"] == 4
    assert saved["chosen_config"].endswith("loss=bce")
    model = load_model(run / "final.pt")
    assert model.config.decoder_state == "latent" and model.to_decoder_state.in_features == 4
    test_x = torch.from_numpy(mnist_splits(load_mnist(mnist_dir), "row", 60)["test"]["x"])
    with torch.no_grad():
        z, _ = model.encode(test_x)
        mse = float(((model(test_x).reconstruction - test_x) ** 2).mean())
    exported = np.load(run / "latents.npz")
    assert exported["z"].dtype == np.float32 and exported["labels"].dtype == np.int64
    assert np.allclose(exported["z"], z.numpy(), atol=1e-6) and exported["z"].shape == (100, 4)
    assert results["test_reconstruction_mse"] == pytest.approx(mse, rel=1e-5)   # MSE, not BCE
    (run / "latents.npz").unlink()
    run_quick(tmp_path, mnist_dir, "--eval-only", "--export-latents")
    assert np.allclose(np.load(run / "latents.npz")["z"], z.numpy(), atol=1e-6)


def test_older_train_configs_read_as_mse():
    stored = {k: v for k, v in asdict(TrainConfig()).items() if k != "reconstruction_loss"}
    assert TrainConfig(**stored).reconstruction_loss == "mse"


def test_latent_sweep_writes_the_table_and_fig_2_6(tmp_path, mnist_dir, capsys):
    run_quick(tmp_path, mnist_dir, "--latent-sweep", "2", "4")
    run = tmp_path / "run"
    with open(run / "rate_distortion.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["latent_size"]) for row in rows] == [2, 4]
    assert is_png(run / "figures" / "fig2_6_mnist_row_rate_distortion.png")
    for row in rows:
        child = json.loads((run / f"latent_{row['latent_size']}" / "results.json").read_text())
        assert float(row["model_test_mse"]) == pytest.approx(child["test_reconstruction_mse"])
        assert float(row["pca_test_mse"]) == pytest.approx(child["baselines"]["pca_mse"], rel=1e-9)
    assert json.loads((run / "rate_distortion.json").read_text())["rows"][1]["latent_size"] == 4
    capsys.readouterr()
    run_quick(tmp_path, mnist_dir, "--latent-sweep", "2", "4", "--resume")
    assert capsys.readouterr().out.count(": done,") == 2


def test_sweep_resume_refuses_finished_sizes_of_other_settings(tmp_path, mnist_dir, capsys):
    run_quick(tmp_path, mnist_dir, "--latent-sweep", "2")
    line = refused(capsys, lambda: run_quick(tmp_path, mnist_dir, "--latent-sweep", "2",
                                             "--resume", "--hidden-size", "6"),
                   "--hidden-size 8 there, now 6", "--overwrite", untouched=[tmp_path])
    assert "latent_2" in line


def test_sweep_overwrite_removes_sizes_it_no_longer_has(tmp_path, mnist_dir):
    run_quick(tmp_path, mnist_dir, "--latent-sweep", "2", "4")
    run_quick(tmp_path, mnist_dir, "--latent-sweep", "4", "--overwrite")
    run = tmp_path / "run"
    assert not (run / "latent_2").exists() and (run / "latent_4" / "results.json").is_file()
    with open(run / "rate_distortion.csv") as handle:
        assert [int(row["latent_size"]) for row in csv.DictReader(handle)] == [4]


def test_sweep_resume_refuses_a_size_made_under_another_default(tmp_path, mnist_dir, capsys):
    run_quick(tmp_path, mnist_dir, "--latent-sweep", "2")
    config = tmp_path / "run" / "latent_2" / "config.json"
    record = json.loads(config.read_text())
    assert "batch_size" not in record["explicit"]
    record["settings"]["batch_size"] = [128]   # as if the recipe's default was 128 then
    config.write_text(json.dumps(record))
    refused(capsys, lambda: run_quick(tmp_path, mnist_dir, "--latent-sweep", "2", "--resume"),
            "--batch-size 128 there, now 100", "--overwrite")


def test_sweep_overwrite_in_two_processes_clears_once_and_keeps_outside_figures(tmp_path, mnist_dir):
    run_quick(tmp_path, mnist_dir, "--latent-sweep", "2", "4", "--procs", "2", "--threads", "1")
    run, outside = tmp_path / "run", tmp_path / "elsewhere"
    old_figure = run / "figures" / "fig2_6_mnist_row_rate_distortion.png"
    assert old_figure.is_file()
    run_quick(tmp_path, mnist_dir, "--latent-sweep", "4", "--overwrite", "--procs", "2",
              "--threads", "1", "--figures-dir", str(outside))
    assert not (run / "latent_2").exists() and (run / "latent_4" / "results.json").is_file()
    assert not old_figure.exists() and is_png(outside / "fig2_6_mnist_row_rate_distortion.png")
    with open(run / "rate_distortion.csv") as handle:
        assert [int(row["latent_size"]) for row in csv.DictReader(handle)] == [4]


def test_a_checkpoint_older_than_decoder_state_resumes(tmp_path, mnist_dir):
    run_quick(tmp_path, mnist_dir, "--decoder-state", "zero")
    path = tmp_path / "run" / "final.pt"
    checkpoint = torch.load(path, weights_only=False)
    del checkpoint["model_config"]["decoder_state"]   # written before the field existed
    torch.save(checkpoint, path)
    results = run_quick(tmp_path, mnist_dir, "--decoder-state", "zero", "--resume")
    assert results["epochs"] == 1 and results["test_reconstruction_mse"] > 0


def test_a_stopped_sweep_says_how_to_resume(tmp_path, mnist_dir):
    from lstm_ae.cli.interrupts import interruption_line
    run_quick(tmp_path, mnist_dir, "--latent-sweep", "2")
    line = interruption_line("SIGINT", "lstm_ae_mnist.py", ["--latent-sweep", "2", "4"],
                             tmp_path / "run")
    assert "during the latent sweep (1 size(s) begun" in line
    assert line.endswith("lstm_ae_mnist.py --latent-sweep 2 4 --resume")


def test_latent_size_zero_is_refused_in_one_line(tmp_path, mnist_dir, capsys):
    refused(capsys, lambda: run_quick(tmp_path, mnist_dir, "--latent-size", "0"),
            "--latent-size", untouched=[tmp_path])


@pytest.mark.parametrize("other", [["--latent-size", "8"], ["--eval-only"]])
def test_a_sweep_with_a_fixed_size_or_eval_only_is_refused(tmp_path, mnist_dir, capsys, other):
    refused(capsys, lambda: run_quick(tmp_path, mnist_dir, "--latent-sweep", "4", *other),
            "cannot be combined with " + other[0], untouched=[tmp_path])


def test_the_docs_snippet_encodes_digits(tmp_path):
    section = DOCS.read_text().split("## Latent size and what the latent holds")[1].split("\n## ")[0]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    model = LSTMAutoencoder(28, 8, latent_size=3, output_activation="sigmoid")
    path = tmp_path / "final.pt"
    torch.save(dict(format=CHECKPOINT_FORMAT,
                    model_config=model.model_args, best_model_state=model.state_dict(),
                    run_config={}), path)
    namespace = {}
    exec(snippet.replace("runs/mnist_row/final.pt", str(path)), namespace)
    assert namespace["z"].shape == (5, 3)
