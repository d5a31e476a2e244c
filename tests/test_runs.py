"""The run store: hash-keyed, atomic, served from cache, never pickled."""

import json

import numpy as np
import pytest

from bnlib import chapters, runs, train
from bnlib.chapters import training


def test_cached_computes_once_and_force_recomputes(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"curve": np.arange(5.0), "final": 1.5, "note": "ok"}

    cfg = {"lr": 0.1, "steps": 5}
    a = runs.cached("demo", cfg, compute, root=tmp_path)
    b = runs.cached("demo", cfg, compute, root=tmp_path)
    assert len(calls) == 1
    np.testing.assert_array_equal(a["curve"], b["curve"])
    assert b["final"] == 1.5 and b["note"] == "ok"
    runs.cached("demo", cfg, compute, root=tmp_path, force=True)
    runs.cached("demo", {**cfg, "lr": 0.2}, compute, root=tmp_path)
    assert len(calls) == 3


def test_store_layout_is_atomic_and_pickle_free(tmp_path):
    runs.cached("demo", {"a": 1}, lambda: {"x": np.ones(3)}, root=tmp_path)
    (folder,) = (tmp_path / "demo").iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["meta.json", "result.npz"]  # no temp files left
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["config"] == {"a": 1} and meta["code"] == runs.code_version(tuple(sorted(runs.CORE)))
    with np.load(folder / "result.npz", allow_pickle=False) as f:
        assert f["x"].tolist() == [1.0, 1.0, 1.0]


def test_failed_compute_leaves_no_result(tmp_path):
    def boom():
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        runs.cached("demo", {"a": 1}, boom, root=tmp_path)
    assert not (tmp_path / "demo").exists() or not any((tmp_path / "demo").rglob("meta.json"))


def test_hash_depends_on_config_values_not_key_order():
    assert runs.config_hash({"a": 1, "b": 2}) == runs.config_hash({"b": 2, "a": 1})
    assert runs.config_hash({"a": 1}) != runs.config_hash({"a": 2})


def test_hash_depends_on_the_named_code_only():
    base = runs.config_hash({"a": 1})
    assert runs.config_hash({"a": 1}, depends=("chapters/training",)) != base
    assert runs.config_hash({"a": 1}, depends=("train",)) == base  # already a core module


def test_chapter_rerun_with_unchanged_config_is_served_from_cache(monkeypatch):
    cfg = chapters.resolve("training", profile="smoke")
    first = training.run_one(cfg, "bn", cfg.lr, cfg.seed, progress=False)

    def no_training(*a, **k):
        raise AssertionError("training ran again although the config was unchanged")

    monkeypatch.setattr(train, "fit", no_training)
    again = training.run_one(cfg, "bn", cfg.lr, cfg.seed, progress=False)
    np.testing.assert_array_equal(first.train_loss, again.train_loss)
    with pytest.raises(AssertionError, match="training ran again"):
        training.run_one(cfg, "bn", cfg.lr / 2, cfg.seed, progress=False)  # a new config trains
