"""Diebold-Mariano test of equal forecast accuracy, in the small-sample form of
Harvey, Leybourne and Newbold (1997), and the beats/ties/loses verdict drawn from it.

Diebold, F. X. and Mariano, R. S. (1995), "Comparing predictive accuracy", JBES 13(3).
Harvey, D., Leybourne, S. and Newbold, P. (1997), "Testing the equality of prediction
mean squared errors", IJF 13(2): the statistic times sqrt((T + 1 - 2h + h(h-1)/T) / T),
compared with Student's t with T - 1 degrees of freedom.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def diebold_mariano(loss_model: np.ndarray, loss_baseline: np.ndarray, horizon: int = 1) -> dict:
    """HLN-corrected DM test on the loss differential d_t = loss_model - loss_baseline (T,).

    The long-run variance of d uses its autocovariances up to lag horizon-1
    (rectangular window; lag 0 alone if that sum is not positive). Returns
    {statistic, p_value (two-sided), mean_difference, n, horizon}; statistic < 0
    means the model's loss is lower.
    """
    d = np.asarray(loss_model, dtype=float) - np.asarray(loss_baseline, dtype=float)
    n = len(d)
    horizon = max(1, min(int(horizon), max(n - 1, 1)))
    mean = float(d.mean()) if n else 0.0
    centred = d - mean
    gamma = [float(np.dot(centred[k:], centred[:n - k]) / n) for k in range(horizon)]
    variance = gamma[0] + 2 * sum(gamma[1:]) if n else 0.0
    if variance <= 0:
        variance = gamma[0] if n else 0.0
    if n < 3 or variance <= 0:
        return {"statistic": 0.0, "p_value": 1.0, "mean_difference": mean, "n": n, "horizon": horizon}
    dm = mean / np.sqrt(variance / n)
    correction = np.sqrt((n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n)
    statistic = float(dm * correction)
    p_value = float(2 * stats.t.sf(abs(statistic), df=n - 1))
    return {"statistic": statistic, "p_value": p_value, "mean_difference": mean, "n": n,
            "horizon": horizon}


def verdict(test: dict, alpha: float = 0.05) -> str:
    """'beats' / 'loses' when the test rejects equal accuracy at level alpha (two-sided),
    else 'ties'."""
    if test["p_value"] >= alpha:
        return "ties"
    return "beats" if test["mean_difference"] < 0 else "loses"


def pool_by_day(days: np.ndarray, loss_model: np.ndarray, loss_baseline: np.ndarray):
    """Cross-sectional means per calendar day: (days, model, baseline) sorted by day,
    each stock weighing the same on a day. Inputs are flat (n,) arrays over all
    (stock, day) pairs."""
    days = np.asarray(days)
    unique, inverse = np.unique(days, return_inverse=True)
    count = np.bincount(inverse)
    return (unique, np.bincount(inverse, loss_model) / count,
            np.bincount(inverse, loss_baseline) / count)


def compare(model: list, baseline: list, truth: list, last_seen: list, days: list,
            horizon: int = 1, alpha: float = 0.05) -> dict:
    """Model against a baseline over many series, each a list of (n_i,) price arrays.

    Losses per (stock, day): squared error relative to the last price seen when the
    forecast was made, ((prediction - truth) / last_seen)^2, so every stock weighs
    alike whatever its price. Pooled over stocks by the cross-sectional mean per
    calendar day (``days``: the global day index of each value); the DM test runs
    on that daily series with ``horizon``. Also the plain MSE in price units.
    """
    flat = lambda arrays: np.concatenate([np.asarray(a, dtype=float) for a in arrays])  # noqa: E731
    m, b, t, s, d = (flat(x) for x in (model, baseline, truth, last_seen, days))
    loss_m, loss_b = ((m - t) / s) ** 2, ((b - t) / s) ** 2
    _, daily_m, daily_b = pool_by_day(d, loss_m, loss_b)
    test = diebold_mariano(daily_m, daily_b, horizon)
    return {"model": {"mse_price": float(np.mean((m - t) ** 2)),
                      "rmse_pct": float(100 * np.sqrt(loss_m.mean()))},
            "baseline": {"mse_price": float(np.mean((b - t) ** 2)),
                         "rmse_pct": float(100 * np.sqrt(loss_b.mean()))},
            "diebold_mariano": test, "verdict": verdict(test, alpha), "n_forecasts": int(len(m))}
