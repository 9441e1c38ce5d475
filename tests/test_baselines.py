import numpy as np
import pytest

from lstm_ae.evaluation.baselines import chance_accuracy, mean_image_mse, mnist_baselines, pca_mse


def direct_pca_mse(train, test, k):
    """PCA the textbook way: eigenvectors of the covariance, largest first."""
    train, test = train.reshape(len(train), -1), test.reshape(len(test), -1)
    mean = train.mean(0)
    values, vectors = np.linalg.eigh(np.cov(train - mean, rowvar=False))
    top = vectors[:, np.argsort(values)[::-1][:k]]
    centred = test - mean
    return float(((centred - centred @ top @ top.T) ** 2).mean())


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(20, 36))          # 20-pixel images with a decaying spectrum
    scale = np.linspace(2.0, 0.1, 20)[:, None]
    make = lambda n: (rng.normal(size=(n, 20)) @ (scale * mixing)).reshape(n, 6, 6, 1)
    return make(80), make(30)


@pytest.mark.parametrize("k", [1, 3, 10])
def test_pca_mse_equals_a_direct_computation(images, k):
    train, test = images
    assert pca_mse(train, test, k) == pytest.approx(direct_pca_mse(train, test, k), rel=1e-9)


def test_pca_mse_limits(images):
    train, test = images
    full = train.reshape(80, -1).shape[1]
    assert pca_mse(train, test, 0) == pytest.approx(mean_image_mse(train, test), rel=1e-12)
    assert pca_mse(train, test, full) < 1e-20           # every direction kept
    assert pca_mse(train, test, 10 * full) < 1e-20      # k is capped, no error
    errors = [pca_mse(train, test, k) for k in range(0, 21, 5)]
    assert errors == sorted(errors, reverse=True) and errors[-1] < 1e-20   # data have rank 20


def test_mean_image_mse_by_hand():
    train = np.array([[0.0, 1.0], [1.0, 1.0]])        # mean image (0.5, 1)
    test = np.array([[0.5, 0.0], [1.5, 1.0]])
    assert mean_image_mse(train, test) == pytest.approx((0 + 1 + 1 + 0) / 4)


def test_chance_accuracy_is_the_majority_share_at_least_uniform():
    assert chance_accuracy(np.array([0, 1, 1, 2])) == 0.5
    assert chance_accuracy(np.arange(10)) == pytest.approx(0.1)
    assert chance_accuracy(np.array([3, 4]), n_classes=10) == 0.5
    with pytest.raises(ValueError):
        chance_accuracy(np.array([], dtype=int))


def test_mnist_baselines_uses_the_latent_size(images):
    train, test = images
    labels = np.array([7] * 12 + list(range(10)) * 1 + [1] * 8)
    result = mnist_baselines(train, test, labels, latent_size=3)
    assert result["pca_components"] == 3 and result["n_train"] == 80 and result["n_test"] == 30
    assert result["pca_mse"] == pytest.approx(direct_pca_mse(train, test, 3), rel=1e-9)
    assert result["chance_accuracy"] == pytest.approx(13 / 30)
    assert result["mean_image_mse"] > result["pca_mse"] > 0
