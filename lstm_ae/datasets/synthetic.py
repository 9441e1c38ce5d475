"""Synthetic signals of Part 1.

Pure functions: they return arrays and never plot or print.
"""

from __future__ import annotations

import numpy as np

def generate_toy_sequences(n: int = 10_000, length: int = 50, seed: int = 0,
                           window_start: tuple[int, int] = (20, 30), half_width: int = 5,
                           factor: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """The assignment's signals: uniform values in [0, 1] with one scaled-down window.

    For each sequence an integer i is drawn uniformly from 20..30 inclusive and
    the 11 values x_{i-5}..x_{i+5} (1-indexed), that is ``x[i-6:i+5]`` 0-indexed,
    are multiplied by 0.1.

    Returns:
        sequences: (n, length) float32.
        dip_index: (n,) the 1-indexed i of each sequence.
    """
    low, high = window_start
    if n < 1 or length < high + half_width:
        raise ValueError(f"need n >= 1 and length >= {high + half_width}, got n={n}, length={length}")
    rng = np.random.default_rng(seed)
    sequences = rng.uniform(0.0, 1.0, size=(n, length))
    dip_index = rng.integers(low, high + 1, size=n)
    # 1-indexed positions i-5..i+5 are 0-indexed i-6..i+4.
    columns = (dip_index - half_width - 1)[:, None] + np.arange(2 * half_width + 1)
    sequences[np.arange(n)[:, None], columns] *= factor
    return sequences.astype(np.float32), dip_index


def baseline_mse(train: np.ndarray, test: np.ndarray) -> dict[str, float]:
    """MSE on ``test`` (n, time) of two predictors that need no model: the per-step
    mean of the training sequences, and each test sequence's own mean."""
    per_step_mean = train.mean(axis=0, keepdims=True)
    own_mean = test.mean(axis=1, keepdims=True)
    return {"per_step_train_mean": float(np.mean((test - per_step_mean) ** 2)),
            "sequence_own_mean": float(np.mean((test - own_mean) ** 2))}
