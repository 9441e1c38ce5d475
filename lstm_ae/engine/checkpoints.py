"""The one checkpoint format: a plain dict of tensors and numbers, written
atomically after every epoch and read back with ``weights_only=True`` (no
pickled code). ``load_model`` is what a user's own Python calls:

    from lstm_ae.engine.checkpoints import load_model
    model = load_model("runs/mnist_row/final.pt")   # best-validation weights, eval mode
    z, _ = model.encode(x)                          # x: (batch, time, features)
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Optional

import torch

from lstm_ae.errors import UserError, read_error_message
from lstm_ae.files import write_bytes_atomic
from models import AutoencoderConfig, LSTMAutoencoder, resolve_device

CHECKPOINT_FORMAT = "lstm-ae-checkpoint/1"


def atomic_torch_save(obj, path: Path) -> None:
    """torch.save into memory first, so that a full disk is an OSError of the write
    (one line naming the file) rather than a RuntimeError from inside torch."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint written by ``fit``; UserError with one line saying why if it
    cannot be read (missing, a folder, permission denied, damaged or cut short, not
    one of this project's)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as error:
        raise UserError(read_error_message(path, error, "checkpoint",
                                           "train again or pass another --checkpoint")) from None
    except Exception as error:  # torch raises many kinds for a damaged file
        raise UserError(f"checkpoint {path} cannot be read ({type(error).__name__}): it is damaged "
                        "(cut short or copied in text mode) or not a checkpoint of this project; "
                        "train again or pass another --checkpoint") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not a checkpoint of this project ({CHECKPOINT_FORMAT})")
    if "model_config" not in checkpoint and "model_args" in checkpoint:  # written before the rename
        checkpoint["model_config"] = checkpoint.pop("model_args")
    return checkpoint


def model_from_checkpoint(checkpoint: dict, device: torch.device) -> LSTMAutoencoder:
    """The best-validation model stored in a checkpoint, ready for evaluation."""
    model = LSTMAutoencoder(AutoencoderConfig(**checkpoint["model_config"]))
    model.load_state_dict(checkpoint["best_model_state"])
    return model.to(device).eval()


def cpu_state(model: torch.nn.Module) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def load_model(path, device: Optional[str] = "cpu") -> LSTMAutoencoder:
    """The best-validation model of the checkpoint at ``path``, on ``device``
    (a --device value: cpu, cuda, mps or auto), in eval mode."""
    return model_from_checkpoint(load_checkpoint(path), resolve_device(device))
