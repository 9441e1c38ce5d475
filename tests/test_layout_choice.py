"""--procs auto / --precision auto: candidates, the probe's choice, its cache, and
the layout line every run prints."""

from __future__ import annotations

import json

import pytest
import torch

from lstm_ae.engine import layout
from lstm_ae.engine.layout import Candidate, ProbeShape, choose_layout, cpu_candidates

CPU = torch.device("cpu")
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


def fake_rates(monkeypatch, rates):
    calls = []

    def probe(candidate, shape):
        calls.append(candidate.label)
        return rates[candidate.label]
    monkeypatch.setattr(layout, "probe", probe)
    monkeypatch.setattr(layout, "bf16_works_on", lambda device: True)
    monkeypatch.setattr(layout.distributed, "cpu_cores", lambda: 2)
    return calls


def test_auto_takes_the_fastest_measured_and_caches_it(monkeypatch, tmp_path):
    monkeypatch.setenv("LSTM_AE_CACHE_DIR", str(tmp_path))
    calls = fake_rates(monkeypatch, {"1x2 fp32": 180.0, "1x2 bf16": 150.0, "2x1 fp32": 220.0,
                                     "2x1 bf16": 333.0})
    choice = choose_layout(SHAPE, CPU, "auto", "auto", None, allow_bf16=True, log=None)
    assert choice.candidate == Candidate(2, 1, "bf16") and choice.reason == "measured"
    assert choice.line() == ("layout: cpu, 2 processes x 1 thread, bf16 (measured: 333 samples/s; "
                             "2x1 fp32 220; 1x2 fp32 180; 1x2 bf16 150)")
    assert len(calls) == 4
    again = choose_layout(SHAPE, CPU, "auto", "auto", None, allow_bf16=True, log=None)
    assert again.candidate == choice.candidate and again.reason == "measured (cached)"
    assert len(calls) == 4                          # paid once
    assert len(json.loads((tmp_path / "layouts.json").read_text())) == 1
    other = ProbeShape(dict(input_size=1, hidden_size=7), steps=12, batch_size=8)
    choose_layout(other, CPU, "auto", "auto", None, allow_bf16=True, log=None)
    assert len(calls) == 8                          # another shape is measured anew


def test_bf16_only_where_the_recipe_allows_it(monkeypatch, tmp_path):
    monkeypatch.setenv("LSTM_AE_CACHE_DIR", str(tmp_path))
    fake_rates(monkeypatch, {"1x2 fp32": 180.0, "2x1 fp32": 170.0})
    choice = choose_layout(SHAPE, CPU, "auto", "auto", None, allow_bf16=False, log=None)
    assert choice.candidate == Candidate(1, 2, "fp32")
    assert choice.record() == {"device": "cpu", "processes": 1, "threads_per_process": 2,
                               "precision": "fp32", "reason": "measured",
                               "probe_samples_per_s": {"1x2 fp32": 180.0, "2x1 fp32": 170.0}}


def test_flags_that_fix_the_layout_skip_the_probe(monkeypatch):
    calls = fake_rates(monkeypatch, {})
    choice = choose_layout(None, CPU, "2", "fp32", None, allow_bf16=True, log=None)
    assert choice.candidate == Candidate(2, 1, "fp32") and calls == []
    assert choice.line() == "layout: cpu, 2 processes x 1 thread, fp32 (given by the flags)"


def test_gpus_take_one_process_each_and_bf16_where_allowed(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(layout, "bf16_works_on", lambda device: True)
    cuda = torch.device("cuda")
    assert choose_layout(None, cuda, "auto", "auto", None, True, log=None).candidate == \
        Candidate(4, 1, "bf16")
    assert choose_layout(None, cuda, "auto", "auto", None, False, log=None).candidate == \
        Candidate(4, 1, "fp32")


def test_a_real_probe_measures_a_rate():
    rate = layout.probe(Candidate(1, 1, "fp32"), SHAPE)
    assert rate > 0
