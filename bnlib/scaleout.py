"""Independent trajectories on Ray: a sweep's untrained trajectories and its uncached probes run
as Ray tasks, the run store is the meeting point.

Ray is on when ``$BNLIB_RAY`` is set (``python -m bnlib book|run --ray [ADDRESS]`` sets it, so
the chapters' kernels inherit it): an address (``host:port``, ``ray://...``, ``auto``) of the
cluster to join. ``start`` (the CLI) starts a local cluster when no address is given and puts
its address in ``$BNLIB_RAY``, so every kernel joins that one cluster. A task trains (or
probes) into the store with the store's lock, exactly as a chapter would in-process; the
chapter then loads the results. A task that finds its trajectory done loads it. Without
``$BNLIB_RAY`` nothing here runs.

On CUDA each task asks for ``$BNLIB_RAY_GPUS`` of a GPU (default 0.25: four trajectories share
one GPU); on the CPU, one core. A task's probes use the kernel's torch thread count, so they
sum in the same order and give the same numbers as in-process; training always uses one CPU
thread (``runs.CPU_TRAIN_THREADS``). Every node needs bnlib (the same code: it is in every
key), the data under ``$BNLIB_DATA`` and the run store at the same path (a shared file system).
"""

from __future__ import annotations

import os
from typing import Any

import torch

ENV, GPUS_ENV = "BNLIB_RAY", "BNLIB_RAY_GPUS"
DEFAULT_GPU_SHARE = 0.25


def enabled() -> bool:
    return bool(os.environ.get(ENV))


def start(address: str | None = None, *, num_cpus: int | None = None) -> str:
    """Start a local Ray cluster (``address`` None or "local") or name an existing one, and set
    ``$BNLIB_RAY`` to its address for this process and the kernels it starts. Returns it."""
    if address in (None, "", "local"):
        import ray

        info = ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                        runtime_env={"env_vars": _forwarded_env()})
        address = info.address_info["gcs_address"]
    os.environ[ENV] = address
    return address


def _forwarded_env() -> dict[str, str]:
    """The variables a worker of a local cluster needs from here (its code and data)."""
    return {k: os.environ[k] for k in ("PYTHONPATH", "BNLIB_DATA", "BNLIB_DATA_VERIFY") if k in os.environ}


def _connect() -> None:
    import ray

    if not ray.is_initialized():
        ray.init(address=os.environ[ENV], log_to_driver=False)


def gpu_share() -> float:
    """The fraction of a GPU one task asks for (``$BNLIB_RAY_GPUS``)."""
    share = float(os.environ.get(GPUS_ENV, DEFAULT_GPU_SHARE))
    if not 0 < share <= 1:
        raise ValueError(f"${GPUS_ENV} must be a fraction in (0, 1]; got {share}")
    return share


def _options(device: torch.device) -> dict[str, Any]:
    return {"num_gpus": gpu_share(), "num_cpus": 1} if device.type == "cuda" else {"num_cpus": 1}


def _store_args(store: Any) -> dict[str, Any]:
    return {"root": str(store.root.resolve()), "chapter": store.chapter, "device": str(store.device),
            "resume_every": store.resume_every}


def _run(tasks: list[tuple], store: Any) -> list[Any]:
    """Run ``(fn, *args)`` tasks on the cluster with the store's resources; their results in order."""
    import ray

    _connect()
    remote = {fn: ray.remote(fn).options(**_options(store.device)) for fn, *_ in tasks}
    return ray.get([remote[fn].remote(*args) for fn, *args in tasks])


def _open(store_args: dict[str, Any], threads: int) -> Any:
    from . import runs

    torch.set_num_threads(threads)
    return runs.Store(store_args.pop("root"), progress=False, **store_args)


def _train_task(store_args: dict[str, Any], threads: int, traj: Any, checkpoints: tuple[int, ...]) -> bool:
    """Train ``traj`` into the store (or find it done); whether this task trained it."""
    store = _open(dict(store_args), threads)
    store.history(traj, checkpoints=checkpoints)
    return bool(store.trained)


def _probe_task(store_args: dict[str, Any], threads: int, traj: Any, probe: Any, steps: tuple[int, ...]) -> bool:
    """Probe ``traj`` at ``steps`` into the store's cache; whether this task trained ``traj``."""
    store = _open(dict(store_args), threads)
    store.probe(traj, probe, steps)
    return bool(store.trained)


def train(store: Any, trajs: list[Any], checkpoints: tuple[int, ...] = ()) -> int:
    """Train every unfinished trajectory of ``trajs`` as one Ray task each, all at once; the
    ones the tasks trained count as trained by this process (``runs.USED``). Returns how many."""
    todo = list({store.key(t): t for t in trajs if not store.finished(t)}.values())
    args, threads = _store_args(store), torch.get_num_threads()
    done = _run([(_train_task, args, threads, t, tuple(checkpoints)) for t in todo], store)
    _count_trained(store, [t for t, trained in zip(todo, done) if trained])
    return len(todo)


def probe(store: Any, units: list[tuple[Any, Any, list[int]]]) -> int:
    """Run every uncached ``(trajectory, probe, steps)`` unit as one Ray task each, all at once.
    Returns how many ran."""
    todo = [(t, p, tuple(sorted({int(s) for s in steps}))) for t, p, steps in units
            if not store.probe_cached(t, p, steps)]
    args, threads = _store_args(store), torch.get_num_threads()
    done = _run([(_probe_task, args, threads, t, p, s) for t, p, s in todo], store)
    _count_trained(store, [t for (t, _, _), trained in zip(todo, done) if trained])
    return len(todo)


def _count_trained(store: Any, trajs: list[Any]) -> None:
    from . import runs

    for t in trajs:
        runs.USED[store.key(t)] = True
        store.trained.append(store.key(t))
