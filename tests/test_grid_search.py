import csv

import numpy as np
import pytest
import torch

from lstm_ae.engine import grid_search
from lstm_ae.engine.grid_search import (GridPoint, best_row, config_label, expand_grid,
                                        grid_search as search, read_grid_csv)
from lstm_ae.datasets.synthetic import generate_toy_sequences
from lstm_ae.engine.training import TrainConfig, to_device

CPU = torch.device("cpu")


def tiny_splits():
    x, _ = generate_toy_sequences(120, 36, seed=2)
    x = x[:, :, None]
    return {"train": {"x": x[:80]}, "val": {"x": x[80:100]}, "test": {"x": x[100:]}}


def points(lrs=(1e-2, 3e-3), hidden=(4, 6)):
    out = []
    for params in expand_grid({"hidden_size": list(hidden), "lr": list(lrs)}):
        out.append(GridPoint(params, dict(input_size=1, hidden_size=params["hidden_size"]),
                             TrainConfig(epochs=2, batch_size=40, lr=params["lr"])))
    return out


def test_expand_grid_is_the_full_product_in_flag_order():
    grid = expand_grid({"hidden_size": [16, 32, 48], "lr": [1e-3, 1e-2], "clip": [1.0, None]})
    assert len(grid) == 12
    assert grid[0] == {"hidden_size": 16, "lr": 1e-3, "clip": 1.0}
    assert grid[-1] == {"hidden_size": 48, "lr": 1e-2, "clip": None}


def test_labels_look_like_the_report_legends():
    assert config_label({"hidden_size": 32, "lr": 1e-3, "batch_size": 128, "clip": 1.0}) == \
        "hs=32 lr=1e-3 bs=128 clip=1"
    assert config_label({"hidden_size": 8, "lr": 2.5e-3, "batch_size": 16, "clip": None}) == \
        "hs=8 lr=2.5e-3 bs=16 clip=none"


def test_search_writes_one_row_per_point_and_picks_the_lowest_validation_loss(tmp_path):
    splits = tiny_splits()
    csv_path = tmp_path / "grid.csv"
    rows = search(points(), splits, to_device(splits, CPU), CPU, csv_path, quiet=True, log=lambda s: None)
    assert len(rows) == 4
    on_disk = read_grid_csv(csv_path)
    assert [r["label"] for r in on_disk] == [p.label for p in points()]
    for row in on_disk:
        assert len(row["val_curve"]) == 2
        assert row["best_val_loss"] == pytest.approx(min(row["val_curve"]), rel=1e-5)
    with open(csv_path) as handle:
        header = next(csv.reader(handle))
    assert {"hidden_size", "lr", "best_val_loss", "best_epoch", "seconds"} <= set(header)
    assert best_row(rows)["best_val_loss"] == min(r["best_val_loss"] for r in rows)


def test_resumed_search_skips_finished_points(tmp_path, monkeypatch):
    splits = tiny_splits()
    tensors = to_device(splits, CPU)
    csv_path = tmp_path / "grid.csv"
    first = search(points()[:2], splits, tensors, CPU, csv_path, quiet=True, log=lambda s: None)
    trained = []
    real = grid_search._train_point
    monkeypatch.setattr(grid_search, "_train_point",
                        lambda point, *a, **k: trained.append(point.label) or real(point, *a, **k))
    rows = search(points(), splits, tensors, CPU, csv_path, resume=True, quiet=True, log=lambda s: None)
    assert trained == [p.label for p in points()[2:]]
    assert rows[0]["best_val_loss"] == pytest.approx(first[0]["best_val_loss"])
    assert len(read_grid_csv(csv_path)) == 4
    # without --resume everything is trained again and the CSV starts afresh
    trained.clear()
    search(points()[:1], splits, tensors, CPU, csv_path, quiet=True, log=lambda s: None)
    assert trained == [points()[0].label] and len(read_grid_csv(csv_path)) == 1


def test_points_trained_with_other_settings_are_not_skipped(tmp_path):
    splits = tiny_splits()
    tensors = to_device(splits, CPU)
    csv_path = tmp_path / "grid.csv"
    search(points()[:1], splits, tensors, CPU, csv_path, data_tag="a", quiet=True, log=lambda s: None)
    messages = []
    search(points()[:1], splits, tensors, CPU, csv_path, data_tag="b", resume=True, quiet=True,
           log=messages.append)
    assert not any("already in" in m for m in messages)


def test_damaged_csv_rows_are_trained_again(tmp_path):
    csv_path = tmp_path / "grid.csv"
    csv_path.write_text("key,label,best_val_loss,best_epoch,epochs,seconds,samples_per_s,val_curve\n"
                        "abc,x,notanumber,1,1,1,1,0.1\n")
    assert read_grid_csv(csv_path) == []


def test_parallel_workers_give_the_same_rows_as_one_process(tmp_path):
    splits = tiny_splits()
    tensors = to_device(splits, CPU)
    serial = search(points()[:2], splits, tensors, CPU, tmp_path / "a.csv", quiet=True, log=lambda s: None)
    parallel = search(points()[:2], splits, tensors, CPU, tmp_path / "b.csv", workers=2, quiet=True,
                      log=lambda s: None)
    for a, b in zip(serial, parallel):
        assert a["label"] == b["label"]
        np.testing.assert_allclose(a["val_curve"], b["val_curve"], rtol=1e-4)
