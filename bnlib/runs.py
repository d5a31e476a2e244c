"""The run store: every trajectory trained once, checkpointed, and probed from its checkpoints.

A *trajectory* is (data spec, model spec, train config, seed). Its key is a hash of those
specs and of the source of the modules that implement them (``TRAJECTORY_CODE``), so a
setting that training reads is in the key by construction and nobody writes a key by hand.
Whichever chapter asks first trains it; every later request, from any chapter or process,
loads it. A *probe* (a frozen dataclass with ``measure(ctx) -> dict``) runs on the stored
checkpoint of each step it is asked for; its results are cached under (trajectory, probe
spec, steps, probe code). A step without a checkpoint is reached by replaying the
trajectory from the nearest earlier one (deterministic, so bit-identical); the new
checkpoints are kept.

Layout under ``<root>`` (argument, else ``$BNLIB_RUNS``, else ``./_runs``)::

    traj/<key>/spec.json      specs, code version, step count
    traj/<key>/history.npz    the finished trajectory's records (its manifest marks it done)
    traj/<key>/resume-<step>.npz  resume points while training (the newest two; deleted when done)
    traj/<key>/ckpt/<step>.npz  checkpoints that probes read
    traj/<key>/used.json      which chapter trained it and which ones used it
    probe/<key>/<probe key>.npz  probe results

Every file is written to a temporary name and moved into place (``os.replace``), with its
sha256 beside it; a file whose checksum does not match is reported in one line, removed and
recomputed, never loaded. A lock per trajectory (``fcntl.flock``) makes a second process
wait for the first instead of training the same trajectory again. Arrays only, no pickles.
On the CPU a sweep trains its untrained trajectories side by side in worker processes, each at
one thread (``train_in_processes``; ``$BNLIB_TRAIN_PROCS``), through the store as above.
"""

from __future__ import annotations

import ast
import contextlib
import fcntl
import hashlib
import itertools
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, fields, replace
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__, batched, data, models, scaleout, train
from .data import DataSpec
from .models import ModelSpec
from .train import History, TrainConfig

TRAJECTORY_CODE = ("data", "models", "norms", "train", "checkpoint", "functional")
Arrays = dict[str, np.ndarray]
# Trajectories this process used, by key: True if it trained them, False if it loaded them
# (the execution page reports both per chapter).
USED: dict[str, bool] = {}


@lru_cache(maxsize=64)
def code_version(modules: tuple[str, ...] | None = None) -> str:
    """sha256 (12 hex digits) of bnlib's code: the given module paths (relative to the package,
    without ``.py``; a folder means every module in it), or the whole package. Docstrings,
    comments and layout do not count (``_code``), so editing prose never retrains anything."""
    h = hashlib.sha256(__version__.encode())
    pkg = Path(__file__).parent
    if modules is None:
        files = sorted(pkg.rglob("*.py"))
    else:
        files = sorted({f for m in modules for f in ([pkg / f"{m}.py"] if (pkg / f"{m}.py").exists()
                                                      else sorted((pkg / m).glob("*.py")))})
    for p in files:
        h.update(str(p.relative_to(pkg)).encode())
        h.update(_code(p))
    return h.hexdigest()[:12]


def _code(path: Path) -> bytes:
    """A module's syntax tree without docstrings (comments and layout are not in it)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree).encode()


@lru_cache(maxsize=64)
def _imports(module: str) -> frozenset[str]:
    """The bnlib modules (paths relative to the package, no ``.py``) that ``module`` imports,
    directly or through others, itself included."""
    pkg, seen, todo = Path(__file__).parent, set(), [module]
    while todo:
        mod = todo.pop()
        path = pkg / f"{mod}.py" if (pkg / f"{mod}.py").exists() else pkg / mod / "__init__.py"
        name = mod if path.name != "__init__.py" else str(Path(mod) / "__init__").lstrip("./")
        if name in seen or not path.exists():
            continue
        seen.add(name)  # a package counts as its __init__ only, not as every module in it
        here = Path(mod).parent if path.name != "__init__.py" else Path(mod)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = here
                for _ in range(node.level - 1):
                    base = base.parent
                target = base / node.module.replace(".", "/") if node.module else base
                todo.append(str(target).lstrip("./") or ".")
                todo += [str(target / a.name).lstrip("./") for a in node.names]
    return frozenset(seen)
def runs_root(root: str | os.PathLike | None = None) -> Path:
    return Path(root or os.environ.get("BNLIB_RUNS") or "_runs")


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Trajectory:
    """One training run: what data, which network, how it is optimised, and the seed that fixes
    the initial weights, the batch order and the noise draws."""

    data: DataSpec
    model: ModelSpec
    train: TrainConfig
    seed: int = 0

    def specs(self) -> dict:
        return {"data": asdict(self.data), "model": asdict(self.model), "train": asdict(self.train),
                "seed": self.seed}

    def key(self, device: str = "cpu") -> str:
        """The store key on a device of type ``device`` ("cpu", "cuda", "mps"): kernels differ
        between devices, so the same specs give (slightly) different numbers on each."""
        specs = {**self.specs(), "code": code_version(TRAJECTORY_CODE), "torch": torch.__version__}
        return _hash(specs if device == "cpu" else {**specs, "device": device})

    def label(self) -> str:
        t = self.train
        return f"{self.model.label()} {t.optimizer} lr={t.lr:g} steps={t.num_steps} seed={self.seed}"


def probe_code(probe: Any) -> str:
    """Version of the code a probe's results depend on: the trajectory's, the probe's own module
    and every bnlib module it imports (so editing one probe never re-runs the others)."""
    return _module_code(type(probe).__module__.removeprefix("bnlib.").replace(".", "/"))


def _module_code(module: str) -> str:
    return code_version(tuple(sorted({*TRAJECTORY_CODE, *_imports(module)})))


def probe_meta(traj: Trajectory, probe: Any, steps: tuple[int, ...], device: str = "cpu") -> dict:
    """Everything a probe's results depend on; its hash is the results' key."""
    return {"traj": traj.key(device), "probe": f"{type(probe).__module__}.{type(probe).__qualname__}",
            "spec": asdict(probe), "steps": list(steps), "code": probe_code(probe)}


# ---------------------------------------------------------------- files with checksums

def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _atomic(path: Path, write: Callable[[str], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_arrays(path: Path, arrays: Arrays) -> None:
    """Write ``arrays`` as an npz atomically, then its sha256 beside it (``<path>.sha256``)."""
    def npz(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **{k: np.asarray(v) for k, v in arrays.items()})
    _atomic(path, npz)
    digest = _sha(path)
    _atomic(Path(f"{path}.sha256"), lambda tmp: Path(tmp).write_text(digest))


def read_arrays(path: Path) -> Arrays | None:
    """The arrays at ``path``, or None if absent; a truncated or corrupt file (its checksum
    does not match, or it does not parse) is reported in one line and removed."""
    sha = Path(f"{path}.sha256")
    if not path.exists() or not sha.exists():
        return None
    try:
        if _sha(path) != sha.read_text().strip():
            raise ValueError("checksum mismatch")
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except Exception as e:  # noqa: BLE001 - any failure to read means "recompute"
        print(f"[bnlib] store: {path} is damaged ({type(e).__name__}: {e}); removed, recomputing",
              file=sys.stderr)
        path.unlink(missing_ok=True)
        sha.unlink(missing_ok=True)
        return None


def _remove(path: Path) -> None:
    """Remove an array file and its checksum."""
    path.unlink(missing_ok=True)
    Path(f"{path}.sha256").unlink(missing_ok=True)


@contextlib.contextmanager
def _locked(path: Path, *, wait: bool = True) -> Iterator[bool]:
    """An exclusive lock on ``path`` (created if needed), held for the block; yields whether it
    was taken (always, if ``wait``; without ``wait``, False when another process holds it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# Training on the CPU always uses one thread: float32 sums differ with the thread count (a
# relative 1e-4 in VGG losses), so a trajectory's numbers would depend on the machine. The
# book runs chapters side by side instead (``bnlib book --jobs``).
CPU_TRAIN_THREADS = 1


@contextlib.contextmanager
def train_threads(device: torch.device) -> Iterator[None]:
    if device.type != "cpu":
        yield
        return
    with batched.torch_threads(CPU_TRAIN_THREADS):
        yield


# ---------------------------------------------------------------- the store

MAX_DEFAULT_CHECKPOINTS = 64


def default_checkpoints(cfg: TrainConfig) -> list[int]:
    """Steps every trajectory is checkpointed at, whoever trains it: the always-on record
    steps (thinned to at most ``MAX_DEFAULT_CHECKPOINTS``) and the last step, so probes
    that read the record schedule find their checkpoints no matter which chapter trained."""
    every = cfg.record_every * -(-(cfg.num_steps // cfg.record_every + 1) // MAX_DEFAULT_CHECKPOINTS)
    return [*range(0, cfg.num_steps, every), cfg.num_steps]


class Store:
    """Trajectories and probe results under ``root``, on ``device``, asked for by ``chapter``."""

    def __init__(self, root: str | os.PathLike | None = None, *, chapter: str = "",
                 device: str | torch.device = "cpu", resume_every: int = 200, progress: bool = True):
        self.root, self.chapter, self.device = runs_root(root), chapter, torch.device(device)
        self.resume_every, self.progress = resume_every, progress
        self.trained: list[str] = []  # keys this Store trained (the rest it loaded)

    def key(self, traj: Trajectory) -> str:
        return traj.key(self.device.type)

    def path(self, traj: Trajectory) -> Path:
        return self.root / "traj" / self.key(traj)

    # -- training

    def history(self, traj: Trajectory, *, checkpoints: tuple[int, ...] = (), wait: bool = True) -> History | None:
        """The finished trajectory's History: loaded, or trained now (at most once per store),
        saving checkpoints at ``checkpoints`` (plus the first and last step) for probes.
        Without ``wait``, None if another process is training it now."""
        done = self.finished(traj)
        if done is None:
            with _locked(self.path(traj) / ".lock", wait=wait) as mine:
                if not mine:
                    return None
                done = self.finished(traj) or self._train(traj, checkpoints)
        self._mark_used(traj)
        return done

    def finished(self, traj: Trajectory) -> History | None:
        """The finished trajectory's History if the store has it, else None (nothing trained)."""
        arrays = read_arrays(self.path(traj) / "history.npz")
        return None if arrays is None else History.from_arrays(arrays)

    def _trainer(self, traj: Trajectory) -> train.Trainer:
        d = data.get(traj.data, self.device)
        model = models.build(traj.model, traj.seed).to(device=self.device, dtype=d.X_train.dtype)
        return train.Trainer(model, d, traj.train, seed=traj.seed)

    def _train(self, traj: Trajectory, checkpoints: tuple[int, ...]) -> History:
        p = self.path(traj)
        p.mkdir(parents=True, exist_ok=True)
        _atomic(p / "spec.json", lambda tmp: Path(tmp).write_text(json.dumps(
            {**traj.specs(), "label": traj.label(), "device": self.device.type,
             "code": code_version(TRAJECTORY_CODE)}, indent=1)))
        tr = self._trainer(traj)
        resume = self._resume_point(p)
        if resume is not None:
            tr.load_state(resume)
            print(f"[bnlib] {traj.label()}: resuming at step {tr.step}", file=sys.stderr)
        wanted = {*default_checkpoints(traj.train), *checkpoints}

        def on_step(t: train.Trainer) -> None:
            if t.step in wanted:
                write_arrays(self._ckpt(traj, t.step), t.state(records=False))
            if t.step % self.resume_every == 0 and t.step < traj.train.num_steps:
                write_arrays(p / f"resume-{t.step:08d}.npz", t.state())
                for old in sorted(p.glob("resume-*.npz"))[:-2]:  # a kill mid-write leaves the previous one
                    _remove(old)

        if tr.step == 0 and 0 in wanted:
            write_arrays(self._ckpt(traj, 0), tr.state(records=False))
        with train_threads(self.device):
            tr.run(traj.train.num_steps, on_step=on_step, progress=self.progress, desc=traj.label())
        if tr.diverged:  # the last state reached is the last probe-able one
            write_arrays(self._ckpt(traj, tr.step), tr.state(records=False))
        hist = tr.history()
        write_arrays(p / "history.npz", hist.to_arrays())
        for old in p.glob("resume-*.npz"):
            _remove(old)
        self.trained.append(self.key(traj))
        self._mark_used(traj, trained=True)
        return hist

    @staticmethod
    def _resume_point(p: Path) -> Arrays | None:
        """The newest intact resume point (one whose write a kill interrupted is skipped)."""
        for f in sorted(p.glob("resume-*.npz"), reverse=True):
            arrays = read_arrays(f)
            if arrays is not None:
                return arrays
        return None

    def _ckpt(self, traj: Trajectory, step: int) -> Path:
        return self.path(traj) / "ckpt" / f"{step:08d}.npz"

    def _mark_used(self, traj: Trajectory, *, trained: bool = False) -> None:
        USED[self.key(traj)] = USED.get(self.key(traj), False) or trained
        f = self.path(traj) / "used.json"
        with _locked(self.path(traj) / ".used.lock"):
            used = json.loads(f.read_text()) if f.exists() else {"trained_by": [], "used_by": []}
            field = "trained_by" if trained else "used_by"
            if self.chapter and self.chapter not in used[field]:
                used[field].append(self.chapter)
                _atomic(f, lambda tmp: Path(tmp).write_text(json.dumps(used)))

    # -- checkpoints and probes

    def checkpoint_steps(self, traj: Trajectory) -> list[int]:
        return sorted(int(f.stem) for f in (self.path(traj) / "ckpt").glob("*.npz"))

    def states(self, traj: Trajectory, steps: tuple[int, ...]) -> Iterator[train.Trainer]:
        """A trainer at each of ``steps`` (ascending), from its checkpoint or replayed from the
        nearest earlier one; replayed steps are saved as checkpoints for next time."""
        hist = self.history(traj, checkpoints=tuple(steps))
        last = hist.steps_done
        bad = [s for s in steps if not 0 <= s <= last]
        if bad:
            raise ValueError(f"Cannot probe {traj.label()} at steps {bad}: it has steps 0..{last}")
        tr: train.Trainer | None = None
        for s in sorted(steps):
            arrays = read_arrays(self._ckpt(traj, s))
            if arrays is not None:
                tr = self._trainer(traj)
                tr.load_state(arrays)
            else:
                with _locked(self.path(traj) / ".lock"):
                    tr = self._replay(traj, tr, s)
            yield tr

    def _replay(self, traj: Trajectory, tr: train.Trainer | None, step: int) -> train.Trainer:
        have = [c for c in self.checkpoint_steps(traj) if c <= step]
        if tr is None or tr.step > step or (have and have[-1] > tr.step):
            tr = self._trainer(traj)
            arrays = read_arrays(self._ckpt(traj, have[-1])) if have else None
            if arrays is not None:
                tr.load_state(arrays)
        with train_threads(self.device):
            tr.run(step, progress=False)
        write_arrays(self._ckpt(traj, step), tr.state(records=False))
        return tr

    def probe(self, traj: Trajectory, probe: Any, steps: tuple[int, ...] | list[int]) -> Arrays:
        """``probe.measure(ctx)`` at each of ``steps`` of ``traj``: ``{"step": (K,), key: (K, ...)}``,
        cached; a changed probe parameter re-probes from the checkpoints, never retrains."""
        steps = tuple(sorted({int(s) for s in steps}))
        meta = probe_meta(traj, probe, steps, self.device.type)
        path = self._probe_path(traj, meta)
        cached = read_arrays(path)
        if cached is not None:
            self._mark_used(traj)
            return cached
        with train.precision("float32", self.device):  # probes compare small differences: never TF32
            rows = [probe.measure(tr.context()) for tr in self.states(traj, steps)]
        out = {"step": np.array(steps)}
        if rows:
            out.update({k: np.stack([np.asarray(r[k]) for r in rows]) for k in rows[0]})
        write_arrays(path, out)
        _atomic(path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(
            {**meta, "chapter": self.chapter}, default=str)))
        return out

    def _probe_path(self, traj: Trajectory, meta: dict) -> Path:
        return self.root / "probe" / self.key(traj) / f"{_hash(meta)}.npz"

    def probe_cached(self, traj: Trajectory, probe: Any, steps: tuple[int, ...] | list[int]) -> bool:
        """Whether ``probe`` at ``steps`` of ``traj`` is in the cache (its checksum is checked on loading)."""
        steps = tuple(sorted({int(s) for s in steps}))
        path = self._probe_path(traj, probe_meta(traj, probe, steps, self.device.type))
        return path.exists() and Path(f"{path}.sha256").exists()

    def model_at(self, traj: Trajectory, step: int | None = None) -> torch.nn.Module:
        """The network of ``traj`` at ``step`` (default: the end of training)."""
        step = self.history(traj).steps_done if step is None else step
        return next(self.states(traj, (step,))).model

    # -- sweeps

    def sweep(self, data_spec: DataSpec, model: ModelSpec, cfg: TrainConfig, *, seeds: list[int] | tuple,
              checkpoints: tuple[int, ...] = (), **vary: list) -> Runs:
        """Every combination of the ``vary`` values (fields of any of the three specs, e.g.
        ``norm=["none", "bn"], lr=[0.1, 0.5]``) and ``seeds``, trained or loaded now.

        Returns ``Runs`` keyed by tuples of the varied values in the order given, then the seed.
        """
        owners = {name: i for i, spec in enumerate((data_spec, model, cfg)) for name in _names(spec)}
        unknown = [k for k in vary if k not in owners]
        if unknown:
            raise ValueError(f"sweep cannot vary {unknown}: not a field of DataSpec, ModelSpec or "
                             f"TrainConfig")
        trajs = {}
        for combo in itertools.product(*vary.values(), seeds):
            specs = [data_spec, model, cfg]
            for name, value in zip(vary, combo):
                specs[owners[name]] = replace(specs[owners[name]], **{name: value})
            trajs[combo] = Trajectory(*specs, seed=combo[-1])
        return Runs(self, trajs, checkpoints)


def store(cfg: Any, **kw: Any) -> Store:
    """The store a chapter's notebook uses: the default root, the device of ``cfg.device``,
    and the chapter named after ``cfg``'s module (recorded as the user of what it asks for)."""
    from . import device

    return Store(chapter=type(cfg).__module__.rsplit(".", 1)[-1], device=device(getattr(cfg, "device", "auto")),
                 **kw)


def _histories(store: Store, trajs: dict[tuple, Trajectory], checkpoints: tuple[int, ...]) -> dict:
    """Every trajectory's History, in ``trajs``' order; one another process is training now is
    left for later, so chapters run side by side share the training instead of waiting."""
    got = {k: store.history(t, checkpoints=checkpoints, wait=False) for k, t in trajs.items()}
    return {k: h if h is not None else store.history(trajs[k], checkpoints=checkpoints) for k, h in got.items()}


# ---------------------------------------------------------------- local parallel training

TRAIN_PROCS_ENV = "BNLIB_TRAIN_PROCS"
# Worker pools by size, kept for the process's life: a chapter's sweeps pay the workers' start-up
# (spawned processes import torch: 3-7 s measured on 2 busy cores) once. A worker starts when
# first needed.
_POOLS: dict[int, ProcessPoolExecutor] = {}


def train_processes() -> int:
    """How many one-thread worker processes may train a sweep on the CPU: ``$BNLIB_TRAIN_PROCS``,
    else this process's torch threads (one under ``bnlib book --jobs 2``, whose chapters already
    share the cores; the machine's cores for a chapter run alone) where workers can start safely
    (``spawn_is_safe``), else one."""
    raw = os.environ.get(TRAIN_PROCS_ENV, "").strip()
    if not raw:
        return torch.get_num_threads() if spawn_is_safe() else 1
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"${TRAIN_PROCS_ENV} must be a whole number of processes >= 1; got {raw!r}")
    return int(raw)


def spawn_is_safe() -> bool:
    """Whether spawned workers may start from this process: they re-import ``__main__``, which is
    harmless in a notebook kernel and under ``python -m`` but re-runs a plain script's top level
    (a script that sets ``$BNLIB_TRAIN_PROCS`` needs the ``if __name__ == "__main__":`` guard)."""
    main = sys.modules.get("__main__")
    return getattr(main, "__file__", None) is None or getattr(main, "__spec__", None) is not None


def unfinished(store: Store, trajs: list[Trajectory]) -> list[Trajectory]:
    """The trajectories of ``trajs`` the store has not finished, each once."""
    return list({store.key(t): t for t in trajs if store.finished(t) is None}.values())


def train_in_processes(store: Store, trajs: list[Trajectory], checkpoints: tuple[int, ...] = (),
                       processes: int = 2) -> list[Trajectory]:
    """Train ``trajs`` in up to ``processes`` one-thread worker processes
    (``batched.map_in_processes``), each through the store exactly as a chapter would (its lock,
    checkpoints and resume points). Training here also runs at one thread (``train_threads``) and
    the data's standardisation does not depend on the thread count, so the numbers are those of
    training here, bit for bit. One that is done, or that another process is training, is
    skipped (the caller loads it, or waits for it). The ones trained count as trained by this
    process (``USED``, ``store.trained``); returns them."""
    print(f"[bnlib] training {len(trajs)} trajectories in {min(processes, len(trajs))} one-thread processes",
          file=sys.stderr)
    worker = Store(store.root, chapter=store.chapter, device=store.device, resume_every=store.resume_every,
                   progress=False)
    if processes not in _POOLS:
        _POOLS[processes] = batched.single_threaded_pool(processes)
    task = partial(_train_in_worker, worker, checkpoints=tuple(checkpoints))
    try:
        mine = batched.map_in_processes(task, trajs, pool=_POOLS[processes])
    except BrokenProcessPool:  # a worker died (killed, out of memory): the next sweep starts new ones
        _POOLS.pop(processes).shutdown(wait=False)
        raise
    trained = [t for t, m in zip(trajs, mine, strict=True) if m]
    for t in trained:
        USED[store.key(t)] = True
        store.trained.append(store.key(t))
    return trained


def _train_side_by_side(store: Store, trajs: list[Trajectory], checkpoints: tuple[int, ...]) -> None:
    """A CPU sweep's unfinished trajectories, when there are two or more and ``train_processes()``
    allows more than one process, trained in worker processes; else nothing (the sweep trains
    them one at a time in this process)."""
    procs = train_processes()
    todo = unfinished(store, trajs) if procs > 1 else []
    if len(todo) > 1:
        train_in_processes(store, todo, checkpoints, procs)


def _train_in_worker(store: Store, traj: Trajectory, checkpoints: tuple[int, ...]) -> bool:
    """In a worker: train ``traj`` into ``store`` unless it is done or another process holds its
    lock; whether this call trained it."""
    t0 = time.perf_counter()
    store.history(traj, checkpoints=checkpoints, wait=False)
    if store.key(traj) in store.trained:
        print(f"[bnlib] trained {traj.label()} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return store.key(traj) in store.trained


def _names(spec: Any) -> list[str]:
    return [f.name for f in fields(spec)]


class Runs(dict):
    """Trajectories of a sweep, keyed by (varied values..., seed); ``.hist`` holds their
    Histories, ``probe`` measures them all from the store."""

    def __init__(self, store: Store, trajs: dict[tuple, Trajectory], checkpoints: tuple[int, ...] = (),
                 hist: dict[tuple, History] | None = None):
        super().__init__(trajs)
        self.store = store
        t0 = time.perf_counter()
        if hist is None and scaleout.enabled():  # every untrained one at once, as Ray tasks
            scaleout.train(store, list(trajs.values()), checkpoints)
        elif hist is None and store.device.type == "cpu":  # side by side in one-thread processes
            _train_side_by_side(store, list(trajs.values()), checkpoints)
        self.hist = hist if hist is not None else _histories(store, trajs, checkpoints)
        self.wall_time_s = time.perf_counter() - t0

    def probe(self, probe: Any, steps: Callable[[History], list[int]] | list[int]) -> dict[tuple, Arrays]:
        """``probe`` on every trajectory at ``steps`` (a list, or a function of its History)."""
        at = {k: steps(self.hist[k]) if callable(steps) else steps for k in self}
        if scaleout.enabled():  # every uncached one at once, as Ray tasks
            scaleout.probe(self.store, [(t, probe, at[k]) for k, t in self.items()])
        return {k: self.store.probe(t, probe, at[k]) for k, t in self.items()}

    def where(self, **values: Any) -> Runs:
        """The sub-sweep whose trajectories have these spec values (e.g. ``norm="bn"``)."""
        keep = {k: t for k, t in self.items()
                if all(_value(t, n) == v for n, v in values.items())}
        return Runs(self.store, keep, hist={k: self.hist[k] for k in keep})


def _value(traj: Trajectory, name: str) -> Any:
    if name == "seed":  # the trajectory's seed, not DataSpec.seed (the linear task's)
        return traj.seed
    for spec in (traj.data, traj.model, traj.train):
        if name in _names(spec):
            return getattr(spec, name)
    return traj.seed if name == "seed" else None


# ---------------------------------------------------------------- listing and pruning

def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def listing(root: str | os.PathLike | None = None) -> list[dict]:
    """One row per stored trajectory: label, steps, checkpoints, probes, size, chapters, state."""
    rows = []
    current = code_version(TRAJECTORY_CODE)
    for p in sorted((runs_root(root) / "traj").glob("*")):
        spec, used = _read_json(p / "spec.json"), _read_json(p / "used.json")
        probes = runs_root(root) / "probe" / p.name
        done = (p / "history.npz").exists()
        steps = spec.get("train", {}).get("num_steps", "?")
        rows.append({"key": p.name, "label": spec.get("label", "?"), "steps": steps,
                     "state": "done" if done else ("partial" if any(p.glob("resume-*.npz")) else "empty"),
                     "checkpoints": len(list((p / "ckpt").glob("*.npz"))),
                     "probes": len(list(probes.glob("*.npz"))) if probes.exists() else 0,
                     "bytes": _size(p) + (_size(probes) if probes.exists() else 0),
                     "trained_by": used.get("trained_by", []), "used_by": used.get("used_by", []),
                     "current": spec.get("code") == current})
    return rows


def format_listing(rows: list[dict]) -> str:
    """The listing as a table a person reads, with the total size."""
    lines = [f"{'key':<16}  {'trajectory':<52} {'state':<7} {'ckpt':>4} {'probes':>6} {'size':>9}  "
             "trained by -> used by"]
    for r in rows:
        stale = "" if r["current"] else "  [stale code: --prune removes it]"
        lines.append(f"{r['key']:<16}  {r['label'][:52]:<52} {r['state']:<7} {r['checkpoints']:>4} "
                     f"{r['probes']:>6} {r['bytes'] / 2**20:>7.1f}MB  {','.join(r['trained_by']) or '-'} -> "
                     f"{','.join(r['used_by']) or '-'}{stale}")
    total = sum(r["bytes"] for r in rows)
    lines.append(f"{len(rows)} trajectories, {total / 2**20:.1f} MB")
    return "\n".join(lines)


def prune(root: str | os.PathLike | None = None) -> list[Path]:
    """Remove what no chapter of the current code can reach: trajectories trained by other
    code (their key can never be asked for again), probe results of other probe code or of
    removed trajectories, and leftover temporary files. Returns what was removed."""
    import shutil

    base, removed = runs_root(root), []
    current = code_version(TRAJECTORY_CODE)
    for p in sorted((base / "traj").glob("*")):
        if _read_json(p / "spec.json").get("code") != current:
            shutil.rmtree(p)
            removed.append(p)
    for p in sorted((base / "probe").glob("*")):
        if not (base / "traj" / p.name).exists():
            shutil.rmtree(p)
            removed.append(p)
            continue
        for meta in p.glob("*.json"):
            m = _read_json(meta)
            mod = m.get("probe", "").rsplit(".", 1)[0].removeprefix("bnlib.").replace(".", "/")
            if m.get("code") != _module_code(mod):
                for f in (meta, meta.with_suffix(".npz"), Path(f"{meta.with_suffix('.npz')}.sha256")):
                    f.unlink(missing_ok=True)
                removed.append(meta.with_suffix(".npz"))
    for tmp in base.rglob(".*.tmp"):
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed
