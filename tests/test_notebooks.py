"""Every chapter of the book runs end to end under the smoke profile and glues its header."""

import json

import pytest

from bnlib import book, runs


def glued_keys(nb: dict) -> set[str]:
    keys = set()
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            keys.update(out.get("metadata", {}).get("scrapbook", {}).get("name", "").split() or [])
    return keys


@pytest.mark.parametrize("chapter", book.toc_chapters())
def test_chapter_runs_under_smoke(chapter, tmp_path):
    out = book.execute(chapter, profile="smoke", out=tmp_path / f"{chapter}.ipynb", progress=False)
    nb = json.loads(out.read_text())
    errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    keys = glued_keys(nb)
    assert {"profile", "cfg_seed"} <= keys
    assert any("_verdict" in k for k in keys), "a chapter ends with a glued claims table"


def test_first_chapter_writes_its_runs(tmp_path, monkeypatch):
    runs_dir = tmp_path / "store"
    monkeypatch.setenv("BNLIB_RUNS", str(runs_dir))
    book.execute("training", profile="smoke", out=tmp_path / "t.ipynb", progress=False)
    rows = runs.listing(runs_dir)
    assert len(rows) == 4  # {none, bn} x {lr, lr_large} x 1 seed
    assert all(r["state"] == "done" and r["trained_by"] == ["training"] for r in rows)
