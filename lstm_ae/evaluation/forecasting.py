"""Applying a trained model to whole price series, and the naive baselines it must beat.

The model is trained on windows of ``window`` days. Every function here feeds
it windows of at most that length, scaled as in training (price_windows.encode),
and maps its outputs back to prices; each prediction of day t+1 is made from
days up to t alone. Series of equal length and evaluation days are batched.

Inputs are lists of price_windows.Series; outputs are lists of price arrays.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from models import LSTMAutoencoder
from lstm_ae.datasets.price_windows import Series, decode, encode, series_params, tile_windows


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
            recon.append(out.reconstruction[..., 0].float().cpu().numpy())
            if out.next_step is not None:
                nxt.append(out.next_step[..., 0].float().cpu().numpy())
    return np.concatenate(recon), (np.concatenate(nxt) if nxt else None)


def _groups(series: list[Series]):
    groups = defaultdict(list)
    for k, s in enumerate(series):
        groups[(len(s), s.first, s.start_multi)].append(k)
    return groups.items()


def _params(kind, members, n):
    """(g * n, 2) per-window series parameters, series-major."""
    p = np.stack([series_params(kind, s) for s in members])
    return np.repeat(p, n, axis=0)


def reconstruct(model: LSTMAutoencoder, series: list[Series], window: int, kind: str,
                device: torch.device) -> list[np.ndarray]:
    """Whole series rebuilt window by window, side by side, in prices (each (days,))."""
    out = [None] * len(series)
    for (days, _, _), index in _groups(series):
        members = [series[k] for k in index]
        values = np.stack([s.values for s in members])
        rebuilt = np.empty_like(values)
        w = min(window, days)
        for start, first_new in tile_windows(days, w):
            raw = values[:, start:start + w]
            params = _params(kind, members, 1)
            z, _ = _outputs(model, encode(kind, raw, params), device)
            rebuilt[:, first_new:start + w] = decode(kind, z, raw, params)[:, first_new - start:]
        for k, row in zip(index, rebuilt):
            out[k] = row
    return out


def one_step(model: LSTMAutoencoder, series: list[Series], window: int, kind: str,
             device: torch.device) -> list[np.ndarray]:
    """Price predictions of days first..days-1 of each series, each from at most
    ``window`` preceding days: the first window's causal outputs, then a sliding window."""
    out = [None] * len(series)
    for (days, first, _), index in _groups(series):
        members = [series[k] for k in index]
        values = np.stack([s.values for s in members])
        g = len(members)
        preds = np.full((g, days), np.nan)
        w0 = min(window, days - 1)
        if first <= w0:
            raw = values[:, :w0]
            params = _params(kind, members, 1)
            _, nxt = _outputs(model, encode(kind, raw, params), device)
            preds[:, 1:w0 + 1] = decode(kind, nxt, raw, params)
        ends = np.arange(max(w0, first - 1, window - 1), days - 1)   # window ending at t -> t+1
        if len(ends):
            raw = np.stack([values[:, t - window + 1:t + 1] for t in ends], axis=1).reshape(-1, window)
            params = _params(kind, members, len(ends))
            _, nxt = _outputs(model, encode(kind, raw, params), device)
            preds[:, ends + 1] = decode(kind, nxt[:, -1:], raw, params).reshape(g, len(ends))
        for k, row in zip(index, preds):
            out[k] = row[first:]
    return out


def multi_step(model: LSTMAutoencoder, series: list[Series], window: int, kind: str,
               device: torch.device) -> list[np.ndarray]:
    """Price forecasts of days start_multi..days-1 from days before start_multi only,
    feeding each prediction back in as the newest value."""
    out = [None] * len(series)
    for (days, _, start), index in _groups(series):
        members = [series[k] for k in index]
        history = np.stack([s.values[:start] for s in members])
        params = _params(kind, members, 1)
        for _ in range(days - start):
            raw = history[:, -window:]
            _, nxt = _outputs(model, encode(kind, raw, params), device)
            history = np.concatenate([history, decode(kind, nxt[:, -1:], raw, params)], axis=1)
        for k, row in zip(index, history):
            out[k] = row[start:]
    return out


def persistence(series: list[Series]) -> list[np.ndarray]:
    """Tomorrow's price equals today's: predictions of days first..days-1."""
    return [s.values[s.first - 1:-1] for s in series]


def flat(series: list[Series]) -> list[np.ndarray]:
    """The last price seen before start_multi held over days start_multi..days-1."""
    return [np.full(len(s) - s.start_multi, s.values[s.start_multi - 1]) for s in series]


def mse(prediction: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean((np.asarray(prediction) - np.asarray(truth)) ** 2))


def mse_by_horizon(predictions: list[np.ndarray], truths: list[np.ndarray]) -> np.ndarray:
    """Mean squared error at each step ahead, over the series that reach it."""
    length = max(len(p) for p in predictions)
    sums, counts = np.zeros(length), np.zeros(length)
    for p, t in zip(predictions, truths):
        sums[:len(p)] += (p - t) ** 2
        counts[:len(p)] += 1
    return sums / np.maximum(counts, 1)
