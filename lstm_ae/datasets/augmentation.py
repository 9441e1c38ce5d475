"""Augmentation of training batches (torch tensors, applied on the fly by the
training loop): random shifts of MNIST digits."""

from __future__ import annotations

import torch


def random_shift(x: torch.Tensor, generator: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Move each digit by up to ``max_shift`` pixels along both axes, filling with black.

    x is a batch of MNIST sequences, (batch, 28, 28) or (batch, 784, 1); the result
    has the same shape. Used to augment training batches.
    """
    batch = x.shape[0]
    images = torch.nn.functional.pad(x.reshape(batch, 28, 28), (max_shift,) * 4)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, batch), generator=generator).to(x.device)
    steps = torch.arange(28, device=x.device)
    rows = (dy[:, None] + steps)[:, :, None]
    cols = (dx[:, None] + steps)[:, None, :]
    shifted = images[torch.arange(batch, device=x.device)[:, None, None], rows, cols]
    return shifted.reshape(x.shape)
