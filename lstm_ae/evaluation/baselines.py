"""Reference numbers that every MNIST result is printed beside.

A reconstruction MSE or an accuracy means little alone; these say what no
model, a linear model of the same size, and guessing would score on the same
split:

* ``mean_image_mse``: output the mean training image for every test image.
* ``pca_mse``: principal component analysis with k components, fitted on the
  training images (centred on their mean), each test image replaced by its
  projection onto those k directions. PCA is the best *linear* autoencoder with
  a k-number code (Eckart-Young; Baldi & Hornik, 1989), so an LSTM autoencoder
  whose latent has k numbers should beat it. The projection is not clipped to
  [0, 1].
* ``chance_accuracy``: the share of the most frequent class among the test
  labels, the accuracy of always guessing that class (11.35% on the official
  MNIST test set, where class 1 has 1,135 of 10,000 images). It is never below
  1 / n_classes, the accuracy of guessing uniformly at random.

Images are flattened: (n, time, features) or (n, 28, 28) both become
(n, pixels); pixels are expected in [0, 1], and MSEs are means per pixel.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch


def _flat(images: np.ndarray) -> torch.Tensor:
    """(n, ...) array -> (n, pixels) float64 tensor."""
    array = np.asarray(images)
    if array.ndim < 2 or len(array) == 0:
        raise ValueError(f"expected a non-empty batch of images, got shape {array.shape}")
    return torch.from_numpy(array.reshape(len(array), -1).astype(np.float64))


def mean_image_mse(train: np.ndarray, test: np.ndarray) -> float:
    """MSE per pixel of predicting the mean training image for every test image."""
    train_x, test_x = _flat(train), _flat(test)
    return float(((test_x - train_x.mean(0)) ** 2).mean())


def pca_components(train: np.ndarray, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean (pixels,), components (min(k, rank), pixels)) of the training images.

    The components are the top right singular vectors of the centred training
    matrix X, found as the singular vectors of X^T X (pixels x pixels, float64;
    torch.linalg.svd), which is several times faster than the SVD of X itself
    for 55,000 images. k is capped at min(n_train, pixels).
    """
    if k < 0:
        raise ValueError(f"k must be at least 0, got {k}")
    train_x = _flat(train)
    mean = train_x.mean(0)
    k = min(k, *train_x.shape)
    if k == 0:
        return mean, train_x.new_zeros((0, train_x.shape[1]))
    centred = train_x - mean
    _, _, vh = torch.linalg.svd(centred.T @ centred)
    return mean, vh[:k]


def pca_mse(train: np.ndarray, test: np.ndarray, k: int) -> float:
    """MSE per pixel of reconstructing the test images from k principal components
    fitted on the training images (k = 0 gives the mean-image MSE)."""
    return pca_mse_curve(train, test, [k])[0]


def pca_mse_curve(train: np.ndarray, test: np.ndarray, sizes) -> list[float]:
    """pca_mse(train, test, k) for every k of ``sizes``, from one SVD (that of the
    largest k)."""
    sizes = [int(k) for k in sizes]
    mean, components = pca_components(train, max(sizes, default=0))
    centred = _flat(test) - mean
    curve = []
    for k in sizes:
        top = components[:k]
        rebuilt = centred @ top.T @ top
        curve.append(float(((centred - rebuilt) ** 2).mean()))
    return curve


def chance_accuracy(test_labels: np.ndarray, n_classes: Optional[int] = None) -> float:
    """Accuracy of always guessing the most frequent test class (at least 1 / n_classes)."""
    labels = np.asarray(test_labels).ravel()
    if len(labels) == 0:
        raise ValueError("no test labels")
    majority = np.bincount(labels).max() / len(labels)
    return float(max(majority, 1.0 / n_classes if n_classes else 0.0))


def mnist_baselines(train_x: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                    latent_size: int, n_classes: int = 10) -> dict:
    """All three baselines for one run: PCA with as many components as the latent.

    train_x, test_x: (n, time, features) pixels in [0, 1]; test_y: (n,) labels.
    """
    return {"mean_image_mse": mean_image_mse(train_x, test_x),
            "pca_mse": pca_mse(train_x, test_x, latent_size),
            "pca_components": int(min(latent_size, len(train_x), int(np.prod(train_x.shape[1:])))),
            "chance_accuracy": chance_accuracy(test_y, n_classes),
            "n_train": int(len(train_x)), "n_test": int(len(test_x))}
