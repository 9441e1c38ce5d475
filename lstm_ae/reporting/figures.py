"""Every figure of the report, each drawn by a function of arrays and an output path.

No function here sees a model: scripts compute arrays, these functions draw
them. Figures are rendered with the Agg backend (no screen needed), written to
a temporary file and renamed into place, and closed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

from lstm_ae.files import atomic_path  # noqa: E402


def save_figure(fig, path: Path) -> Path:
    """Write fig to path atomically (temp file + rename) and close it."""
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return Path(path)


def integer_x_axis(ax, count: int) -> None:
    """Epochs and steps ahead are whole numbers: x ticks only at integers; a single
    one sits mid-axis."""
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    if count <= 1:
        ax.set_xlim(0.5, 1.5)
        ax.set_xticks([1])


def plain_log_y(ax) -> None:
    """Call after plotting. Values spanning a decade or more get a log y axis labelled
    in plain numbers (0.004, not 4 x 10^-3; minor ticks at 2 and 5 labelled too below
    two decades); values within less than a decade keep a linear axis, which labels
    them better than a log one with no decade inside."""
    values = np.concatenate([np.asarray(line.get_ydata(), dtype=float).ravel()
                             for line in ax.get_lines()] or [np.zeros(0)])
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0 or values.max() < 10 * values.min():
        ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter(useOffset=False))
        return
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))

    def minor(value, _):
        low, high = ax.get_ylim()
        mantissa = round(value / 10 ** np.floor(np.log10(value)), 6)
        return f"{value:g}" if high / low < 100 and mantissa in (2, 5) else ""
    ax.yaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(minor))


def plot_series(series: Sequence[np.ndarray], labels: Sequence[str], path: Path, title: str,
                xlabel: str = "time step", ylabel: str = "value",
                x: Optional[np.ndarray] = None) -> Path:
    """Several 1-D series on one axis (report Figs 1.1 and 3.1)."""
    fig, ax = plt.subplots(figsize=(9, 4))
    for values, label in zip(series, labels):
        ax.plot(np.arange(len(values)) if x is None else x, values, label=label, lw=1.2)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.autofmt_xdate() if x is not None and np.issubdtype(np.asarray(x).dtype, np.datetime64) else None
    return save_figure(fig, path)


def plot_reconstructions(originals: Sequence[np.ndarray], reconstructions: Sequence[np.ndarray],
                         names: Sequence[str], path: Path, title: str,
                         x: Optional[np.ndarray] = None, ylabel: str = "value",
                         mse_unit: str = "") -> Path:
    """Original vs reconstruction, one panel per series (report Figs 1.2-1.3, 3.2-3.4)."""
    fig, axes = plt.subplots(len(originals), 1, figsize=(9, 2.8 * len(originals)), squeeze=False)
    for ax, original, rebuilt, name in zip(axes[:, 0], originals, reconstructions, names):
        steps = np.arange(len(original)) if x is None else x
        ax.plot(steps, original, label="original", lw=1.4)
        ax.plot(steps, rebuilt, label="reconstruction", lw=1.2, ls="--")
        mse = float(np.mean((np.asarray(original) - np.asarray(rebuilt)) ** 2))
        ax.set(title=f"{name} (MSE {mse:.4g}{mse_unit})", ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
    axes[-1, 0].set_xlabel("time step" if x is None else "date")
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_curves(curves: dict[str, Sequence[float]], path: Path, title: str,
                ylabel: str = "validation loss", log_y: bool = True) -> Path:
    """One curve per entry against epochs, e.g. every grid point's validation loss
    (report Fig 2.1 style legends: 'hs=32 lr=1e-3 bs=128 clip=1')."""
    fig, ax = plt.subplots(figsize=(10, 5))
    # tab20 holds a dark and a light shade of 10 hues: up to 10 curves take the dark
    # shades only, more take all 20, and curves past the 20th repeat them dashed.
    colours = plt.cm.tab20(np.linspace(0, 1, 20))
    stride = 2 if len(curves) <= 10 else 1
    for k, (label, values) in enumerate(curves.items()):
        ax.plot(np.arange(1, len(values) + 1), values, label=label, lw=1.3,
                color=colours[(stride * k) % 20], ls="-" if k < 20 else "--",
                marker="o" if len(values) < 30 else None)   # one grid epoch: one point each
    ax.set(title=title, xlabel="epoch", ylabel=ylabel)
    integer_x_axis(ax, max((len(values) for values in curves.values()), default=0))
    if log_y:
        plain_log_y(ax)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save_figure(fig, path)


def plot_history(history: Sequence[dict], panels: Sequence[tuple[str, Sequence[str]]],
                 path: Path, title: str) -> Path:
    """Training curves from a fit history, one panel per (ylabel, keys) pair
    (report Figs 2.3, 2.4 and 3.5)."""
    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (ylabel, keys) in zip(axes[0], panels):
        for key in keys:
            values = [row[key] for row in history if key in row]
            if values:
                scale = 100.0 if "accuracy" in key else 1.0
                ax.plot(epochs[:len(values)], np.asarray(values) * scale,
                        label=key.replace("_", " "), marker="o" if len(values) < 30 else None)
        ax.set(xlabel="epoch", ylabel=ylabel)
        integer_x_axis(ax, len(epochs))
        if not any("accuracy" in key for key in keys):
            plain_log_y(ax)  # losses span decades; accuracy is read on a linear axis
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_digits(originals: np.ndarray, reconstructions: np.ndarray, path: Path, title: str) -> Path:
    """Digits (n, 28, 28) in the top row and their reconstructions below (report Fig 2.2)."""
    n = len(originals)
    fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 3.6), squeeze=False)
    for column in range(n):
        for row, images in enumerate((originals, reconstructions)):
            ax = axes[row, column]
            ax.imshow(images[column], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("original")
    axes[1, 0].set_ylabel("reconstructed")
    fig.suptitle(title)
    return save_figure(fig, path)


def latent_pca(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(points (n, 2), fraction of the variance each holds (2,)): z (n, latent)
    projected on its first two principal components (numpy SVD of the centred z)."""
    centred = np.asarray(z, dtype=np.float64) - np.mean(z, axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    total = float(np.sum(s ** 2)) or 1.0
    points = np.zeros((len(centred), 2))
    shares = np.zeros(2)
    k = min(2, vt.shape[0])
    points[:, :k] = centred @ vt[:k].T
    shares[:k] = s[:k] ** 2 / total
    return points, shares


def plot_latents(z: np.ndarray, labels: np.ndarray, path: Path, title: str) -> Path:
    """Latents z (n, latent) on their first two principal components, coloured by
    label, with a legend (report Fig 2.5)."""
    points, shares = latent_pca(z)
    labels = np.asarray(labels)
    fig, ax = plt.subplots(figsize=(7, 6))
    colours = plt.cm.tab10(np.linspace(0, 1, 10))
    for k, label in enumerate(np.unique(labels)):
        chosen = labels == label
        ax.scatter(points[chosen, 0], points[chosen, 1], s=6, alpha=0.7,
                   color=colours[k % 10], label=str(label))
    ax.set(title=title, xlabel=f"PC 1 ({100 * shares[0]:.0f}% of variance)",
           ylabel=f"PC 2 ({100 * shares[1]:.0f}% of variance)")
    ax.legend(title="digit", markerscale=3, fontsize="small", loc="upper left",
              bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_rate_distortion(sizes: Sequence[int], curves: dict[str, Sequence[float]], path: Path,
                         title: str, ylabel: str = "test reconstruction MSE") -> Path:
    """Error against latent size, one curve with markers per entry, on a log2 x axis
    labelled with the sizes themselves (report Fig 2.6)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (label, values), marker in zip(curves.items(), "osD^v"):
        ax.plot(sizes, values, marker=marker, label=label, lw=1.4)
    ax.set_xscale("log", base=2)
    plain_log_y(ax)
    ax.set_xticks(list(sizes))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set(title=title, xlabel="latent size K", ylabel=ylabel)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return save_figure(fig, path)


def plot_forecast(dates: np.ndarray, truth: np.ndarray, one_step: np.ndarray,
                  multi_step: np.ndarray, flat: np.ndarray, start: int, path: Path,
                  title: str, ylabel: str = "price") -> Path:
    """Truth, one-step predictions and the fed-back multi-step path from ``start``,
    with the flat last-value baseline (report Fig 3.6)."""
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.plot(dates, truth, label="truth", color="black", lw=1.3)
    ax.plot(dates[1:], one_step, label="one-step prediction", lw=1.0, alpha=0.8)
    ax.plot(dates[start:], multi_step, label="multi-step prediction (fed back)", lw=1.6)
    ax.plot(dates[start:], flat, label="baseline: last seen value", lw=1.0, ls=":")
    ax.axvline(dates[start], color="gray", ls="--", lw=1, label="multi-step start")
    ax.set(title=title, xlabel="date", ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.autofmt_xdate()
    return save_figure(fig, path)


def plot_error_by_horizon(errors: dict[str, np.ndarray], path: Path, title: str,
                          ylabel: str = "MSE (scaled)") -> Path:
    """Mean error against steps ahead, one line per method."""
    fig, ax = plt.subplots(figsize=(8, 4))
    for label, values in errors.items():
        ax.plot(np.arange(1, len(values) + 1), values, label=label)
    ax.set(title=title, xlabel="steps ahead", ylabel=ylabel)
    integer_x_axis(ax, max((len(values) for values in errors.values()), default=0))
    plain_log_y(ax)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return save_figure(fig, path)
