"""Run artifacts, cached by a hash of the resolved config and the code version.

A result is a flat dict of arrays and JSON scalars, stored as ``result.npz`` (arrays, loaded
with ``allow_pickle=False``) and ``meta.json`` (scalars, the config, the versions) in
``<root>/<name>/<hash>/``. Both are written to temporary files and moved into place with
``os.replace``; ``meta.json`` goes last, so a run with a meta file is complete. The code
version is a hash of the source the run depends on (the core modules plus those the caller
names), so editing that code invalidates old results.
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


CORE = ("data", "models", "norms", "train", "runs", "functional")  # every run depends on these


@lru_cache(maxsize=64)
def code_version(modules: tuple[str, ...] | None = None) -> str:
    """sha256 (12 hex digits) of bnlib's source: the given module paths (relative to the
    package, without ``.py``), or every .py file of the package when ``modules`` is None."""
    h = hashlib.sha256(__version__.encode())
    pkg = Path(__file__).parent
    files = sorted(pkg.rglob("*.py")) if modules is None else sorted(pkg / f"{m}.py" for m in modules)
    for p in files:
        h.update(str(p.relative_to(pkg)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


def module_path(module_name: str) -> str:
    """``"bnlib.chapters.training"`` -> ``"chapters/training"`` (for ``depends``)."""
    return module_name.removeprefix("bnlib.").replace(".", "/")


def runs_root(root: str | os.PathLike | None = None) -> Path:
    return Path(root or os.environ.get("BNLIB_RUNS") or "_runs")


def _modules(depends: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted({*CORE, *depends}))


def config_hash(config: dict, depends: tuple[str, ...] = ()) -> str:
    """Stable hash of a JSON-serialisable config, the code it depends on and torch's version."""
    code = code_version(_modules(depends))
    blob = json.dumps({"config": config, "code": code, "torch": torch.__version__},
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


def save(path: Path, result: Result, config: dict, code: str = "") -> None:
    """Write ``result`` (arrays -> npz, the rest -> JSON) atomically into the folder ``path``."""
    path.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.asarray(v) for k, v in result.items() if isinstance(v, (np.ndarray, torch.Tensor))}
    scalars = {k: v for k, v in result.items() if k not in arrays}
    meta = {"config": config, "scalars": scalars, "code": code, "torch": torch.__version__}

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


def cached(name: str, config: dict, compute: Callable[[], Result], *, depends: tuple[str, ...] = (),
           force: bool = False, root: str | os.PathLike | None = None) -> Result:
    """``compute()``'s result for ``config``, from the store if present (unless ``force``).

    The key hashes ``config``, the source of the core modules (``CORE``) and of ``depends``
    (module paths such as ``"chapters/training"``, see ``module_path``), and torch's version:
    editing code a result depends on invalidates it, editing an unrelated chapter does not.
    """
    path = runs_root(root) / name / config_hash(config, depends)
    if not force and (path / "meta.json").exists():
        return load(path)
    result = compute()
    save(path, result, config, code_version(_modules(depends)))
    return load(path)
