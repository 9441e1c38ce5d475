"""Applying a trained model to whole series, and the naive baselines it must beat.

The model is trained on windows of ``window`` days. Every function here feeds
it windows of that length, so it is always used the way it was trained, and
each prediction of day t+1 is made from days up to t alone.

Arrays are (stocks, days) of scaled prices.
"""

from __future__ import annotations

import numpy as np
import torch

from models import LSTMAutoencoder
from snp500_data import tile_windows


def _outputs(model: LSTMAutoencoder, windows: np.ndarray, device: torch.device,
             batch_size: int = 4096):
    """(n, window) -> (reconstruction, next_step) numpy arrays (n, window)."""
    model.eval()
    recon, nxt = [], []
    with torch.no_grad():
        for start in range(0, len(windows), batch_size):
            x = torch.as_tensor(windows[start:start + batch_size, :, None], dtype=torch.float32,
                                device=device)
            out = model(x)
            recon.append(out.reconstruction[..., 0].cpu().numpy())
            if out.next_step is not None:
                nxt.append(out.next_step[..., 0].cpu().numpy())
    return np.concatenate(recon), (np.concatenate(nxt) if nxt else None)


def reconstruct_series(model: LSTMAutoencoder, series: np.ndarray, window: int,
                       device: torch.device) -> np.ndarray:
    """Whole series rebuilt window by window, side by side (stocks, days)."""
    stocks, days = series.shape
    out = np.empty_like(series)
    for start, first_new in tile_windows(days, window):
        rebuilt, _ = _outputs(model, series[:, start:start + window], device)
        out[:, first_new:start + window] = rebuilt[:, first_new - start:]
    return out


def one_step_predictions(model: LSTMAutoencoder, series: np.ndarray, window: int,
                         device: torch.device) -> np.ndarray:
    """Predictions of days 1..days-1 (stocks, days-1), each from at most ``window``
    preceding days: the first window's causal outputs, then a sliding window."""
    stocks, days = series.shape
    first = min(window, days - 1)
    _, nxt = _outputs(model, series[:, :first], device)
    preds = [nxt]                                   # predicts days 1..first
    ends = np.arange(first, days - 1)               # window ending at day t predicts t+1
    if len(ends):
        windows = np.stack([series[:, t - window + 1:t + 1] for t in ends], axis=1)
        _, nxt = _outputs(model, windows.reshape(-1, window), device)
        preds.append(nxt[:, -1].reshape(stocks, len(ends)))
    return np.concatenate(preds, axis=1)


def multi_step_forecast(model: LSTMAutoencoder, series: np.ndarray, start: int, window: int,
                        device: torch.device) -> np.ndarray:
    """Forecast days start..days-1 from days 0..start-1 only, feeding each prediction
    back in as the newest value (stocks, days - start)."""
    history = series[:, :start].copy()
    steps = series.shape[1] - start
    for _ in range(steps):
        _, nxt = _outputs(model, history[:, -window:], device)
        history = np.concatenate([history, nxt[:, -1:]], axis=1)
    return history[:, start:]


def persistence_forecast(series: np.ndarray) -> np.ndarray:
    """Tomorrow's value equals today's: predictions of days 1..days-1."""
    return series[:, :-1]


def flat_forecast(series: np.ndarray, start: int) -> np.ndarray:
    """The last value seen before ``start`` held flat over days start..days-1."""
    return np.repeat(series[:, start - 1:start], series.shape[1] - start, axis=1)


def mse(prediction: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean((prediction - truth) ** 2))


def mse_by_horizon(prediction: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Mean squared error at each step ahead, averaged over stocks."""
    return np.mean((prediction - truth) ** 2, axis=0)
