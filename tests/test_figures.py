"""The figures' looks a reader relies on: whole-number epochs, points visible after
one epoch, plain numbers on log axes, and no label outside the drawing."""

import numpy as np
import pytest

from lstm_ae.reporting import figures


@pytest.fixture
def drawn(monkeypatch):
    """Keep each figure drawn (instead of saving and closing it) to read its axes."""
    kept = []

    def keep(fig, path):
        fig.canvas.draw()
        kept.append(fig)
        return path
    monkeypatch.setattr(figures, "save_figure", keep)
    yield kept
    for fig in kept:
        figures.plt.close(fig)


def labels(axis, minor=False):
    return [t.get_text() for t in axis.get_ticklabels(minor=minor) if t.get_text()]


def test_one_grid_epoch_shows_one_point_per_curve_at_epoch_one(drawn, tmp_path):
    figures.plot_curves({"hs=32": [0.05], "hs=64": [0.08]}, tmp_path / "g.png", "grid")
    ax = drawn[0].axes[0]
    assert list(ax.get_xticks()) == [1]
    assert all(line.get_marker() == "o" for line in ax.get_lines())
    assert labels(ax.xaxis) == ["1"]


def test_epoch_ticks_are_whole_numbers(drawn, tmp_path):
    figures.plot_curves({"a": list(np.linspace(0.1, 0.01, 7))}, tmp_path / "g.png", "grid")
    history = [dict(epoch=e, train_loss=1 / e, val_accuracy=0.9) for e in range(1, 5)]
    figures.plot_history(history, [("loss", ["train_loss"]), ("accuracy", ["val_accuracy"])],
                         tmp_path / "h.png", "history")
    for ax in (drawn[0].axes[0], *drawn[1].axes):
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)


def test_log_axes_are_labelled_in_plain_numbers(drawn, tmp_path):
    figures.plot_curves({"a": [0.05, 0.01, 0.002]}, tmp_path / "g.png", "grid")
    figures.plot_error_by_horizon({"m": np.linspace(0.001, 0.01, 5)}, tmp_path / "e.png", "h")
    figures.plot_rate_distortion([4, 8, 16], {"PCA": [0.05, 0.02, 0.004]}, tmp_path / "r.png",
                                 "rd")
    for fig in drawn:
        text = labels(fig.axes[0].yaxis) + labels(fig.axes[0].yaxis, minor=True)
        assert text, "a log axis without labels"
        assert all("$" not in t and "10^" not in t and "e-" not in t for t in text), text
        float(text[0])  # a plain number
    assert "0.01" in labels(drawn[0].axes[0].yaxis)


@pytest.mark.parametrize("values", [[0.0583, 0.0599], [0.06, 0.09], [0.2, 0.21]])
def test_values_within_a_decade_get_labelled_ticks(drawn, tmp_path, values):
    figures.plot_curves({"a": values[:1], "b": values[1:]}, tmp_path / "g.png", "grid")
    figures.plot_history([dict(epoch=e, loss=v) for e, v in enumerate(values, 1)],
                         [("loss", ["loss"])], tmp_path / "h.png", "history")
    for fig in drawn:
        ax = fig.axes[0]
        low, high = ax.get_ylim()
        shown = [float(t.get_text()) for t in ax.yaxis.get_ticklabels() if t.get_text()
                 and low <= t.get_position()[1] <= high]
        assert len(shown) >= 2, shown   # a reader can read the values off the axis
        assert all("e" not in t.get_text() for t in ax.yaxis.get_ticklabels())


def test_multistep_start_is_named_in_the_legend_not_cut_at_the_top(drawn, tmp_path):
    dates = np.arange("2017-01-01", "2017-03-01", dtype="datetime64[D]")
    truth = np.linspace(1.0, 2.0, len(dates))
    start = 40
    figures.plot_forecast(dates, truth, truth[1:], truth[start:], truth[start:] * 0 + 1.5, start,
                          tmp_path / "f.png", "forecast")
    ax = drawn[0].axes[0]
    assert "multi-step start" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert not ax.texts  # no free-floating label to be cut off at the axes' edge
