"""Run artifacts, cached by a hash of the resolved config and the code version.

A result is a flat dict of arrays and JSON scalars, stored as ``result.npz`` (arrays, loaded
with ``allow_pickle=False``) and ``meta.json`` (scalars, the config, the versions) in
``<root>/<name>/<hash>/``. Both are written to temporary files and moved into place with
``os.replace``; ``meta.json`` goes last, so a run with a meta file is complete. The code
version is a hash of bnlib's own source, so editing the library invalidates old results.
Root: argument, else ``$BNLIB_RUNS``, else ``./_runs``. Never pickles.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__

Result = dict[str, Any]


@lru_cache(maxsize=1)
def code_version() -> str:
    """sha256 (12 hex digits) of every .py file of bnlib, in sorted path order."""
    h = hashlib.sha256(__version__.encode())
    pkg = Path(__file__).parent
    for p in sorted(pkg.rglob("*.py")):
        h.update(str(p.relative_to(pkg)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


def runs_root(root: str | os.PathLike | None = None) -> Path:
    return Path(root or os.environ.get("BNLIB_RUNS") or "_runs")


def config_hash(config: dict) -> str:
    """Stable hash of a JSON-serialisable config plus the code and torch versions."""
    blob = json.dumps({"config": config, "code": code_version(), "torch": torch.__version__},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save(path: Path, result: Result, config: dict) -> None:
    """Write ``result`` (arrays -> npz, the rest -> JSON) atomically into the folder ``path``."""
    path.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.asarray(v) for k, v in result.items() if isinstance(v, (np.ndarray, torch.Tensor))}
    scalars = {k: v for k, v in result.items() if k not in arrays}
    meta = {"config": config, "scalars": scalars, "code": code_version(), "torch": torch.__version__}

    def write_npz(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    def write_json(tmp: str) -> None:
        Path(tmp).write_text(json.dumps(meta, indent=1, sort_keys=True, default=float))

    _atomic_write(path / "result.npz", write_npz)
    _atomic_write(path / "meta.json", write_json)


def load(path: Path) -> Result:
    meta = json.loads((path / "meta.json").read_text())
    with np.load(path / "result.npz", allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    return {**arrays, **meta["scalars"]}


def cached(name: str, config: dict, compute: Callable[[], Result], *, force: bool = False,
           root: str | os.PathLike | None = None) -> Result:
    """``compute()``'s result for ``config``, from the store if present (unless ``force``)."""
    path = runs_root(root) / name / config_hash(config)
    if not force and (path / "meta.json").exists():
        return load(path)
    result = compute()
    save(path, result, config)
    return load(path)
