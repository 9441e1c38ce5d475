"""The seeded splits shared by every experiment.

Splits draw from their own generator, so they never move with --seed: changing
the training seed changes the model, never which examples it is tested on.
"""

from __future__ import annotations

import numpy as np

SPLIT_SEED = 12345


def split_indices(n: int, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
                  seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shuffled train/validation/test index arrays in the given proportions."""
    if abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) < 0:
        raise ValueError(f"split fractions must be non-negative and sum to 1, got {fractions}")
    order = np.random.default_rng(seed).permutation(n)
    n_train = int(round(fractions[0] * n))
    n_val = int(round(fractions[1] * n))
    return order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:]
