"""Progress of a training run: a tqdm bar within each epoch on a terminal, and
the one line per epoch that ``fit`` logs everywhere else."""

from __future__ import annotations

import datetime
import multiprocessing
import sys
import time
from typing import Callable, Optional

from tqdm import tqdm


class EpochProgress:
    """A tqdm bar within one epoch on stderr: batches done, rate, time left in the
    epoch, the loss, and the time left in the whole training (this epoch's pace
    times the epochs still to come). Drawn only on a terminal and only in the
    main process (grid workers share the terminal); otherwise silent, and the
    one line per epoch that ``fit`` logs is the progress."""

    def __init__(self, label: str, epoch: int, epochs: int, total_batches: int):
        enabled = sys.stderr.isatty() and multiprocessing.parent_process() is None
        self.total, self.epochs_after = total_batches, epochs - epoch
        self.done, self.last_postfix = 0, 0.0
        self.bar = tqdm(total=total_batches, desc=f"{label}epoch {epoch}/{epochs}",
                        unit="batch", leave=False, disable=not enabled, file=sys.stderr,
                        mininterval=0.5, dynamic_ncols=True)

    def update(self, done: int, loss: Callable[[], float]) -> None:
        """``done`` batches finished so far; ``loss()`` (read at most twice a second,
        since it waits for the device) is the latest batch's loss."""
        if self.bar.disable:
            return
        now = time.monotonic()
        if now - self.last_postfix >= 0.5:
            self.last_postfix = now
            per_batch = self.bar.format_dict["elapsed"] / max(done, 1)
            left = per_batch * (self.total - done + self.epochs_after * self.total)
            self.bar.set_postfix_str(f"loss {loss():.5f}, training ~{tqdm.format_interval(left)} "
                                     "left", refresh=False)
        self.bar.update(done - self.done)
        self.done = done

    def close(self) -> None:
        self.bar.close()


def format_epoch(label: str, row: dict, epochs: int, finish: str = "") -> str:
    parts = [f"{label}epoch {row['epoch']:>3}/{epochs}", f"train {row['train_loss']:.5f}",
             f"val {row['val_loss']:.5f}"]
    if "val_accuracy" in row:
        parts.append(f"val acc {100 * row['val_accuracy']:.2f}%")
    parts += [f"{row['seconds']:.1f}s", f"{row['samples_per_s']:,.0f} samples/s"]
    return "  ".join(parts + ([finish] if finish else []))


def finish_estimate(seconds: list[float], epochs_left: int,
                    now: Optional[datetime.datetime] = None) -> str:
    """'done ~21:42 (12 min left)': the expected end of the training, from the mean
    time of the epochs this process trained (``seconds``) times the epochs left;
    empty when none are left or none were timed."""
    if epochs_left <= 0 or not seconds:
        return ""
    left = sum(seconds) / len(seconds) * epochs_left
    end = (now or datetime.datetime.now()) + datetime.timedelta(seconds=left)
    wait = f"{left:.0f} s" if left < 90 else f"{left / 60:.0f} min" if left < 5400 \
        else f"{left / 3600:.1f} h"
    return f"done ~{end:%H:%M} ({wait} left)"


class NoProgress:
    """EpochProgress's interface, drawing nothing (ranks other than 0)."""

    def update(self, done: int, loss: Callable[[], float]) -> None:
        pass

    def close(self) -> None:
        pass
