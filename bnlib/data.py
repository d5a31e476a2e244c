"""CIFAR-10 and MNIST as standardised tensors on the device, and synthetic regression data.

The airbench recipe: load the whole set once, convert and standardise it once (per-channel
mean and std of the training images, our choice), keep it on the device; a batch is
``X[idx]``. No DataLoader, no per-image Python work.

Files: ``<root>/<name>.npz`` with keys x_train, y_train, x_test, y_test (uint8 images,
int64 labels). The root is the argument, else ``$BNLIB_DATA``, else ``./data``. A missing
file is downloaded through torchvision (imported only then) and written as the same npz.

Faults: a damaged file (empty, truncated, not an npz, a missing key, a wrong shape or dtype)
raises one ``DataFileError`` naming the file, the fault and the fix. The arrays are checked
against the sha256 checksums of the official sets (``bnlib.checksums``), downloads too;
arrays that differ raise ``DataMismatchError`` unless ``load(..., verify=False)`` or
``BNLIB_DATA_VERIFY=0`` turns that into one warning. A check is cached per (file, size,
mtime) in the process and in a sidecar ``<name>.npz.verified`` (unless the folder is
read-only), so an unchanged file is hashed once.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bnlib import checksums

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


class DataFileError(ValueError):
    """A data file is damaged or not usable as a data set; the message names the file and the fix."""


class DataMismatchError(DataFileError):
    """A data file's arrays differ from the official ones (their sha256 checksums do not match)."""


def _fix(name: str, path: Path) -> str:
    """The remedy for a bad ``path``: re-download (full sets only) or copy a good copy."""
    redo = (f"delete it (`rm '{path.resolve()}'`) and load again, so that bnlib re-downloads it with torchvision "
            f"(needs torchvision and internet), or " if "-mini" not in name else "")
    return (f"Fix: {redo}replace it with a good copy of {name}.npz (e.g. from the project's shared data "
            f"folder), or point bnlib at a folder holding one: `export BNLIB_DATA=/path/to/data`.")


def _verify_default(verify: bool | None) -> bool:
    """``verify`` if given, else ``$BNLIB_DATA_VERIFY`` (0/false/no/off: off), else on."""
    if verify is not None:
        return verify
    return os.environ.get("BNLIB_DATA_VERIFY", "1").strip().lower() not in ("0", "false", "no", "off")


def _why_unreadable(path: Path, err: Exception) -> str:
    """Tell a truncated zip from one that is no zip at all, from the file's first and last bytes."""
    size = path.stat().st_size
    if size == 0:
        return "it is empty (0 bytes)"
    with open(path, "rb") as f:
        head = f.read(8)
        f.seek(max(0, size - 65_557))  # the end-of-directory record sits in the last 22 + 65535 bytes
        tail = f.read()
    if head.startswith(b"\x93NUMPY"):
        return "it is a single .npy array, not an npz archive of four arrays"
    if head.startswith(b"PK\x03\x04"):
        if b"PK\x05\x06" not in tail:
            return (f"it is truncated: it starts as an npz (zip) file but its end, the zip directory, is "
                    f"missing ({size:,} bytes; an interrupted download or copy?)")
        return f"it is corrupt: an npz (zip) file whose contents cannot be read ({type(err).__name__}: {err})"
    kind = " (it looks like text or an HTML page)" if head.lstrip()[:1] in (b"<", b"{") else ""
    return f"it is not a valid npz file{kind}: it does not start with a zip header (first bytes {head!r})"


def _read(name: str, path: Path, fix: str | None = None) -> dict[str, np.ndarray]:
    """The four arrays of ``path``, or one ``DataFileError`` saying what is wrong with the file."""
    problem = None
    try:
        with np.load(path) as f:
            missing = [k for k in checksums.KEYS if k not in f.files]
            if missing:
                problem = (f"it is a valid npz file but lacks the key(s) {', '.join(missing)} "
                           f"(it holds: {', '.join(f.files) or 'nothing'})")
            else:
                a = {k: f[k] for k in checksums.KEYS}
    except (MemoryError, PermissionError, IsADirectoryError):
        raise  # not a fault of the file's bytes: the plain error says it best
    except Exception as e:  # noqa: BLE001 - every way np.load can fail becomes one message
        problem = _why_unreadable(path, e)
    if problem is None:
        problem = _bad_layout(a)
    if problem is not None:
        raise DataFileError(f"Data file {path.resolve()} is damaged: {problem}. Expected an npz with keys "
                            f"x_train, y_train, x_test, y_test (uint8 images, int64 labels). "
                            f"{fix or _fix(name, path)}") from None
    return a


def _bad_layout(a: dict[str, np.ndarray]) -> str | None:
    """What is wrong with the arrays' shapes or dtypes for ``load``, or None."""
    for s in ("train", "test"):
        x, y = a[f"x_{s}"], a[f"y_{s}"]
        if x.dtype != np.uint8 or x.ndim not in (3, 4):
            return (f"wrong shape or dtype: x_{s} is {x.dtype} {x.shape}, expected uint8 images "
                    f"N x H x W or N x H x W x C")
        if y.dtype != np.int64 or y.shape != (len(x),):
            return f"wrong shape or dtype: y_{s} is {y.dtype} {y.shape}, expected int64 labels ({len(x)},)"
    return None


_VERIFIED: dict[tuple, tuple[str, ...]] = {}  # (name, path, size, mtime_ns) -> keys that differ
_WARNED: set[tuple] = set()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _differing(name: str, path: Path, a: dict[str, np.ndarray]) -> tuple[str, ...]:
    """The keys of ``a`` whose checksums differ from the official ``name``; cached per file version."""
    st = path.stat()
    key = (name, str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _VERIFIED:
        return _VERIFIED[key]
    stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "table": checksums.table_id(name)}
    try:
        side = json.loads(_sidecar(path).read_text())
        if {k: side.get(k) for k in stamp} == stamp and isinstance(side.get("differ"), list):
            _VERIFIED[key] = tuple(side["differ"])
            return _VERIFIED[key]
    except (OSError, ValueError):
        pass  # no sidecar, or an unreadable one: hash
    bad = tuple(k for k in checksums.KEYS if checksums.array_digest(a[k]) != checksums.CHECKSUMS[name][k])
    _remember(name, path, bad)
    return bad


def _remember(name: str, path: Path, bad: tuple[str, ...]) -> None:
    """Record the check of ``path`` in the process and, if the folder is writable, in its sidecar."""
    st = path.stat()
    _VERIFIED[(name, str(path.resolve()), st.st_size, st.st_mtime_ns)] = bad
    stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "table": checksums.table_id(name), "differ": list(bad)}
    if not path.parent.stat().st_mode & 0o222:  # a folder marked read-only (e.g. shared data) stays so, even for root
        return
    tmp = _sidecar(path).with_name(f".{path.name}.verified.{os.getpid()}")
    try:
        tmp.write_text(json.dumps(stamp) + "\n")
        os.replace(tmp, _sidecar(path))
    except OSError:  # not writable: the in-process cache still holds
        tmp.unlink(missing_ok=True)


def _check(name: str, path: Path, a: dict[str, np.ndarray], verify: bool, fix: str | None = None) -> None:
    """Raise ``DataMismatchError`` if ``a`` is not the official ``name`` (warn once instead if not ``verify``)."""
    bad = _differing(name, path, a)
    if not bad:
        return
    found = "; ".join(f"{k} is {a[k].dtype} {a[k].shape}" for k in bad)
    msg = (f"Data file {path.resolve()} does not hold the official {name}: the sha256 checksum of "
           f"{', '.join(bad)} differs from the official one ({found}).")
    if verify:
        raise DataMismatchError(f"{msg} {fix or _fix(name, path)} To use these arrays anyway, pass "
                                f"`data.load(..., verify=False)` or set BNLIB_DATA_VERIFY=0.") from None
    st = path.stat()
    if (key := (str(path.resolve()), st.st_size, st.st_mtime_ns)) not in _WARNED:
        _WARNED.add(key)
        warnings.warn(f"{msg} Using them anyway (verification is off).", UserWarning, stacklevel=4)


def _download(name: str, path: Path, *, verify: bool = True) -> None:
    """Fetch ``name`` with torchvision, save it as ``path`` and check it (users with internet only)."""
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
    fix = (f"Fix: load again to retry the download (was it cut short or altered?), or put a good copy of "
           f"{name}.npz in a folder and `export BNLIB_DATA=/path/to/that/folder`.")
    try:  # check what was written before it takes the place of the data set
        _check(name, tmp, _read(name, tmp, fix), verify, fix)
        bad = _differing(name, tmp, arrays)  # cached by the check: no second hash
    except DataFileError as e:
        tmp.unlink(missing_ok=True)
        raise type(e)(f"torchvision's download of {name} was not kept as {path.resolve()}. {e}") from None
    finally:
        _sidecar(tmp).unlink(missing_ok=True)
    os.replace(tmp, path)
    _remember(name, path, bad)


def _arrays(name: str, root: str | os.PathLike | None, *, verify: bool | None = None) -> dict[str, np.ndarray]:
    """The checked arrays of ``name`` from ``root`` (downloaded if missing); see the module docstring."""
    if name not in DATASETS:
        raise ValueError(f"Unknown data set {name!r}; known: {', '.join(DATASETS)}")
    verify = _verify_default(verify)
    path = data_root(root) / f"{name}.npz"
    if not path.exists():
        base = name.removesuffix("-mini")
        try:
            if base != name:
                raise FileNotFoundError("the -mini subsets are not downloadable")
            _download(base, path, verify=verify)
        except DataFileError:
            raise  # the download arrived but failed its check: that message says it all
        except Exception as e:  # noqa: BLE001 - one clear message for every failure
            raise FileNotFoundError(
                f"Data set {name!r} not found at {path.resolve()} and could not be downloaded "
                f"({type(e).__name__}: {e}). Looked in: the `root` argument ({root!r}), then "
                f"$BNLIB_DATA ({os.environ.get('BNLIB_DATA')!r}), then ./data. Fix: put "
                f"{name}.npz (keys x_train, y_train, x_test, y_test) in one of those folders, "
                f"e.g. `export BNLIB_DATA=/path/to/data`, or install torchvision with internet "
                f"access so it can be downloaded.") from None
    a = _read(name, path)
    _check(name, path, a, verify)
    return a


def _to_nchw(x: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(x)
    return t.unsqueeze(1) if t.dim() == 3 else t.permute(0, 3, 1, 2)  # (N, C, H, W) uint8


def channel_stats(x: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (n - 1) of uint8 images (N, C, H, W), in [0, 1] units, float64,
    shaped (1, C, 1, 1). The sums of pixel values and of their squares are sums of integers, exact
    in float64 whatever the order, so the result does not depend on the thread count or device (a
    float32 mean did: a chapter run alone on 2 threads standardised its data differently from the
    book's one-thread chapters)."""
    s1 = torch.zeros(x.shape[1], dtype=torch.float64)
    s2 = torch.zeros(x.shape[1], dtype=torch.float64)
    for part in x.split(chunk):
        v = part.to(torch.float64)
        s1 += v.sum(dim=(0, 2, 3)).cpu()
        s2 += v.square().sum(dim=(0, 2, 3)).cpu()
    n = x.numel() // x.shape[1]
    var = (s2 - s1 * s1 / n) / (n - 1)
    return (s1 / n / 255).view(1, -1, 1, 1), (var.sqrt() / 255).view(1, -1, 1, 1)


def load(name: str, *, root: str | os.PathLike | None = None, device: str | torch.device = "cpu",
         train_size: int | None = None, test_size: int | None = None,
         dtype: torch.dtype = torch.float32, verify: bool | None = None) -> Data:
    """Load ``name`` standardised per channel with the training set's statistics, on ``device``.

    ``train_size`` / ``test_size`` keep the first n examples (the official order). ``verify``
    (default: on unless ``$BNLIB_DATA_VERIFY=0``) makes arrays that differ from the official
    ones an error; off, they only warn once.
    """
    a = _arrays(name, root, verify=verify)
    xtr, xte = _to_nchw(a["x_train"][:train_size]), _to_nchw(a["x_test"][:test_size])
    mean, std = (s.to(device=device, dtype=dtype) for s in channel_stats(xtr))
    xtr = xtr.to(device=device, dtype=dtype).div_(255)  # (N, C, H, W) in [0, 1]
    xte = xte.to(device=device, dtype=dtype).div_(255)
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


@dataclass(frozen=True)
class DataSpec:
    """Which data a trajectory trains on: a named image set or the DLN's regression task.

    ``train_size``/``test_size`` keep the first n examples (None: all); ``pad_to`` pads
    smaller images with the background value to a square size (MNIST 28 -> 32 for a VGG);
    ``dim`` and ``seed`` describe the ``"linear"`` task (see ``linear_regression``).
    """

    name: str                        # one of DATASETS, or "linear"
    train_size: int | None = None    # first n training examples (None: all)
    test_size: int | None = None     # first n test examples (None: all)
    pad_to: int | None = None        # pad images to pad_to x pad_to (None: as stored)
    dim: int | None = None           # "linear": input/output dimension
    seed: int | None = None          # "linear": seed of x and A
    dtype: str = "float32"           # floating-point type of the inputs (and of the model)

    def __post_init__(self) -> None:
        if self.name not in (*DATASETS, "linear"):
            raise ValueError(f"Unknown data set {self.name!r}; known: {', '.join((*DATASETS, 'linear'))}")


_LOADED: dict[tuple, Data] = {}


def get(spec: DataSpec, device: str | torch.device = "cpu") -> Data:
    """The data of ``spec`` on ``device``, loaded once per process and then shared."""
    key = (spec, str(device))
    if key not in _LOADED:
        if spec.name == "linear":
            d = linear_regression(n=spec.train_size or 1000, dim=spec.dim or 10, seed=spec.seed or 0,
                                  device=device, dtype=getattr(torch, spec.dtype))
        else:
            d = load(spec.name, device=device, train_size=spec.train_size, test_size=spec.test_size,
                     dtype=getattr(torch, spec.dtype))
            if spec.pad_to and d.X_train.shape[-1] < spec.pad_to:
                d = _padded(d, spec.pad_to)
        if len(_LOADED) >= 3:  # keep a few data sets resident, the oldest goes first
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[key] = d
    return _LOADED[key]


def _padded(d: Data, size: int) -> Data:
    """Pad every image to ``size`` x ``size`` with the background (darkest) value."""
    bg = float(d.X_train.min())
    p = (size - d.X_train.shape[-1]) // 2
    q = size - d.X_train.shape[-1] - p

    def pad(X: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pad(X, (p, q, p, q), value=bg)  # (N, C, s, s)

    return Data(d.name, pad(d.X_train), d.y_train, pad(d.X_test), d.y_test)
