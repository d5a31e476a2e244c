"""Shared fixtures: real data from $BNLIB_DATA (default ../shared/data), runs in a temp store."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("BNLIB_DATA", str((ROOT / ".." / "shared" / "data").resolve()))


@pytest.fixture(autouse=True)
def _isolated_runs(tmp_path, monkeypatch):
    """Every test gets its own run store, so cached results never leak between tests."""
    monkeypatch.setenv("BNLIB_RUNS", str(tmp_path / "runs"))
