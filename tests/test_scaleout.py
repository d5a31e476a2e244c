"""Sweeps on Ray give the same book: chapters executed with ``$BNLIB_RAY`` (a local cluster) glue the
same verdicts and values as in-process, and fill the store with the same trajectories and probes.

The two cheapest chapters with sweeps and sweep probes (``training``, ``ics_noise``) under smoke,
each way into a fresh store (the whole smoke book twice would not fit the suite's budget)."""

import json
import os

import pytest

from bnlib import book, plan, runs, scaleout, summary

pytest.importorskip("ray")

CHAPTERS = ("training", "ics_noise")
# Glued values that measure the machine, not the experiment: they differ between any two executions.
TIMINGS = ("run_time_min", "timing", "_s_per_step", "wall", "seconds", "env_")


def _execute(out, runs_dir):
    os.environ["BNLIB_RUNS"] = str(runs_dir)
    for ch in CHAPTERS:
        book.execute(ch, profile="smoke", out=out / f"{ch}.ipynb", progress=False, force=True)


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """{"local" | "ray": folder with the executed chapters and their store ``_runs``}."""
    saved = {k: os.environ.get(k) for k in ("BNLIB_RUNS", scaleout.ENV)}
    dirs = {mode: tmp_path_factory.mktemp(mode) for mode in ("local", "ray")}
    try:
        _execute(dirs["local"], dirs["local"] / "_runs")
        import ray

        scaleout.start(num_cpus=2)
        try:
            _execute(dirs["ray"], dirs["ray"] / "_runs")
        finally:
            ray.shutdown()
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    return dirs


def _experiment_values(nb) -> dict:
    return {k: v for k, v in summary.glued(nb).items() if not any(t in k for t in TIMINGS)}


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_same_verdicts_and_values_with_ray(executed, chapter):
    local = _experiment_values(executed["local"] / f"{chapter}.ipynb")
    ray_ = _experiment_values(executed["ray"] / f"{chapter}.ipynb")
    assert any(k.endswith("_verdict") for k in local)
    assert local == ray_, {k: (local.get(k), ray_.get(k)) for k in local.keys() | ray_.keys()
                           if local.get(k) != ray_.get(k)}


def test_ray_tasks_trained_what_the_chapters_report(executed):
    """The execution page's counts: the Ray run reports its trajectories as trained, as in-process."""
    for ch in CHAPTERS:
        got = [summary.glued(executed[m] / f"{ch}.ipynb").get("trajectories_trained") for m in ("local", "ray")]
        assert got[0] == got[1] and got[0] not in (None, "0"), got


def _stored(runs_dir) -> tuple[set, set]:
    """(trajectory keys, (trajectory key, probe class, steps) of every cached probe) in a store."""
    trajs = {r["key"] for r in runs.listing(runs_dir) if r["state"] == "done"}
    probes = set()
    for meta in (runs_dir / "probe").glob("*/*.json"):
        m = json.loads(meta.read_text())
        probes.add((m["traj"], m["probe"].rsplit(".", 1)[-1], tuple(m["steps"])))
    return trajs, probes


def test_same_store_either_way_and_as_planned(executed):
    stores = {m: _stored(d / "_runs") for m, d in executed.items()}
    assert stores["local"] == stores["ray"] and stores["local"][0]
    differences = plan.differences(plan.plan("smoke", only=list(CHAPTERS)), executed["local"] / "_runs")
    assert not any(differences.values()), differences


def test_cli_rejects_a_bad_gpu_share_before_starting_anything(capsys, monkeypatch):
    from bnlib.__main__ import main

    monkeypatch.delenv(scaleout.ENV, raising=False)
    monkeypatch.setenv(scaleout.GPUS_ENV, "0.5")  # restored after the test (the CLI sets it)
    assert main(["run", "training", "--profile", "smoke", "--ray", "--ray-gpus", "2"]) == 2
    assert "fraction in (0, 1]" in capsys.readouterr().err
    assert not scaleout.enabled()
