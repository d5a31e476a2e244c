"""CIFAR-10 and MNIST as standardised tensors on the device, and synthetic regression data.

The airbench recipe: load the whole set once, convert and standardise it once (per-channel
mean and std of the training images, our choice), keep it on the device; a batch is
``X[idx]``. No DataLoader, no per-image Python work.

Files: ``<root>/<name>.npz`` with keys x_train, y_train, x_test, y_test (uint8 images,
int64 labels). The root is the argument, else ``$BNLIB_DATA``, else ``./data``. A missing
file is downloaded through torchvision (imported only then) and written as the same npz.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

DATASETS = ("cifar10", "mnist", "cifar10-mini", "mnist-mini")


@dataclass(frozen=True)
class Data:
    """A data set on one device: X as (N, C, H, W) float, y as (N,) int64 (or float targets)."""

    name: str
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def device(self) -> torch.device:
        return self.X_train.device


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Where data lives: ``root``, else ``$BNLIB_DATA``, else ``./data``."""
    return Path(root or os.environ.get("BNLIB_DATA") or "data")


def _download(name: str, path: Path) -> None:
    """Fetch ``name`` with torchvision and save it as ``path`` (users with internet only)."""
    try:
        import torchvision  # lazy: the CPU torch here has no matching torchvision wheel
    except Exception as e:  # noqa: BLE001 - any import failure means "cannot download"
        raise ImportError(f"torchvision is not importable ({e})") from e
    cls = {"cifar10": torchvision.datasets.CIFAR10, "mnist": torchvision.datasets.MNIST}[name]
    raw = path.parent / f".{name}-raw"
    tr, te = cls(raw, train=True, download=True), cls(raw, train=False, download=True)
    arrays = {"x_train": np.asarray(tr.data), "y_train": np.asarray(tr.targets, dtype=np.int64),
              "x_test": np.asarray(te.data), "y_test": np.asarray(te.targets, dtype=np.int64)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


def _arrays(name: str, root: str | os.PathLike | None) -> dict[str, np.ndarray]:
    if name not in DATASETS:
        raise ValueError(f"Unknown data set {name!r}; known: {', '.join(DATASETS)}")
    path = data_root(root) / f"{name}.npz"
    if not path.exists():
        base = name.removesuffix("-mini")
        try:
            if base != name:
                raise FileNotFoundError("the -mini subsets are not downloadable")
            _download(base, path)
        except Exception as e:  # noqa: BLE001 - one clear message for every failure
            raise FileNotFoundError(
                f"Data set {name!r} not found at {path.resolve()} and could not be downloaded "
                f"({type(e).__name__}: {e}). Looked in: the `root` argument ({root!r}), then "
                f"$BNLIB_DATA ({os.environ.get('BNLIB_DATA')!r}), then ./data. Fix: put "
                f"{name}.npz (keys x_train, y_train, x_test, y_test) in one of those folders, "
                f"e.g. `export BNLIB_DATA=/path/to/data`, or install torchvision with internet "
                f"access so it can be downloaded.") from None
    with np.load(path) as f:
        return {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}


def _to_nchw(x: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(x)
    return t.unsqueeze(1) if t.dim() == 3 else t.permute(0, 3, 1, 2)  # (N, C, H, W) uint8


def load(name: str, *, root: str | os.PathLike | None = None, device: str | torch.device = "cpu",
         train_size: int | None = None, test_size: int | None = None,
         dtype: torch.dtype = torch.float32) -> Data:
    """Load ``name`` standardised per channel with the training set's statistics, on ``device``.

    ``train_size`` / ``test_size`` keep the first n examples (the official order).
    """
    a = _arrays(name, root)
    xtr, xte = _to_nchw(a["x_train"][:train_size]), _to_nchw(a["x_test"][:test_size])
    xtr = xtr.to(device=device, dtype=dtype).div_(255)  # (N, C, H, W) in [0, 1]
    xte = xte.to(device=device, dtype=dtype).div_(255)
    mean = xtr.mean(dim=(0, 2, 3), keepdim=True)
    std = xtr.std(dim=(0, 2, 3), keepdim=True)
    ytr = torch.from_numpy(a["y_train"][:train_size]).to(device)
    yte = torch.from_numpy(a["y_test"][:test_size]).to(device)
    return Data(name, (xtr - mean) / std, ytr, (xte - mean) / std, yte)


def linear_regression(*, n: int = 1000, dim: int = 10, seed: int = 0,
                      device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> Data:
    """Santurkar et al.'s deep-linear-network task: x ~ N(0, I), target A x, A i.i.d. N(0, 1).

    The same ``n`` points serve as training and test set (the task is pure optimisation).
    """
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, dim, generator=g, dtype=dtype)
    A = torch.randn(dim, dim, generator=g, dtype=dtype)
    Y = X @ A.T  # (n, dim)
    X, Y = X.to(device), Y.to(device)
    return Data("linear", X, Y, X, Y)
