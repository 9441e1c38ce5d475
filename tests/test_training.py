import datetime
import math
import re

import numpy as np
import pytest
import torch

from lstm_ae.engine import runtime, training
from lstm_ae.errors import UserError
from models import LSTMAutoencoder
from lstm_ae.datasets.synthetic import generate_toy_sequences
from lstm_ae.engine.training import (TrainConfig, evaluate, fit, learning_rate_at, loss_terms,
                                     to_device)
from lstm_ae.engine.checkpoints import load_checkpoint, model_from_checkpoint
from lstm_ae.engine.progress import finish_estimate
from lstm_ae.engine.runtime import resolve_precision

CPU = torch.device("cpu")


def toy_tensors(n=240, length=40):
    x, _ = generate_toy_sequences(n, length, seed=1, window_start=(10, 20))
    x = x[:, :, None]
    return to_device({"train": {"x": x[:160]}, "val": {"x": x[160:200]}, "test": {"x": x[200:]}}, CPU)


def small_model(seed=0, **kwargs):
    torch.manual_seed(seed)
    return LSTMAutoencoder(1, 12, reverse_output=True, init="orthogonal", **kwargs)


def test_short_training_lowers_the_loss():
    data = toy_tensors()
    model = small_model()
    config = TrainConfig(epochs=6, batch_size=16, lr=1e-2, clip=1.0)
    before = evaluate(model, data["val"], config, CPU)["loss"]
    result = fit(model, data, config, CPU, log=None)
    assert len(result.history) == 6
    assert result.best_val_loss < 0.9 * before
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    # the model is left with the best validation weights
    assert evaluate(model, data["val"], config, CPU)["loss"] == pytest.approx(result.best_val_loss, rel=1e-5)


def test_history_rows_hold_the_numbers_for_the_figures():
    data = toy_tensors()
    result = fit(small_model(), data, TrainConfig(epochs=2, batch_size=32), CPU, log=None)
    row = result.history[0]
    for key in ("epoch", "lr", "train_loss", "train_reconstruction", "val_loss",
                "val_reconstruction", "seconds", "samples_per_s"):
        assert key in row and math.isfinite(row[key])


def test_each_epoch_line_but_the_last_says_when_the_training_ends():
    lines = []
    fit(small_model(), toy_tensors(), TrainConfig(epochs=3, batch_size=32), CPU, log=lines.append)
    epoch_lines = [line for line in lines if "samples/s" in line]
    assert len(epoch_lines) == 3
    assert all(re.search(r"done ~\d\d:\d\d \(\d+ s left\)$", line) for line in epoch_lines[:2])
    assert "done ~" not in epoch_lines[-1]


def test_finish_estimate_is_the_mean_epoch_time_times_the_epochs_left():
    now = datetime.datetime(2026, 12, 2, 21, 0, 0)
    assert finish_estimate([50.0, 70.0], 30, now) == "done ~21:30 (30 min left)"
    assert finish_estimate([10.0], 4, now) == "done ~21:00 (40 s left)"
    assert finish_estimate([150.0], 60, now) == "done ~23:30 (2.5 h left)"
    assert finish_estimate([10.0], 0, now) == "" and finish_estimate([], 5, now) == ""


class Interrupt(Exception):
    pass


def noisy(x, generator):
    """An augmentation drawing from the engine's generator (which checkpoints must keep)."""
    return x + 0.05 * torch.randn(x.shape, generator=generator)


def test_resume_ends_exactly_where_an_uninterrupted_run_ends(tmp_path):
    data = toy_tensors()
    config = TrainConfig(epochs=4, batch_size=16, lr=5e-3, clip=1.0, seed=3)
    straight = small_model()
    straight_result = fit(straight, data, config, CPU, log=None, augment=noisy)

    path = tmp_path / "ckpt.pt"
    interrupted = small_model()

    def stop_at_epoch_3(line):
        if "epoch   3/4" in line:
            raise Interrupt
    with pytest.raises(Interrupt):
        fit(interrupted, data, config, CPU, checkpoint_path=path, log=stop_at_epoch_3, augment=noisy)
    assert load_checkpoint(path)["epoch"] == 2

    torch.manual_seed(999)  # resuming must not depend on the global RNG at restart
    resumed = LSTMAutoencoder(**interrupted.model_args)
    resumed_result = fit(resumed, data, config, CPU, checkpoint_path=path, resume=True, log=None,
                         augment=noisy)
    assert [r["val_loss"] for r in resumed_result.history] == [r["val_loss"] for r in straight_result.history]
    for name, tensor in straight.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name
    checkpoint = load_checkpoint(path)
    assert checkpoint["epoch"] == 4 and checkpoint["train_config"]["seed"] == 3
    assert set(checkpoint) >= {"model_config", "model_state", "best_model_state", "optimizer_state",
                               "train_config", "run_config", "history", "best_val_loss"}


def test_resume_with_other_settings_is_refused(tmp_path):
    data = toy_tensors()
    path = tmp_path / "ckpt.pt"
    fit(small_model(), data, TrainConfig(epochs=1, batch_size=32), CPU, checkpoint_path=path, log=None)
    with pytest.raises(UserError, match="other settings"):
        fit(small_model(), data, TrainConfig(epochs=1, batch_size=16), CPU, checkpoint_path=path,
            resume=True, log=None)


def test_checkpoint_rebuilds_the_best_model(tmp_path):
    data = toy_tensors()
    path = tmp_path / "ckpt.pt"
    model = small_model()
    config = TrainConfig(epochs=2, batch_size=32)
    fit(model, data, config, CPU, checkpoint_path=path, log=None)
    rebuilt = model_from_checkpoint(load_checkpoint(path), CPU)
    x = data["test"]["x"]
    assert torch.equal(rebuilt(x).reconstruction, model.eval()(x).reconstruction)


def test_damaged_or_foreign_checkpoints_give_clear_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError, match="cannot be read"):
        load_checkpoint(damaged)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(UserError, match="not a checkpoint of this project"):
        load_checkpoint(foreign)


def test_loss_terms_combine_with_their_weights():
    torch.manual_seed(0)
    model = LSTMAutoencoder(3, 6, n_classes=4, predict_next=True)
    x, y = torch.rand(5, 7, 3), torch.tensor([0, 1, 2, 3, 0])
    config = TrainConfig(ce_weight=0.5, prediction_weight=2.0)
    terms = loss_terms(model, {"x": x, "y": y}, config)
    out = model(x)
    recon = ((out.reconstruction - x) ** 2).mean()
    ce = torch.nn.functional.cross_entropy(out.logits, y)
    pred = ((out.next_step[:, :-1] - x[:, 1:]) ** 2).mean()
    assert torch.allclose(terms["reconstruction"], recon)
    assert torch.allclose(terms["classification"], ce)
    assert torch.allclose(terms["prediction"], pred)
    assert torch.allclose(terms["loss"], recon + 0.5 * ce + 2.0 * pred)
    assert terms["correct"] == (out.logits.argmax(1) == y).sum()


def test_evaluate_reports_accuracy_over_the_whole_split():
    torch.manual_seed(0)
    model = LSTMAutoencoder(2, 4, n_classes=3)
    with torch.no_grad():  # a classifier that always answers class 2
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, 0.0, 5.0]))
    y = torch.tensor([2, 2, 2, 0, 1, 2, 2, 1, 2, 2])
    metrics = evaluate(model, {"x": torch.rand(10, 5, 2), "y": y}, TrainConfig(), CPU, batch_size=3)
    assert metrics["accuracy"] == pytest.approx(0.7)


def test_learning_rate_schedules():
    constant = TrainConfig(lr=0.1, lr_schedule="constant")
    assert learning_rate_at(constant, 0, 100) == learning_rate_at(constant, 99, 100) == 0.1
    cosine = TrainConfig(lr=0.1, lr_schedule="cosine", warmup_fraction=0.1)
    assert learning_rate_at(cosine, 0, 100) == pytest.approx(0.01)   # first warm-up step
    assert learning_rate_at(cosine, 9, 100) == pytest.approx(0.1)    # warm-up done
    assert learning_rate_at(cosine, 100, 100) == pytest.approx(0.001)  # decayed to 1%
    rates = [learning_rate_at(cosine, s, 100) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))
    onecycle = TrainConfig(lr=0.1, lr_schedule="onecycle")  # warm-up over 30% by default
    assert learning_rate_at(onecycle, 29, 100) == pytest.approx(0.1)
    assert learning_rate_at(onecycle, 14, 100) == pytest.approx(0.05)
    assert learning_rate_at(onecycle, 100, 100) == pytest.approx(0.001)


def test_divergence_is_reported_as_one_clear_error():
    data = toy_tensors()
    data["train"]["x"] = data["train"]["x"].clone()
    data["train"]["x"][0, 0, 0] = float("nan")
    with pytest.raises(UserError, match="diverged"):
        fit(small_model(), data, TrainConfig(epochs=1, batch_size=500), CPU, log=None)


def test_precision_choice(monkeypatch):
    assert resolve_precision("fp32", CPU) == "fp32"
    monkeypatch.setattr(runtime, "bf16_works_on", lambda device: False)
    assert resolve_precision("auto", CPU, allow_bf16=True) == "fp32"
    with pytest.raises(UserError, match="bf16 is not supported"):
        resolve_precision("bf16", CPU)
    monkeypatch.setattr(runtime, "bf16_works_on", lambda device: True)
    assert resolve_precision("auto", CPU, allow_bf16=True) == "bf16"
    assert resolve_precision("auto", CPU) == "fp32"                 # bf16 not checked: never
    assert resolve_precision("bf16", CPU) == "bf16"                 # asked for: as asked
    assert resolve_precision("auto", torch.device("mps"), allow_bf16=True) == "fp32"


@pytest.mark.skipif(not runtime.bf16_works_on(CPU), reason="this CPU has no native bf16")
def test_bf16_autocast_training_runs_and_learns():
    data = toy_tensors()
    model = small_model()
    config = TrainConfig(epochs=3, batch_size=16, lr=1e-2, precision="bf16")
    result = fit(model, data, config, CPU, log=None)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_batches_are_slices_of_device_tensors_with_labels():
    x = np.random.default_rng(0).random((6, 4, 2)).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1, 2])
    tensors = to_device({"train": {"x": x, "y": y}}, CPU)
    assert tensors["train"]["x"].dtype == torch.float32 and tensors["train"]["y"].dtype == torch.long
    assert tensors["train"]["x"].device.type == "cpu"
