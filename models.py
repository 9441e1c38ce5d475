"""The LSTM autoencoder shared by all three experiments, and the device switch.

Shapes follow PyTorch's batch_first convention: sequences are
(batch, time, features), latents are (batch, latent_size), latent_size being
the hidden size unless a bottleneck is asked for.

    x --encoder LSTM--> last hidden state [--Linear--> z] --(fed at every step)-->
      decoder LSTM --Linear--> activation --> reconstruction of x

Two optional heads reuse the same model rather than copying it:

* ``n_classes``: a linear classifier giving logits (batch, n_classes), on the
  decoder's last hidden state (the assignment's choice), on the latent z, or on
  the mean of the encoder's hidden states over all steps.
* ``predict_next``: a causal one-step-ahead predictor. Output step t is a
  guess of x_{t+1} made from the encoder's hidden state after reading
  x_1..x_t only, so it can never see the value it predicts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple, Optional

import torch
from torch import nn

from lstm_ae.choices import CLASSIFIER_INPUTS, DECODER_STATES, DEVICE_CHOICES, INITS
from lstm_ae.errors import UserError

OUTPUT_ACTIVATIONS = ("sigmoid", "none")


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str = "auto") -> torch.device:
    """Turn a --device value into a torch.device, or raise UserError saying why not.

    ``auto`` picks CUDA when present, then Apple's MPS, then the CPU.
    """
    if name not in DEVICE_CHOICES:
        raise UserError(f"unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but this PyTorch sees no CUDA GPU; "
                         "use --device cpu (or auto)")
    if name == "mps" and not mps_available():
        raise UserError("--device mps was asked for but this PyTorch has no MPS backend; "
                         "use --device cpu (or auto)")
    return torch.device(name)


@dataclass
class AutoencoderConfig:
    """Everything that defines an LSTMAutoencoder; checkpoints store it as a dict
    and rebuild the model from it. The fields are documented on LSTMAutoencoder."""
    input_size: int
    hidden_size: int
    num_layers: int = 1
    dropout: float = 0.0
    output_activation: str = "sigmoid"
    n_classes: Optional[int] = None
    classifier_input: str = "decoder"
    predict_next: bool = False
    predict_change: bool = False
    reverse_output: bool = False
    forget_bias: Optional[float] = None
    chrono_steps: Optional[int] = None
    init: str = "default"
    input_mean: float = 0.0
    input_std: float = 1.0
    position_periods: Optional[list] = None
    latent_size: Optional[int] = None
    decoder_state: str = "zero"
    bidirectional_encoder: bool = False

    def __post_init__(self):
        self.input_mean, self.input_std = float(self.input_mean), float(self.input_std)
        if self.position_periods is not None:
            self.position_periods = [float(p) for p in self.position_periods]

    def validate(self) -> None:
        """ValueError naming the first field that cannot work."""
        for name in ("input_size", "hidden_size", "num_layers"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        choices = (("output_activation", OUTPUT_ACTIVATIONS), ("classifier_input", CLASSIFIER_INPUTS),
                   ("init", INITS), ("decoder_state", DECODER_STATES))
        for name, allowed in choices:
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.n_classes is not None and self.n_classes < 2:
            raise ValueError(f"n_classes must be at least 2, got {self.n_classes}")
        periods = self.position_periods
        if periods is not None and (len(periods) == 0 or any(p <= 0 for p in periods)):
            raise ValueError(f"position_periods must be positive numbers, got {periods}")
        if not self.input_std > 0:
            raise ValueError(f"input_std must be positive, got {self.input_std}")
        if self.latent_size is not None and int(self.latent_size) < 1:
            raise ValueError(f"latent_size must be at least 1, got {self.latent_size}")
        if self.bidirectional_encoder and self.predict_next:
            raise ValueError("bidirectional_encoder cannot be combined with predict_next: "
                             "one-step prediction needs a causal encoder")
        if self.chrono_steps is not None and self.chrono_steps < 3:
            raise ValueError(f"chrono_steps must be at least 3, got {self.chrono_steps}")


class AutoencoderOutput(NamedTuple):
    reconstruction: torch.Tensor           # (batch, time, features)
    logits: Optional[torch.Tensor]         # (batch, n_classes) or None
    next_step: Optional[torch.Tensor]      # (batch, time, features): step t predicts x_{t+1}


class LSTMAutoencoder(nn.Module):
    """Encoder LSTM -> latent -> decoder LSTM fed the latent at each step -> Linear.

    Args:
        input_size: features per time step (1 for a scalar series, 28 for an MNIST row).
        hidden_size: units of both LSTMs; also the size of the latent z unless
            ``latent_size`` is given.
        latent_size: a linear bottleneck: z = Linear(hidden_size -> latent_size) of the
            encoder's last hidden state, and the decoder reads z. ``None`` (the
            assignment's architecture): z is the encoder's last hidden state itself.
        bidirectional_encoder: the encoder also reads the sequence backwards; z is then
            a linear map of both directions' last hidden states (2 x hidden_size numbers)
            to ``latent_size`` (or hidden_size) numbers. Not with ``predict_next``.
        num_layers: stacked layers in each LSTM.
        dropout: dropout between stacked layers (ignored for one layer).
        output_activation: ``sigmoid`` for data in [0, 1], ``none`` for values that
            may leave that range.
        n_classes: add a classifier head with this many classes.
        classifier_input: ``decoder`` (the decoder's last hidden state), ``latent`` (z),
            or ``encoder-mean`` (the encoder's hidden states averaged over time). The
            mean gives every step a one-step path to the loss instead of one across
            hundreds of steps; on MNIST pixel by pixel it helped a plainly
            initialised model but not one with chrono init and standardized input.
        predict_next: add the causal one-step-ahead head on the encoder's states.
        predict_change: the next-step head predicts the change from x_t, added to
            x_t, so an untrained head starts at the persistence forecast
            (x_{t+1} = x_t) and learns only what improves on it.
        reverse_output: the decoder emits the sequence last step first and the output
            is flipped back. The most recently read values are then the first to be
            written, the order Srivastava et al. (2015) found far easier to learn.
        forget_bias: initial forget-gate bias of every LSTM; ``None`` keeps
            PyTorch's default (0).
        chrono_steps: "chrono" initialisation (Tallec & Ollivier, 2018) for sequences
            of about this many steps: each unit's forget bias is log(u), u drawn
            uniformly from [1, chrono_steps - 1], and its input bias the negative of
            that, so memory time scales are spread from one step to the whole
            sequence. Long sequences (MNIST pixel by pixel) need it. Overrides
            ``forget_bias``.
        init: ``default`` (PyTorch's) or ``orthogonal`` recurrent weights.
        position_periods: tell the decoder where it is writing: besides z, each decoder
            step reads sin and cos of 2 pi t / p for every period p, t being the
            position of the output step in the sequence (counted in the original
            order, also with ``reverse_output``). For MNIST pixel by pixel,
            periods 7, 14 and 28 give the column and 196, 392 and 784 the row, so
            the decoder need not count 784 steps itself. Not in the assignment
            (Srivastava et al., 2015 feed the decoder z or its own outputs); off
            (None) by default.
        input_mean, input_std: the encoder reads (x - input_mean) / input_std while
            the reconstruction target stays x. One MNIST pixel in [0, 1] (mean 0.13)
            barely moves the gates of a freshly initialised LSTM; standardized, ink
            arrives at about +2.8 and the encoder notices it from the first batch.
        decoder_state: the decoder's initial state: ``zero`` (the assignment's model:
            z reaches the decoder only as its input) or ``latent``: h_0 = tanh(A z) and
            c_0 = B z for every layer, so the decoder starts from what z says as a
            seq2seq decoder starts from its encoder's state (Sutskever et al., 2014);
            z is still fed at every step and the latent keeps its size.
    """

    def __init__(self, *args, **fields):
        """``LSTMAutoencoder(config)`` with an AutoencoderConfig, or the config's
        fields directly: ``LSTMAutoencoder(28, 128, n_classes=10)``."""
        super().__init__()
        if len(args) == 1 and not fields and isinstance(args[0], AutoencoderConfig):
            config = args[0]
        else:
            config = AutoencoderConfig(*args, **fields)
        config.validate()
        self.config = config
        c = config
        self.input_mean, self.input_std = c.input_mean, c.input_std
        self.position_periods = c.position_periods
        self.output_activation = c.output_activation
        self.classifier_input = c.classifier_input
        self.reverse_output = c.reverse_output
        self.predict_change = c.predict_change
        self._build_layers(c)
        if c.init == "orthogonal":
            self._orthogonal_init()
        if c.chrono_steps is not None:
            self._chrono_init(int(c.chrono_steps))
        elif c.forget_bias is not None:
            self._set_forget_bias(float(c.forget_bias))

    @property
    def model_args(self) -> dict:
        """The config as a plain dict (what checkpoints and results.json store)."""
        return asdict(self.config)

    def _build_layers(self, c: AutoencoderConfig) -> None:
        self.latent_size = c.hidden_size if c.latent_size is None else int(c.latent_size)
        between_layers = c.dropout if c.num_layers > 1 else 0.0
        self.encoder = nn.LSTM(c.input_size, c.hidden_size, c.num_layers, batch_first=True,
                               dropout=between_layers, bidirectional=c.bidirectional_encoder)
        self.directions = 2 if c.bidirectional_encoder else 1
        n_position = 2 * len(c.position_periods) if c.position_periods else 0
        self.decoder = nn.LSTM(self.latent_size + n_position, c.hidden_size, c.num_layers,
                               batch_first=True, dropout=between_layers)
        self.output_layer = nn.Linear(c.hidden_size, c.input_size)
        reads = {"latent": self.latent_size,
                 "encoder-mean": self.directions * c.hidden_size}.get(c.classifier_input,
                                                                     c.hidden_size)
        self.classifier = nn.Linear(reads, c.n_classes) if c.n_classes else None
        self.predictor = nn.Linear(c.hidden_size, c.input_size) if c.predict_next else None
        if self.predictor is not None and c.predict_change:
            # Start exactly at the persistence forecast; training moves away from it.
            nn.init.zeros_(self.predictor.weight)
            nn.init.zeros_(self.predictor.bias)
        # Made last, so a model without a bottleneck draws the same initial weights as before.
        bottleneck = c.latent_size is not None or c.bidirectional_encoder
        self.to_latent = (nn.Linear(self.directions * c.hidden_size, self.latent_size)
                          if bottleneck else None)
        self.to_decoder_state = (nn.Linear(self.latent_size, 2 * c.num_layers * c.hidden_size)
                                 if c.decoder_state == "latent" else None)

    def _orthogonal_init(self) -> None:
        # Keras's LSTM defaults: Glorot-uniform input weights, an orthogonal
        # recurrent matrix per gate, zero biases. An orthogonal recurrence keeps
        # the norm of what the state carries, so values read early are not
        # washed out before the end of the sequence.
        with torch.no_grad():
            for lstm in (self.encoder, self.decoder):
                hidden = lstm.hidden_size
                for name, param in lstm.named_parameters():
                    if name.startswith("weight_ih"):
                        for gate in range(4):
                            nn.init.xavier_uniform_(param[gate * hidden:(gate + 1) * hidden])
                    elif name.startswith("weight_hh"):
                        for gate in range(4):
                            nn.init.orthogonal_(param[gate * hidden:(gate + 1) * hidden])
                    else:
                        param.zero_()

    def _set_forget_bias(self, value: float) -> None:
        # PyTorch orders gates (input, forget, cell, output) and adds bias_ih and
        # bias_hh, so the forget slice of bias_ih carries the value, bias_hh zero.
        with torch.no_grad():
            for lstm in (self.encoder, self.decoder):
                hidden = lstm.hidden_size
                for name, param in lstm.named_parameters():
                    if name.startswith("bias_ih"):
                        param[hidden:2 * hidden].fill_(value)
                    elif name.startswith("bias_hh"):
                        param[hidden:2 * hidden].zero_()

    def _chrono_init(self, steps: int) -> None:
        with torch.no_grad():
            for lstm in (self.encoder, self.decoder):
                hidden = lstm.hidden_size
                for name, param in lstm.named_parameters():
                    if name.startswith("bias_ih"):
                        forget = torch.log(torch.empty(hidden).uniform_(1.0, steps - 1.0))
                        param[hidden:2 * hidden] = forget
                        param[:hidden] = -forget
                    elif name.startswith("bias_hh"):
                        param[:2 * hidden].zero_()

    def _activate(self, values: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(values) if self.output_activation == "sigmoid" else values

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (batch, time, features) -> (z (batch, latent), per-step states (batch, time,
        hidden x directions))."""
        if self.input_mean != 0.0 or self.input_std != 1.0:
            x = (x - self.input_mean) / self.input_std
        states, (h_n, _) = self.encoder(x)
        last = torch.cat(list(h_n[-self.directions:]), dim=1)  # the last layer, each direction
        z = last if self.to_latent is None else self.to_latent(last)
        return z, states

    def decode(self, z: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """z (batch, latent) -> (reconstruction (batch, steps, features), decoder states)."""
        repeated = z.unsqueeze(1).expand(-1, steps, -1)
        if self.position_periods:
            repeated = torch.cat([repeated, self.position_signal(steps, z).expand(
                len(z), -1, -1)], dim=2)
        states, _ = self.decoder(repeated, self.initial_decoder_state(z))
        reconstruction = self._activate(self.output_layer(states))
        if self.reverse_output:
            reconstruction = reconstruction.flip(1)
        return reconstruction, states

    def initial_decoder_state(self, z: torch.Tensor):
        """None (zeros) or the decoder's (h_0, c_0), each (layers, batch, hidden), from z."""
        if self.to_decoder_state is None:
            return None
        layers, hidden = self.decoder.num_layers, self.decoder.hidden_size
        h_0, c_0 = self.to_decoder_state(z).view(len(z), 2, layers, hidden).permute(1, 2, 0, 3)
        return torch.tanh(h_0).contiguous(), c_0.contiguous()

    def position_signal(self, steps: int, like: torch.Tensor) -> torch.Tensor:
        """(1, steps, 2 * len(position_periods)): sin and cos of 2 pi t / p, with t the
        output position each decoder step writes (steps - 1 down to 0 when reversed)."""
        t = torch.arange(steps, dtype=torch.float32, device=like.device)
        if self.reverse_output:
            t = t.flip(0)
        periods = torch.tensor(self.position_periods, dtype=torch.float32, device=like.device)
        angle = 2 * torch.pi * t[:, None] / periods
        return torch.cat([torch.sin(angle), torch.cos(angle)], dim=1).to(like.dtype).unsqueeze(0)

    def forward(self, x: torch.Tensor) -> AutoencoderOutput:
        if x.dim() != 3:
            raise ValueError(f"expected input of shape (batch, time, features), got {tuple(x.shape)}")
        z, encoder_states = self.encode(x)
        reconstruction, decoder_states = self.decode(z, x.shape[1])
        logits = None
        if self.classifier is not None:
            if self.classifier_input == "decoder":
                features = decoder_states[:, -1]
            elif self.classifier_input == "encoder-mean":
                features = encoder_states.mean(dim=1)
            else:
                features = z
            logits = self.classifier(features)
        next_step = None
        if self.predictor is not None:
            if self.predict_change:
                next_step = x + self.predictor(encoder_states)
            else:
                next_step = self._activate(self.predictor(encoder_states))
        return AutoencoderOutput(reconstruction, logits, next_step)

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
