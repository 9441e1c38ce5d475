import json

import numpy as np
import pytest

import lstm_ae_toy
from conftest import is_png, no_temp_files, script_settings
from lstm_ae.datasets.splits import split_indices
from lstm_ae.datasets.synthetic import baseline_mse, generate_toy_sequences


def test_generator_shapes_range_and_seed():
    x, dip = generate_toy_sequences()
    assert x.shape == (10_000, 50) and x.dtype == np.float32 and dip.shape == (10_000,)
    assert x.min() >= 0 and x.max() <= 1
    assert dip.min() == 20 and dip.max() == 30          # 20..30 inclusive, all drawn
    again, _ = generate_toy_sequences(seed=0)
    other, _ = generate_toy_sequences(seed=1)
    assert np.array_equal(x, again) and not np.array_equal(x, other)


def test_window_is_exactly_x_i_minus_5_to_x_i_plus_5_one_indexed():
    scaled, dip = generate_toy_sequences(500, seed=7)
    plain, same_dip = generate_toy_sequences(500, seed=7, factor=1.0)
    assert np.array_equal(dip, same_dip)
    for k in range(500):
        i = dip[k]                                      # 1-indexed centre
        one_indexed = np.arange(1, 51)
        inside = (one_indexed >= i - 5) & (one_indexed <= i + 5)
        assert inside.sum() == 11
        np.testing.assert_allclose(scaled[k, inside], 0.1 * plain[k, inside], rtol=1e-6)
        np.testing.assert_array_equal(scaled[k, ~inside], plain[k, ~inside])
    # 0-indexed that is x[i-6 : i+5]
    k = 0
    i = dip[k]
    np.testing.assert_allclose(scaled[k, i - 6:i + 5], 0.1 * plain[k, i - 6:i + 5], rtol=1e-6)
    assert scaled[k, i - 7] == plain[k, i - 7] and scaled[k, i + 5] == plain[k, i + 5]


def test_split_is_60_20_20_disjoint_and_fixed():
    train, val, test = split_indices(10_000)
    assert (len(train), len(val), len(test)) == (6000, 2000, 2000)
    assert len(np.unique(np.concatenate([train, val, test]))) == 10_000
    again = split_indices(10_000)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again))


def test_baselines_on_a_hand_made_set():
    train = np.array([[0.0, 1.0], [1.0, 1.0]])     # per-step mean (0.5, 1.0)
    test = np.array([[1.0, 0.0]])                   # own mean 0.5
    result = baseline_mse(train, test)
    assert result["per_step_train_mean"] == pytest.approx((0.25 + 1.0) / 2)
    assert result["sequence_own_mean"] == pytest.approx(0.25)


def quick_args(tmp_path, *extra):
    return ["--quick", "--workers", "1", "--figures-dir", str(tmp_path / "fig"),
            "--run-dir", str(tmp_path / "run"), *extra]


def test_quick_run_writes_figures_and_results_and_eval_only_agrees(tmp_path, capsys):
    results = lstm_ae_toy.main(quick_args(tmp_path))
    for name in ("fig1_1_toy_examples", "fig1_2_toy_reconstruction_a", "fig1_3_toy_reconstruction_b",
                 "fig1_grid_validation_curves"):
        assert is_png(tmp_path / "fig" / f"{name}.png"), name
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["test_mse"] == pytest.approx(results["test_mse"])
    assert 0 < saved["test_mse"] < 0.2
    assert saved["baselines_test_mse"]["per_step_train_mean"] == pytest.approx(0.08, abs=0.01)
    assert saved["chosen_config"].startswith("hs=") and len(saved["grid"]) == 2
    assert "test MSE" in capsys.readouterr().out
    assert no_temp_files(tmp_path)
    again = lstm_ae_toy.main(quick_args(tmp_path, "--eval-only"))
    assert again["test_mse"] == pytest.approx(results["test_mse"], rel=1e-6)
    assert again["chosen_config"] == results["chosen_config"]


def test_resume_after_a_finished_run_trains_nothing_and_agrees(tmp_path, capsys):
    first = lstm_ae_toy.main(quick_args(tmp_path, "--seed", "5"))
    capsys.readouterr()
    second = lstm_ae_toy.main(quick_args(tmp_path, "--seed", "5", "--resume"))
    out = capsys.readouterr().out
    assert out.count("already in grid.csv") == 2 and "epoch   1/3" not in out
    assert second["test_mse"] == pytest.approx(first["test_mse"], rel=1e-6)


def test_same_seed_same_result(tmp_path):
    a = lstm_ae_toy.main(quick_args(tmp_path / "a", "--seed", "1"))
    b = lstm_ae_toy.main(quick_args(tmp_path / "b", "--seed", "1"))
    assert a["test_mse"] == b["test_mse"]


@pytest.mark.parametrize("flags, message", [
    (["--hidden-size", "0"], "must be at least 1"),
    (["--hidden-size", "-3"], "must be at least 1"),
    (["--lr"], "expected at least one argument"),
    (["--lr", "0"], "must be greater than 0"),
    (["--clip", "abc"], "expected a number"),
    (["--device", "tpu"], "invalid choice"),
    (["--length", "20"], "--length must be at least 35"),
    (["--batch-size", "1.5"], "expected a whole number"),
])
def test_bad_flags_end_with_one_clear_line_and_status_2(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as exit_info:
        lstm_ae_toy.main(quick_args(tmp_path, *flags))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_unwritable_output_folder_is_refused_before_training(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as exit_info:
        lstm_ae_toy.main(["--quick", "--figures-dir", str(blocker / "fig")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write figures" in err[0]


def test_cuda_asked_for_without_a_gpu(tmp_path, capsys, monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exit_info:
        lstm_ae_toy.main(quick_args(tmp_path, "--device", "cuda"))
    assert exit_info.value.code == 2
    assert "no CUDA GPU" in capsys.readouterr().err


def test_importing_the_script_runs_nothing():
    args = script_settings(lstm_ae_toy, [])
    assert args.hidden_size == [32, 48] and max(args.hidden_size) < 50
    n_points = len(args.hidden_size) * len(args.lr) * len(args.clip) * len(args.batch_size)
    assert 4 <= n_points <= 30


def test_toy_defaults_are_the_documented_recipe():
    settings = script_settings(lstm_ae_toy, [])
    assert settings.lr_schedule == "onecycle"      # cosine ended on a plateau (docs/toy.md)
    assert (settings.hidden_size, settings.lr, settings.batch_size) == (
        [32, 48], [1e-2, 1.5e-2], [32, 64])
    assert (settings.epochs, settings.grid_epochs, settings.clip) == (150, 3, [0.05, None])
    assert script_settings(lstm_ae_toy, ["--lr-schedule", "cosine"]).lr_schedule == "cosine"
