import pytest
import torch

import models
from lstm_ae.errors import UserError
from models import LSTMAutoencoder, resolve_device


@pytest.mark.parametrize("time, features", [(50, 1), (28, 28)])
def test_reconstruction_shape_without_heads(time, features):
    model = LSTMAutoencoder(features, 16)
    out = model(torch.rand(5, time, features))
    assert out.reconstruction.shape == (5, time, features)
    assert out.logits is None and out.next_step is None


def test_heads_shapes():
    model = LSTMAutoencoder(28, 16, num_layers=2, dropout=0.1, n_classes=10, predict_next=True)
    out = model(torch.rand(4, 28, 28))
    assert out.reconstruction.shape == (4, 28, 28)
    assert out.logits.shape == (4, 10)
    assert out.next_step.shape == (4, 28, 28)


def test_sigmoid_output_stays_in_unit_interval_and_none_does_not_have_to():
    x = torch.randn(3, 10, 1) * 50
    torch.manual_seed(0)
    sig = LSTMAutoencoder(1, 8, output_activation="sigmoid")
    assert sig(x).reconstruction.min() >= 0 and sig(x).reconstruction.max() <= 1
    lin = LSTMAutoencoder(1, 8, output_activation="none")
    with torch.no_grad():
        lin.output_layer.bias.fill_(5.0)
    assert lin(x).reconstruction.max() > 1


def test_reverse_output_emits_the_same_decoder_steps_last_first():
    torch.manual_seed(0)
    forward = LSTMAutoencoder(1, 8)
    backward = LSTMAutoencoder(1, 8, reverse_output=True)
    backward.load_state_dict(forward.state_dict())
    x = torch.rand(2, 12, 1)
    assert torch.allclose(backward(x).reconstruction, forward(x).reconstruction.flip(1))


def test_classifier_reads_decoder_latent_or_encoder_mean():
    torch.manual_seed(0)
    x = torch.rand(3, 7, 2)
    on_decoder = LSTMAutoencoder(2, 8, n_classes=4, classifier_input="decoder")
    z, _ = on_decoder.encode(x)
    _, states = on_decoder.decode(z, 7)
    assert torch.allclose(on_decoder(x).logits, on_decoder.classifier(states[:, -1]))
    on_latent = LSTMAutoencoder(2, 8, n_classes=4, classifier_input="latent")
    z, _ = on_latent.encode(x)
    assert torch.allclose(on_latent(x).logits, on_latent.classifier(z))
    on_mean = LSTMAutoencoder(2, 8, n_classes=4, classifier_input="encoder-mean")
    _, encoder_states = on_mean.encode(x)
    assert torch.allclose(on_mean(x).logits, on_mean.classifier(encoder_states.mean(dim=1)))


@pytest.mark.parametrize("change", [False, True])
def test_next_step_prediction_is_causal(change):
    """Changing x_{t+1}..x_T leaves every prediction made up to step t unchanged."""
    torch.manual_seed(0)
    model = LSTMAutoencoder(1, 8, predict_next=True, predict_change=change, output_activation="none")
    if change:  # give the change head weights, or it would trivially ignore the states
        torch.nn.init.normal_(model.predictor.weight)
    x = torch.rand(4, 30, 1)
    base = model(x).next_step
    for t in (0, 9, 20):
        altered = x.clone()
        altered[:, t + 1:] = torch.rand_like(altered[:, t + 1:]) * 10
        after = model(altered).next_step
        assert torch.equal(after[:, :t + 1], base[:, :t + 1])
        assert not torch.allclose(after[:, t + 1:], base[:, t + 1:])


def test_change_head_starts_at_persistence():
    model = LSTMAutoencoder(1, 8, predict_next=True, predict_change=True, output_activation="none")
    x = torch.rand(2, 15, 1)
    assert torch.equal(model(x).next_step, x)


def test_forget_bias_and_orthogonal_init():
    model = LSTMAutoencoder(1, 6, init="orthogonal", forget_bias=2.0)
    for lstm in (model.encoder, model.decoder):
        assert torch.all(lstm.bias_ih_l0[6:12] == 2.0) and torch.all(lstm.bias_hh_l0[6:12] == 0)
        assert torch.all(lstm.bias_ih_l0[:6] == 0)
        block = lstm.weight_hh_l0[12:18]
        assert torch.allclose(block @ block.T, torch.eye(6), atol=1e-5)


@pytest.mark.parametrize("kwargs", [dict(hidden_size=0), dict(num_layers=0), dict(dropout=1.0),
                                    dict(output_activation="relu"), dict(n_classes=1),
                                    dict(init="xavier")])
def test_bad_model_arguments(kwargs):
    args = dict(input_size=1, hidden_size=4) | kwargs
    with pytest.raises(ValueError):
        LSTMAutoencoder(**args)


def test_model_args_rebuild_the_same_model():
    model = LSTMAutoencoder(3, 5, n_classes=3, predict_next=True, reverse_output=True)
    clone = LSTMAutoencoder(**model.model_args)
    assert [p.shape for p in clone.parameters()] == [p.shape for p in model.parameters()]


def test_device_switch(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(models, "mps_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(UserError, match="no CUDA GPU.*--device cpu"):
        resolve_device("cuda")
    with pytest.raises(UserError, match="no MPS"):
        resolve_device("mps")
    with pytest.raises(UserError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda") == torch.device("cuda")


def test_chrono_init_spreads_memory_time_scales():
    torch.manual_seed(0)
    model = LSTMAutoencoder(1, 200, chrono_steps=784)
    for lstm in (model.encoder, model.decoder):
        forget = lstm.bias_ih_l0[200:400]
        assert torch.all(forget >= 0) and torch.all(forget <= torch.log(torch.tensor(783.0)))
        assert torch.equal(lstm.bias_ih_l0[:200], -forget)           # input gate mirrors it
        assert torch.all(lstm.bias_hh_l0[:400] == 0)
        time_scales = torch.exp(forget)                               # ~ uniform in [1, 783]
        assert time_scales.min() < 100 and time_scales.max() > 700


def test_standardized_input_feeds_the_encoder_only():
    """input_mean/input_std change what the encoder reads, not the target or the weights."""
    torch.manual_seed(0)
    x = torch.rand(3, 9, 1)
    scaled = LSTMAutoencoder(1, 8, n_classes=10, input_mean=0.13, input_std=0.31)
    plain = LSTMAutoencoder(1, 8, n_classes=10)
    plain.load_state_dict(scaled.state_dict())
    z_scaled, _ = scaled.encode(x)
    z_plain, _ = plain.encode((x - 0.13) / 0.31)
    assert torch.allclose(z_scaled, z_plain)
    assert not torch.allclose(z_scaled, plain.encode(x)[0])
    assert scaled.model_args["input_mean"] == 0.13 and scaled.model_args["input_std"] == 0.31
    with pytest.raises(ValueError, match="input_std"):
        LSTMAutoencoder(1, 8, input_std=0.0)


def test_latent_size_adds_a_linear_bottleneck():
    torch.manual_seed(0)
    plain = LSTMAutoencoder(28, 16, n_classes=10, classifier_input="latent")
    torch.manual_seed(0)
    narrow = LSTMAutoencoder(28, 16, n_classes=10, classifier_input="latent", latent_size=4)
    x = torch.rand(3, 28, 28)
    assert plain.encode(x)[0].shape == (3, 16) and plain.to_latent is None
    z, states = narrow.encode(x)
    assert z.shape == (3, 4) and states.shape == (3, 28, 16)
    out = narrow(x)
    assert out.reconstruction.shape == (3, 28, 28) and out.logits.shape == (3, 10)
    assert narrow.decoder.input_size == 4 and narrow.classifier.in_features == 4
    assert narrow.model_args["latent_size"] == 4 and plain.model_args["latent_size"] is None
    clone = LSTMAutoencoder(models.AutoencoderConfig(**narrow.model_args))
    clone.load_state_dict(narrow.state_dict())
    assert torch.equal(clone(x).reconstruction, out.reconstruction)
    with pytest.raises(ValueError, match="latent_size"):
        LSTMAutoencoder(28, 16, latent_size=0)
