"""Data: real CIFAR-10 / MNIST subsets from $BNLIB_DATA, standardised, and a clear error."""

import numpy as np
import pytest
import torch

from bnlib import data


def test_cifar_mini_is_nchw_standardised_with_official_labels():
    d = data.load("cifar10-mini")
    assert d.X_train.shape == (2000, 3, 32, 32) and d.X_test.shape == (1000, 3, 32, 32)
    assert d.y_train[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]  # data README
    mean, std = d.X_train.mean(dim=(0, 2, 3)), d.X_train.std(dim=(0, 2, 3))
    assert torch.allclose(mean, torch.zeros(3), atol=1e-5) and torch.allclose(std, torch.ones(3), atol=1e-5)


def test_pixels_match_the_npz():
    raw = np.load(data.data_root() / "mnist-mini.npz")["x_train"]
    d = data.load("mnist-mini", train_size=5)
    assert d.X_train.shape == (5, 1, 28, 28)
    back = d.X_train[:, 0].numpy()  # undo the standardisation up to an affine map
    corr = np.corrcoef(back.ravel(), raw[:5].ravel().astype(float))[0, 1]
    assert corr > 0.999999


def test_missing_data_says_where_it_looked_and_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("BNLIB_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"(?s)mnist.*Looked in.*BNLIB_DATA.*Fix:"):
        data.load("mnist")


def test_unknown_dataset():
    with pytest.raises(ValueError, match="Unknown data set 'svhn'"):
        data.load("svhn")


def test_linear_regression_is_seeded_and_linear():
    a, b = data.linear_regression(n=50, seed=3), data.linear_regression(n=50, seed=3)
    assert torch.equal(a.X_train, b.X_train) and torch.equal(a.y_train, b.y_train)
    A = torch.linalg.lstsq(a.X_train, a.y_train).solution  # exact fit: the targets are linear
    assert torch.allclose(a.X_train @ A, a.y_train, atol=1e-4)
