"""A sweep's trajectories trained side by side in one-thread worker processes (``$BNLIB_TRAIN_PROCS``):
the same numbers as one at a time in this process, through the store's locks and resume points."""

import os
import subprocess
import sys
import types

import numpy as np
import pytest
import torch

from bnlib import batched, checkpoint, data, models, runs, train

CIFAR = data.DataSpec("cifar10-mini", train_size=256, test_size=64)
VGG = models.ModelSpec("vgg", depth=11, width=0.0625, norm="bn")
SGD = train.TrainConfig(lr=0.05, batch_size=32, num_steps=12, eval_every=4, record_every=3, record_size=16)
SEEDS = (0, 1, 2)


def sweep(root, procs: int, monkeypatch) -> runs.Runs:
    monkeypatch.setenv("BNLIB_TRAIN_PROCS", str(procs))
    return runs.Store(root, chapter="pool", progress=False).sweep(CIFAR, VGG, SGD, seeds=SEEDS, checkpoints=(5,))


def same_store(a: runs.Runs, b: runs.Runs) -> None:
    """Equal histories (wall times aside) and checkpoints, trajectory by trajectory."""
    for k, t in a.items():
        for name, v in a.hist[k].to_arrays().items():
            if "time" not in name:
                np.testing.assert_array_equal(v, b.hist[k].to_arrays()[name], err_msg=name)
        steps = a.store.checkpoint_steps(t)
        assert steps == b.store.checkpoint_steps(t) and 5 in steps
        for s in steps:
            mine, theirs = runs.read_arrays(a.store._ckpt(t, s)), runs.read_arrays(b.store._ckpt(t, s))
            assert mine.keys() == theirs.keys()
            # rng/torch is the process's global generator, which training never draws from (models
            # and noise have their own): it records the process's history, not the trajectory's
            differ = [n for n in mine if n not in ("meta", "rng/torch") and not np.array_equal(mine[n], theirs[n])]
            assert differ == [], (k, s)
            assert without_time(mine) == without_time(theirs)


def without_time(arrays: dict) -> dict:
    return {k: v for k, v in checkpoint.meta(arrays).items() if k != "train_time"}


def test_the_pool_trains_bit_identically_to_one_at_a_time_here(tmp_path, monkeypatch):
    runs.USED.clear()
    pooled = sweep(tmp_path / "pool", 2, monkeypatch)
    keys = [t.key() for t in pooled.values()]
    assert sorted(pooled.store.trained) == sorted(keys)
    assert all(runs.USED[k] for k in keys)
    assert all(r["trained_by"] == ["pool"] for r in runs.listing(tmp_path / "pool"))

    def no_pool(*args, **kwargs):
        raise AssertionError("one process must train in this process")

    monkeypatch.setattr(batched, "map_in_processes", no_pool)
    alone = sweep(tmp_path / "alone", 1, monkeypatch)
    assert sorted(alone.store.trained) == sorted(keys)
    same_store(pooled, alone)
    again = sweep(tmp_path / "pool", 2, monkeypatch)  # all done: loaded, nothing trained
    assert again.store.trained == []
    same_store(again, alone)


def test_a_partly_trained_store_resumes_and_a_locked_trajectory_is_left_to_its_owner(tmp_path, monkeypatch):
    ref = runs.Store(tmp_path / "ref", progress=False)
    s = runs.Store(tmp_path / "runs", chapter="pool", progress=False)
    done, resumed, locked, fresh = (runs.Trajectory(CIFAR, VGG, SGD, seed) for seed in (0, 1, 2, 3))
    s.history(done)
    tr = s._trainer(resumed)  # a kill after step 6 leaves this resume point
    with runs.train_threads(s.device):
        tr.run(6, progress=False)
    runs.write_arrays(s.path(resumed) / "resume-00000006.npz", tr.state())
    trajs = [done, resumed, locked, fresh]
    assert runs.unfinished(s, trajs + [fresh]) == [resumed, locked, fresh]
    with runs._locked(s.path(locked) / ".lock"):  # another process is training it
        trained = runs.train_in_processes(s, runs.unfinished(s, trajs), processes=2)
    assert trained == [resumed, fresh] and s.trained == [done.key(), resumed.key(), fresh.key()]
    assert min(s.checkpoint_steps(resumed)) > 6 and min(s.checkpoint_steps(fresh)) == 0  # resumed, not retrained
    assert s.finished(locked) is None
    monkeypatch.setenv("BNLIB_TRAIN_PROCS", "2")
    sweep_ = runs.Runs(s, {(t.seed,): t for t in trajs})  # one left: trained here
    assert s.trained[-1] == locked.key()
    for t in trajs:
        a, b = sweep_.hist[(t.seed,)].to_arrays(), ref.history(t).to_arrays()
        assert all(np.array_equal(v, b[k]) for k, v in a.items() if "time" not in k)


MNIST = data.DataSpec("mnist", train_size=10_000, test_size=500)  # large enough that its standardisation's
MLP = models.ModelSpec("mlp", norm="bn", sizes=(784, 100, 10))       # sums split by the thread count
ADAM = train.TrainConfig(optimizer="adam", lr=1e-3, batch_size=128, num_steps=10, eval_every=10, record_every=5)
ALONE = """
import sys, torch
from bnlib import data, models, runs, train
torch.set_num_threads(int(sys.argv[3]))
s = runs.Store(sys.argv[1], progress=False)
s.history(runs.Trajectory(data.{MNIST!r}, models.{MLP!r}, train.{ADAM!r}, seed=int(sys.argv[2])))
"""


@pytest.mark.parametrize("threads", [1, 2])
def test_the_pool_equals_training_in_a_process_at_any_thread_count(tmp_path, monkeypatch, threads):
    """A trajectory trained in a process at 1 or 2 threads equals the one-thread workers' (it
    failed at 2 threads while the data's standardisation was a float32 sum)."""
    for seed in (0, 1):
        subprocess.run([sys.executable, "-c", ALONE.format(MNIST=MNIST, MLP=MLP, ADAM=ADAM),
                        str(tmp_path / "alone"), str(seed), str(threads)], check=True, env=os.environ)
    monkeypatch.setenv("BNLIB_TRAIN_PROCS", "2")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        pooled = runs.Store(tmp_path / "pool", progress=False).sweep(MNIST, MLP, ADAM, seeds=[0, 1])
    finally:
        torch.set_num_threads(before)
    alone = runs.Store(tmp_path / "alone", progress=False)
    assert len(pooled.store.trained) == 2
    for t in pooled.values():
        a, b = pooled.store.finished(t).to_arrays(), alone.finished(t).to_arrays()
        assert all(np.array_equal(v, b[k]) for k, v in a.items() if "time" not in k)


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_a_bad_process_count_is_refused(value, monkeypatch):
    monkeypatch.setenv("BNLIB_TRAIN_PROCS", value)
    with pytest.raises(ValueError, match="BNLIB_TRAIN_PROCS"):
        runs.train_processes()


def test_a_plain_script_trains_in_its_own_process_unless_told_otherwise(monkeypatch):
    monkeypatch.delenv("BNLIB_TRAIN_PROCS", raising=False)
    script = types.ModuleType("__main__")
    script.__file__, script.__spec__ = "/somewhere/my_sweep.py", None  # python my_sweep.py
    monkeypatch.setitem(sys.modules, "__main__", script)
    assert not runs.spawn_is_safe() and runs.train_processes() == 1
    monkeypatch.setenv("BNLIB_TRAIN_PROCS", "2")  # the script says it has the guard
    assert runs.train_processes() == 2


def test_the_process_count_defaults_to_this_process_threads(monkeypatch):
    monkeypatch.delenv("BNLIB_TRAIN_PROCS", raising=False)
    monkeypatch.setattr(runs, "spawn_is_safe", lambda: True)  # a notebook kernel, python -m
    threads = torch.get_num_threads()
    try:
        for n in (1, 3):
            torch.set_num_threads(n)
            assert runs.train_processes() == n
    finally:
        torch.set_num_threads(threads)
    monkeypatch.setenv("BNLIB_TRAIN_PROCS", " 4 ")
    assert runs.train_processes() == 4
