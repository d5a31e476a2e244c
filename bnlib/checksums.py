"""sha256 checksums of the official CIFAR-10 / MNIST arrays, so that ``data.load`` can tell them from others.

How they were computed: for each of the four files in the project's shared data folder and each key,
``array_digest(np.load(file)[key])`` below, i.e. sha256 over ``f"{a.dtype.str}{a.shape}"`` (e.g.
``"|u1(60000, 28, 28)"``) followed by the raw bytes of the C-contiguous array. The digest of the bytes
alone (``sha256(a.tobytes())``) of every full-set array equals the value published in that folder's
README, a cross-check of these constants.

The full sets are the official ones, in the official order (the order of torchvision's ``.data`` /
``.targets``): MNIST decoded from the four official idx files (md5 matched); CIFAR-10 with the labels of the
official batch files and pixels cross-checked against the official bytes and a second export (see the data
README for the limits). The ``-mini`` sets are the first 2000 training and first 1000 test examples.
"""

from __future__ import annotations

import hashlib

import numpy as np

KEYS = ("x_train", "y_train", "x_test", "y_test")

CHECKSUMS: dict[str, dict[str, str]] = {
    "cifar10": {
        "x_train": "c97d2b688c6176b257aab9b596fade6909222d650da772fe570a44bc22ebb79f",  # uint8 (50000, 32, 32, 3)
        "y_train": "f3eca90f353f9ae29daca343e949b1802bde4fd1733bf70f78b9da4b2765ebb4",  # int64 (50000,)
        "x_test": "ebe3b85d5a0063d7ce17cde3cdaef56072fa345bfb08cff6493aea28b9313b13",  # uint8 (10000, 32, 32, 3)
        "y_test": "e48789e454371556a2bb51ca3d0ae85c540e7312f8c74b0090d23c69408a5979",  # int64 (10000,)
    },
    "mnist": {
        "x_train": "157fe16da1dbced4a1376f4be5df2d665d51d11177dcaf7aa4848b1ff033343f",  # uint8 (60000, 28, 28)
        "y_train": "709bf8e34a5eecad0ba9e319b1d154e9069f3e5492f2bb65e5da9a7ce1e406b2",  # int64 (60000,)
        "x_test": "fbf9701b11f5659e6366884b0bbf01ea129fb049e3239251eddb226ada72239e",  # uint8 (10000, 28, 28)
        "y_test": "bc4f9655c228502ea84fb679f1b5c618ad81c0ca308f62e8b89621010716f3d7",  # int64 (10000,)
    },
    "cifar10-mini": {
        "x_train": "346e3798b454a5336d63864f5cda28918024b040dea6ecfa8b5c5208330bb9b8",  # uint8 (2000, 32, 32, 3)
        "y_train": "48020c730b2574b02924ee84cba13741ceae3d72a571d923b052aa417369d245",  # int64 (2000,)
        "x_test": "5677801271af950ce715b8138cdf4f74fe2e260e213f3ee56b95488093944318",  # uint8 (1000, 32, 32, 3)
        "y_test": "37668af11869a22e65a62e7ed09e8c2c554ae472091e410df7adea2e77f7ccdc",  # int64 (1000,)
    },
    "mnist-mini": {
        "x_train": "5cb287ad07517f0fc819b89c8b51e3308b136479ae5f8582f2d264c46689c9c1",  # uint8 (2000, 28, 28)
        "y_train": "2500b49787384992c9e3e23e27902e75552fa3181fe1e1ed6ac53eab10937759",  # int64 (2000,)
        "x_test": "d52255eea6e604e399ecc4d8d5342a23986a533b77927c24ff319ccd3686a46d",  # uint8 (1000, 28, 28)
        "y_test": "8e246c1b11c173aa52c3c48a34bcfc966b3c1e2ed4f6018aa9d294403c7ed1af",  # int64 (1000,)
    },
}


def array_digest(a: np.ndarray) -> str:
    """sha256 hex digest of ``a``'s dtype, shape and raw C-order bytes (the scheme of ``CHECKSUMS``)."""
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.data)
    return h.hexdigest()


def table_id(name: str) -> str:
    """A short fingerprint of ``CHECKSUMS[name]``: a cached check is void once the table changes."""
    return hashlib.sha256(repr(sorted(CHECKSUMS[name].items())).encode()).hexdigest()[:16]
