"""The GPU check (run by ``benchmarks/device_check.sh``; its header has the output format).

Four measurements, each with the book's own code (``runs.Store``, ``train.Trainer``,
``scaleout``, the probes ``plan`` lists): training throughput against a DataLoader loop, four
trajectories sharing the device through Ray, each probe's cost in training steps, and a short
trajectory with every probe attached. Data: ``$BNLIB_DATA``'s files where present, else
synthetic files of the same shapes (uniform random images and labels, written to a temporary
folder, checksums off): the check measures speed, not learning.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bnlib import data, models, plan, runs, scaleout, train  # noqa: E402
from bnlib.models import ModelSpec  # noqa: E402

SHAPES = {"cifar10": ((50_000, 32, 32, 3), 10_000), "mnist": ((60_000, 28, 28), 10_000)}
# Probe settings capped on a GPU so that the check fits its 8 minutes (printed beside the cost).
CAPS = {"size": 2000, "points": 11, "num_samples": 2000, "directions": 4, "probes": 4, "steps": 20}
BUDGET_S = 330
TEMPORARY: list[str] = []  # folders this check made, removed at its end


def scratch(prefix: str) -> str:
    TEMPORARY.append(tempfile.mkdtemp(prefix=prefix))
    return TEMPORARY[-1]  # the probes stop here (the script's whole budget is 8 minutes)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def ensure_data(names: set[str]) -> str:
    """``$BNLIB_DATA`` if it has every set, else a temporary folder of synthetic ones; returns which."""
    root = data.data_root()
    if all((root / f"{n}.npz").exists() for n in names):
        return f"real ({root})"
    tmp = Path(scratch("bnlib-synthetic-"))
    rng = np.random.default_rng(0)
    for n in names:
        base = n.removesuffix("-mini")
        (shape, n_test), mini = SHAPES[base], n.endswith("-mini")
        n_train = 5000 if mini else shape[0]
        n_test = 1000 if mini else n_test
        images = {s: rng.integers(0, 256, (k, *shape[1:]), dtype=np.uint8) for s, k in (("train", n_train),
                                                                                     ("test", n_test))}
        np.savez(tmp / f"{n}.npz", x_train=images["train"], y_train=rng.integers(0, 10, n_train),
                 x_test=images["test"], y_test=rng.integers(0, 10, n_test))
    os.environ.update(BNLIB_DATA=str(tmp), BNLIB_DATA_VERIFY="0")
    return f"synthetic ({tmp})"


def trainer_throughput(spec: data.DataSpec, model: ModelSpec, cfg: train.TrainConfig, device, steps: int) -> float:
    """Images/s of ``train.Trainer`` (device-resident data), after a warm-up of 3 steps."""
    tr = train.Trainer(models.build(model, 0).to(device), data.get(spec, device), cfg)
    tr.run(3, progress=False)
    sync(device)
    t0 = time.perf_counter()
    tr.run(3 + steps, progress=False)
    sync(device)
    return steps * cfg.batch_size / (time.perf_counter() - t0)


def dataloader_throughput(spec: data.DataSpec, model: ModelSpec, cfg: train.TrainConfig, device, steps: int,
                          workers: int) -> float:
    """Images/s of the conventional loop: a shuffling DataLoader over host tensors (pinned on
    CUDA), a host-to-device copy per batch, ``loss.item()`` every step."""
    d = data.get(spec, "cpu")
    loader = DataLoader(TensorDataset(d.X_train, d.y_train), batch_size=cfg.batch_size, shuffle=True,
                        drop_last=True, num_workers=workers, pin_memory=device.type == "cuda",
                        persistent_workers=workers > 0)
    net = models.build(model, 0).to(device).train()
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr)
    it, t0 = iter(loader), None
    with train.precision(cfg.precision, device):  # the same arithmetic as the Trainer's
        for i in range(3 + steps):
            t0 = _loader_step(net, opt, it, device, i, t0)
    sync(device)
    return steps * cfg.batch_size / (time.perf_counter() - t0)


def _loader_step(net, opt, it, device, i: int, t0: float | None) -> float | None:
    """One step of the conventional loop (the clock starts after 3 warm-up steps)."""
    if i == 3:
        sync(device)
        t0 = time.perf_counter()
    X, y = next(it)
    loss = torch.nn.functional.cross_entropy(net(X.to(device, non_blocking=True)), y.to(device, non_blocking=True))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    loss.item()
    return t0


def ray_sharing(traj: runs.Trajectory, device, n: int) -> tuple[float, float]:
    """(images/s over the wall time from submission, images/s over the tasks' own training time)
    of ``n`` seeds of ``traj`` trained at once as Ray tasks, into a temporary store."""
    import ray

    store = runs.Store(scratch("bnlib-ray-"), chapter="device_check", device=device, progress=False)
    trajs = [replace(traj, seed=s) for s in range(n)]
    scaleout.start(num_cpus=max(n, os.cpu_count() or 1))
    try:
        t0 = time.perf_counter()
        scaleout.train(store, trajs)
        wall = time.perf_counter() - t0
    finally:
        ray.shutdown()
    images = n * traj.train.num_steps * traj.train.batch_size
    busy = max(float(store.finished(t).time_s[-1]) for t in trajs)
    return images / wall, images / busy


def capped(probe, device) -> tuple[object, str]:
    """``probe`` with its big settings capped on a GPU (see ``CAPS``), and what was capped."""
    if device.type != "cuda":
        return probe, ""
    names = {f.name for f in fields(probe)}
    cut = {k: v for k, v in CAPS.items() if k in names and isinstance(getattr(probe, k), int)
           and getattr(probe, k) > v}
    return replace(probe, **cut), ", ".join(f"{k} {getattr(probe, k)}->{v}" for k, v in cut.items())


def short(traj: runs.Trajectory, steps: int) -> runs.Trajectory:
    t = traj.train
    return replace(traj, train=replace(t, num_steps=steps, eval_every=steps, record_every=min(t.record_every, steps)))


def probe_costs(profile: str, device, steps: int, t_start: float, limit: int | None = None) -> None:
    """Every probe class the book uses under ``profile``, on a ``steps``-step version of the first
    trajectory that uses it: its cost per probed step in training steps of that trajectory."""
    store = runs.Store(scratch("bnlib-probes-"), chapter="device_check", device=device, progress=False)
    first: dict[str, tuple] = {}
    for p in plan.plan(profile):
        for probe, _, _ in p.probes:
            first.setdefault(type(probe).__name__, (p.traj, probe))
    per_step: dict[str, float] = {}
    print(f"[4] short {profile}-profile trajectories ({steps} steps) with every probe attached:")
    print(f"    {'probe':<20} {'trajectory':<44} {'ms/step':>9} {'x train step':>12}  capped")
    for name, (traj, probe) in sorted(first.items())[:limit]:
        if time.perf_counter() - t_start > BUDGET_S:
            print(f"    {name:<20} skipped: the check's time budget is spent")
            continue
        traj = short(traj, steps)
        if store.key(traj) not in per_step:  # the trainer's own time per step (no set-up, no records)
            per_step[store.key(traj)] = float(np.diff(store.history(traj).time_s).mean())
        probe, cut = capped(probe, device)
        sync(device)
        t0 = time.perf_counter()
        store.probe(traj, probe, [steps])
        sync(device)
        took = time.perf_counter() - t0
        print(f"    {name:<20} {traj.label()[:44]:<44} {took * 1e3:9.1f} {took / per_step[store.key(traj)]:12.1f}  "
              f"{cut or '-'}")


def main() -> None:
    try:
        check()
    finally:
        for folder in TEMPORARY:
            shutil.rmtree(folder, ignore_errors=True)


def check() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="CPU settings: smoke profile, a few steps")
    ap.add_argument("--steps", type=int, default=None, help="timed training steps (default 200 GPU, 5 tiny)")
    ap.add_argument("--probes", type=int, default=None, help="only the first N probe classes (default: all)")
    args = ap.parse_args()
    t_start = time.perf_counter()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    profile, steps = ("smoke", args.steps or 5) if args.tiny else ("paper", args.steps or 200)
    model = ModelSpec("vgg", depth=16, width=1.0 / 16 if args.tiny else 1.0, norm="bn")
    spec = data.DataSpec("cifar10-mini" if args.tiny else "cifar10")
    cfg = train.TrainConfig(lr=0.1, batch_size=32 if args.tiny else 128, num_steps=steps, eval_every=10**9,
                            record_every=10**9)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"# device_check: {name}, torch {torch.__version__}, profile {profile}, "
          f"data {ensure_data({spec.name} | {'mnist-mini' if args.tiny else 'mnist'})}")
    ours = trainer_throughput(spec, model, cfg, device, steps)
    theirs = dataloader_throughput(spec, model, cfg, device, steps, workers=0 if args.tiny else 4)
    print(f"[1] training throughput, {model.label()} batch {cfg.batch_size}, {steps} timed steps:")
    print(f"    bnlib Trainer (data on the device): {ours:10.1f} images/s")
    print(f"    DataLoader loop:                    {theirs:10.1f} images/s   ratio {ours / theirs:.2f}x")
    traj = runs.Trajectory(spec, model, cfg, seed=0)
    wall, busy = ray_sharing(traj, device, 4)
    print(f"[2] 4 trajectories through Ray ({scaleout.gpu_share():g} GPU each on CUDA, 1 CPU each here):")
    print(f"    aggregate: {wall:10.1f} images/s over the wall time (worker start included), "
          f"{busy:10.1f} images/s over training time   (1 alone: {ours:.1f})")
    print("[3] probe cost per probed step, in training steps of the same trajectory (table below)")
    probe_costs(profile, device, 4 if args.tiny else 20, t_start, args.probes)
    print(f"# done in {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
