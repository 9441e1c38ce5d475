"""Settings in one place per script: the recipe table is the only source of
defaults, explicit flags win, --help shows the effective defaults, and the
resolved settings are printed and saved before training."""

from __future__ import annotations

import json

import pytest

import lstm_ae_mnist
import lstm_ae_snp500
import lstm_ae_toy
from conftest import script_settings
from lstm_ae.cli.recipes import show

SCRIPTS = (lstm_ae_toy, lstm_ae_mnist, lstm_ae_snp500)


def parser_dests(parser) -> set[str]:
    return {action.dest for action in parser._actions if action.dest != "help"}


@pytest.mark.parametrize("module", SCRIPTS, ids=lambda m: m.__name__)
def test_the_recipe_gives_every_flag_a_default_and_nothing_else(module):
    recipe = module.RECIPE
    keys = {*recipe.common, *recipe.defaults, *(k for t in recipe.modes.values() for k in t)}
    assert keys == parser_dests(module.build_parser())
    assert set(recipe.quick) <= keys
    args = script_settings(module, [])
    assert set(vars(args)) - {"_explicit"} == keys and args._explicit == frozenset()


@pytest.mark.parametrize("module", SCRIPTS, ids=lambda m: m.__name__)
def test_help_shows_the_default_each_flag_gets(module):
    text = " ".join(module.build_parser().format_help().split())
    args = script_settings(module, [])
    for dest in ("hidden_size", "lr", "batch_size", "epochs", "grid_epochs"):
        if dest in module.RECIPE.modes.get("row", {}):
            continue
        assert f"(default: {show(getattr(args, dest))})" in text, dest
    fallback = "auto" if module is lstm_ae_mnist else "fp32"    # the suite sets the variable
    assert f"(default: $LSTM_AE_PRECISION, else {fallback})" in text
    assert "--quick" in text and module.RECIPE.quick_text().split()[0] in text


def test_mnist_help_names_the_default_per_input():
    text = " ".join(lstm_ae_mnist.build_parser().format_help().split())
    assert "(default: 128 for row, 64 for pixel)" in text
    assert "(default: 24 for row, 25 for pixel)" in text


def test_explicit_flags_win_over_quick_and_mode_values():
    quick = script_settings(lstm_ae_toy, ["--quick"])
    assert (quick.n_sequences, quick.epochs, quick.hidden_size) == (600, 3, [8, 16])
    mine = script_settings(lstm_ae_toy, ["--quick", "--epochs", "7", "--hidden-size", "4"])
    assert (mine.n_sequences, mine.epochs, mine.hidden_size) == (600, 7, [4])
    assert mine._explicit == {"quick", "epochs", "hidden_size"}
    pixel = script_settings(lstm_ae_mnist, ["--input", "pixel", "--quick", "--epochs", "5"])
    assert (pixel.hidden_size, pixel.epochs, pixel.batch_size, pixel.init) == ([16], 5, [100],
                                                                               "orthogonal")


def test_a_default_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LSTM_AE_SP500_CSV", str(tmp_path / "p.csv"))
    monkeypatch.setenv("LSTM_AE_PROCS", "2")
    args = script_settings(lstm_ae_snp500, [])
    assert args.data == tmp_path / "p.csv" and args.procs == "2"
    monkeypatch.setenv("LSTM_AE_PROCS", "two")
    with pytest.raises(SystemExit) as stop:
        script_settings(lstm_ae_snp500, [])
    assert stop.value.code == 2


def test_the_resolved_settings_are_printed_and_saved_before_training(tmp_path, capsys):
    run = tmp_path / "run"
    lstm_ae_toy.main(["--quick", "--epochs", "1", "--grid-epochs", "1", "--hidden-size", "4",
                      "--n-sequences", "100", "--procs", "1", "--run-dir", str(run), "--quiet"])
    out = capsys.readouterr().out
    assert out.startswith("settings (* given): ") and "epochs=1*" in out and "length=50 " in out
    record = json.loads((run / "config.json").read_text())
    assert record["settings"]["epochs"] == 1 and record["settings"]["length"] == 50
    assert record["settings"]["run_dir"] == str(run)
    assert set(record["explicit"]) == {"quick", "epochs", "grid_epochs", "hidden_size",
                                       "n_sequences", "procs", "run_dir", "quiet"}
