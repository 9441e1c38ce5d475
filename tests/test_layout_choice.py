"""--procs auto / --precision auto: candidates, the probe's choice and its cache, how
the scripts use it (run_layout.decide), and the layout line every run prints."""

from __future__ import annotations

import argparse
import json
import time

import pytest
import torch

import lstm_ae_mnist
import lstm_ae_snp500
import lstm_ae_toy
from conftest import script_settings
from lstm_ae.cli import run_layout
from lstm_ae.engine import distributed, layout
from lstm_ae.engine.layout import Candidate, ProbeShape, choose_layout, cpu_candidates
from models import AutoencoderConfig

SHAPE = ProbeShape(dict(input_size=1, hidden_size=6), steps=12, batch_size=8, val_fraction=0.5)


def labels(candidates):
    return [c.label for c in candidates]


def test_candidates_follow_the_flags():
    assert labels(cpu_candidates(2, True, "auto", "auto", None)) == [
        "1x2 fp32", "1x2 bf16", "2x1 fp32", "2x1 bf16"]
    assert labels(cpu_candidates(2, False, "auto", "auto", None)) == ["1x2 fp32", "2x1 fp32"]
    assert labels(cpu_candidates(2, True, "1", "auto", None)) == ["1x2 fp32", "1x2 bf16"]
    assert labels(cpu_candidates(2, True, "auto", "fp32", 1)) == ["1x1 fp32", "2x1 fp32"]
    assert labels(cpu_candidates(1, True, "auto", "auto", None)) == ["1x1 fp32", "1x1 bf16"]


@pytest.fixture
def fake_rates(monkeypatch, tmp_path):
    """set(rates): the probe answers ``rates`` (label -> samples/s) and counts its calls, on
    a 2-core CPU with native bf16, with a cache of this test's own."""
    monkeypatch.setenv("LSTM_AE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(layout, "bf16_works_on", lambda device: True)
    monkeypatch.setattr(layout.distributed, "cpu_cores", lambda: 2)
    calls, table = [], {}

    def probe(candidate, shape, batches=layout.PROBE_BATCHES):
        calls.append(candidate.label)
        return table[candidate.label]
    monkeypatch.setattr(layout, "probe", probe)

    def set_rates(rates):
        table.clear()
        table.update(rates)
        return calls
    return set_rates


def test_auto_takes_the_fastest_measured_and_caches_it(fake_rates, tmp_path):
    calls = fake_rates({"1x2 fp32": 180.0, "1x2 bf16": 150.0, "2x1 fp32": 220.0, "2x1 bf16": 333.0})
    choice = choose_layout(SHAPE, "auto", "auto", None, allow_bf16=True, log=None)
    assert choice.candidate == Candidate(2, 1, "bf16") and choice.reason == "measured"
    assert len(calls) == 4
    again = choose_layout(SHAPE, "auto", "auto", None, allow_bf16=True, log=None)
    assert again.candidate == choice.candidate and again.reason == "cached measurement"
    assert again.rates == choice.rates and len(calls) == 4      # paid once
    assert len(json.loads((tmp_path / "cache" / "layouts.json").read_text())) == 1
    other = ProbeShape(dict(input_size=1, hidden_size=7), steps=12, batch_size=8)
    choose_layout(other, "auto", "auto", None, allow_bf16=True, log=None)
    assert len(calls) == 8                          # another shape is measured anew


def test_bf16_only_where_the_part_allows_it(fake_rates):
    calls = fake_rates({"1x2 fp32": 180.0, "2x1 fp32": 170.0, "1x2 bf16": 900.0, "2x1 bf16": 900.0})
    choice = choose_layout(SHAPE, "auto", "auto", None, allow_bf16=False, log=None)
    assert choice.candidate == Candidate(1, 2, "fp32") and sorted(calls) == ["1x2 fp32", "2x1 fp32"]
    assert choice.rates == {"1x2 fp32": 180.0, "2x1 fp32": 170.0}
    asked = choose_layout(SHAPE, "auto", "bf16", None, allow_bf16=False, log=None)
    assert asked.candidate.precision == "bf16"      # --precision bf16 is as asked


def test_flags_that_fix_the_layout_skip_the_probe(fake_rates):
    calls = fake_rates({})
    choice = choose_layout(None, "2", "fp32", None, allow_bf16=True, log=None)
    assert choice.candidate == Candidate(2, 1, "fp32") and choice.reason == "given"
    assert calls == []


def test_a_real_probe_measures_a_rate_and_leaves_the_process_as_it_was():
    torch.manual_seed(5)
    state, threads = torch.get_rng_state(), torch.get_num_threads()
    started = time.monotonic()
    rate = layout.probe(Candidate(1, 1, "fp32"), SHAPE)    # one thread: as the tests run
    assert rate > 0 and time.monotonic() - started < 10
    assert torch.equal(torch.get_rng_state(), state) and torch.get_num_threads() == threads


# ----------------------------------------------------------------------------
# The scripts: run_layout.decide, the line and the record
# ----------------------------------------------------------------------------

def toy_argv(tmp_path, *extra):
    return ["--quick", "--n-sequences", "120", "--epochs", "1", "--workers", "1", "--quiet",
            "--run-dir", str(tmp_path / "run"), *extra]


def provenance_layout(tmp_path) -> dict:
    return json.loads((tmp_path / "run" / "results.json").read_text())["provenance"]["layout"]


def test_the_measured_choice_is_used_then_cached(fake_rates, tmp_path, capsys):
    calls = fake_rates({"1x1 fp32": 300.0, "2x1 fp32": 200.0})
    argv = toy_argv(tmp_path, "--procs", "auto", "--threads", "1")
    lstm_ae_toy.main(argv)
    out = capsys.readouterr().out
    assert sorted(calls) == ["1x1 fp32", "2x1 fp32"]
    assert "layout: cpu, 1 process x 1 thread, fp32 (measured: 300 samples/s; 2x1 fp32 200)" in out
    record = provenance_layout(tmp_path)
    assert record["reason"] == record["processes_chosen_by"] == "measured"
    assert record["probe_samples_per_s"] == {"1x1 fp32": 300.0, "2x1 fp32": 200.0}
    assert (record["processes"], record["threads_per_process"]) == (1, 1)
    lstm_ae_toy.main(argv + ["--overwrite"])
    assert len(calls) == 2                                   # the second run did not probe
    assert "fp32 (cached measurement: 300 samples/s; 2x1 fp32 200)" in capsys.readouterr().out
    assert provenance_layout(tmp_path)["reason"] == "cached measurement"


def decided(argv, module=lstm_ae_toy, allow_bf16=None) -> argparse.Namespace:
    args = script_settings(module, argv)
    allowed = module.BF16_CHECKED if allow_bf16 is None else allow_bf16
    if isinstance(allowed, dict):                   # MNIST: per --input
        allowed = allowed[args.input]
    run_layout.decide(args, module.probe_shape, allowed, log=None)
    return args


def test_decide_writes_the_winner_into_the_settings(fake_rates):
    calls = fake_rates({"1x2 fp32": 100.0, "2x1 fp32": 250.0, "1x2 bf16": 400.0, "2x1 bf16": 1.0})
    args = decided(["--procs", "auto"])             # toy: precision fp32 by its recipe
    assert (args.procs, args.threads, args.precision) == ("2", 1, "fp32") and len(calls) == 2
    args = decided(["--input", "pixel", "--procs", "auto", "--precision", "auto"], lstm_ae_mnist)
    assert (args.procs, args.threads, args.precision) == ("1", 2, "bf16")     # pixel: bf16 checked
    args = decided(["--input", "row", "--procs", "auto", "--precision", "auto"], lstm_ae_mnist)
    assert (args.procs, args.threads, args.precision) == ("1", 2, "bf16")     # row: checked too
    args = decided(["--procs", "auto", "--precision", "auto"], lstm_ae_snp500)
    assert args.precision == "fp32"                 # S&P: bf16 not checked, never picked


def test_fixed_flags_eval_only_torchrun_and_gpus_skip_the_probe(fake_rates, monkeypatch):
    calls = fake_rates({})
    args = decided(["--procs", "2", "--precision", "fp32"])
    assert (args.procs, args.threads) == ("2", None)
    assert decided(["--procs", "auto", "--eval-only"]).procs == "auto"   # one process: the rule
    monkeypatch.setattr(run_layout.distributed, "under_launcher", lambda: True)
    assert decided(["--procs", "auto"]).procs == "auto"                  # torchrun's processes
    monkeypatch.setattr(run_layout.distributed, "under_launcher", lambda: False)
    monkeypatch.setattr(run_layout, "resolve_device", lambda name: torch.device("cuda"))
    args = decided(["--procs", "auto", "--precision", "auto"], lstm_ae_mnist)
    assert args.procs == "auto" and args.precision == "auto" and calls == []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert distributed.resolve_procs(args.procs, torch.device("cuda")) == 4   # one per GPU
    assert run_layout.allows_bf16(args) is True                        # row: bf16 checked
    args = decided(["--procs", "auto", "--precision", "auto"], lstm_ae_snp500)
    assert run_layout.allows_bf16(args) is False                       # S&P: fp32 on GPUs too


def test_the_precision_variable_sets_the_default_and_a_bad_one_is_refused(monkeypatch, capsys):
    from conftest import refused
    monkeypatch.setenv("LSTM_AE_PRECISION", "BF16")
    assert script_settings(lstm_ae_mnist).precision == "bf16"
    assert script_settings(lstm_ae_toy, ["--precision", "fp32"]).precision == "fp32"  # flag wins
    monkeypatch.delenv("LSTM_AE_PRECISION")
    assert script_settings(lstm_ae_mnist).precision == "auto"
    assert script_settings(lstm_ae_snp500).precision == "fp32"
    monkeypatch.setenv("LSTM_AE_PRECISION", "half")
    refused(capsys, lambda: lstm_ae_mnist.main(["--quick"]), "$LSTM_AE_PRECISION='half'",
            "auto, fp32, bf16", "unset it")


def test_eval_only_runs_one_process_without_a_probe(fake_rates, tmp_path, capsys):
    calls = fake_rates({})
    lstm_ae_toy.main(toy_argv(tmp_path))                                # --procs 1 by the environment
    lstm_ae_toy.main(toy_argv(tmp_path, "--procs", "auto", "--eval-only"))
    assert calls == []
    out = capsys.readouterr().out
    assert "layout: cpu, 1 process x 1 thread, fp32 (given; processes: default; " \
           "precision: default)" in out                                   # LSTM_AE_PROCS=1
    assert "(rule; processes: rule; precision: default)" in out           # --eval-only


class Ctx:
    def __init__(self, world):
        self.device, self.precision = torch.device("cpu"), "fp32"
        self.layout = distributed.Layout(world, 0, 0, world)


def test_the_record_says_why_under_torchrun(monkeypatch, fake_rates):
    calls = fake_rates({})
    for name, value in dict(TORCHELASTIC_RUN_ID="x", RANK="0", LOCAL_RANK="0", WORLD_SIZE="2",
                            LOCAL_WORLD_SIZE="2").items():
        monkeypatch.setenv(name, value)
    args = script_settings(lstm_ae_mnist, ["--precision", "auto"])
    run_layout.decide(args, lstm_ae_mnist.probe_shape, False, log=None)
    record = run_layout.layout_record(args, Ctx(2))
    assert record["launcher"] == "torchrun" and record["processes"] == 2
    assert (record["processes_chosen_by"], record["precision_chosen_by"]) == ("torchrun", "rule")
    assert record["reason"] == "rule" and "probe_samples_per_s" not in record and calls == []
    assert run_layout.layout_line(record).startswith("layout: cpu, 2 processes x ")


@pytest.mark.parametrize("module, argv", [(lstm_ae_toy, []), (lstm_ae_snp500, []),
                                          (lstm_ae_mnist, ["--input", "row"]),
                                          (lstm_ae_mnist, ["--input", "pixel"])])
def test_every_script_uses_and_records_the_measured_choice(fake_rates, module, argv):
    calls = fake_rates({"1x2 fp32": 100.0, "2x1 fp32": 250.0, "1x2 bf16": 50.0, "2x1 bf16": 60.0})
    args = decided(argv + ["--procs", "auto", "--precision", "auto"], module)
    assert (args.procs, args.threads, args.precision) == ("2", 1, "fp32")
    assert calls and all("bf16" not in label for label in calls) == (module is not lstm_ae_mnist)
    record = run_layout.layout_record(args, Ctx(2))
    assert record["reason"] == record["processes_chosen_by"] == record["precision_chosen_by"] \
        == "measured"
    assert record["probe_choice"] == "2x1 fp32" and record["probe_samples_per_s"]["2x1 fp32"] == 250
    line = run_layout.layout_line(record)
    assert line.startswith("layout: cpu, 2 processes x 1 thread, fp32 (measured: 250 samples/s; ")


# ----------------------------------------------------------------------------
# Each script's probe shape: its real default model and batch
# ----------------------------------------------------------------------------

def test_each_script_probes_its_default_model_and_batch():
    toy = lstm_ae_toy.probe_shape(script_settings(lstm_ae_toy))
    assert (toy.model["hidden_size"], toy.batch_size, toy.steps) == (32, 32, 50)
    assert toy.model["reverse_output"] and toy.model["init"] == "orthogonal"
    row = lstm_ae_mnist.probe_shape(script_settings(lstm_ae_mnist))
    assert (row.model["hidden_size"], row.batch_size, row.steps, row.model["input_size"]) == \
        (128, 32, 28, 28)
    assert row.model["n_classes"] == 10 and row.ce_weight == 0.1
    assert row.model["bidirectional_encoder"] is True
    pixel = lstm_ae_mnist.probe_shape(script_settings(lstm_ae_mnist, ["--input", "pixel"]))
    assert (pixel.model["hidden_size"], pixel.batch_size, pixel.steps) == (64, 32, 784)
    assert pixel.model["chrono_steps"] == 784 and pixel.model["position_periods"]
    assert pixel.val_fraction == pytest.approx(5000 / 55000)
    snp = lstm_ae_snp500.probe_shape(script_settings(lstm_ae_snp500))
    assert (snp.model["hidden_size"], snp.batch_size, snp.steps) == (32, 64, 50)
    assert (lstm_ae_toy.BF16_CHECKED, lstm_ae_snp500.BF16_CHECKED) == (False, False)
    assert lstm_ae_mnist.BF16_CHECKED == {"row": True, "pixel": True}
    for shape in (toy, row, pixel, snp):            # a model the probe can build
        AutoencoderConfig(**shape.model)
