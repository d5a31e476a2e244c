"""Every chapter of the book runs end to end under the smoke profile, glues its header and its
claims; the answer and execution pages are built from them; the smoke book builds and every page
reads cleanly in a real browser (``bnlib.pagecheck``)."""

import json

import pytest

from bnlib import book, pagecheck, plan, runs, summary


def glued_keys(nb: dict) -> set[str]:
    keys = set()
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            keys.update(out.get("metadata", {}).get("scrapbook", {}).get("name", "").split() or [])
    return keys


def hidden_outputs(nb: dict) -> list[str]:
    """Plain-text values shown under a cell whose code is hidden: a reader sees a repr or a quoted
    string with nothing to explain it (usually a last line that returns what it glued)."""
    return [f"cell {i}: {''.join(o['data']['text/plain'])[:80]!r}"
            for i, c in enumerate(nb["cells"]) if "hide-input" in c.get("metadata", {}).get("tags", [])
            for o in c.get("outputs", []) if o.get("output_type") in ("execute_result", "display_data")
            and set(o.get("data", {})) == {"text/plain"} and "scrapbook" not in o.get("metadata", {})]


@pytest.fixture(scope="session")
def smoke_book(tmp_path_factory):
    """The whole book executed under smoke (one shared run store, as ``make book`` does) and built.
    Returns (root, {chapter: error or None}, jupyter-book's exit code)."""
    root = book.stage(tmp_path_factory.mktemp("smoke_book"))
    chapters_dir, errors = root / "book" / "chapters", {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BNLIB_RUNS", str(root / "_runs"))
        for ch in book.toc_chapters():
            try:
                book.execute(ch, profile="smoke", out=chapters_dir / f"{ch}.ipynb", progress=False)
                errors[ch] = None
            except Exception as e:  # noqa: BLE001 - reported by the chapter's own test
                errors[ch] = f"{type(e).__name__}: {e}"
        if not any(errors.values()):
            book.summarise(chapters_dir, root / "book" / "summary", progress=False)
            code = book.build(root, log=root / "build.log")
        else:
            code = None
    return root, errors, code


@pytest.mark.parametrize("chapter", book.toc_chapters())
def test_chapter_runs_under_smoke(chapter, smoke_book):
    root, errors, _ = smoke_book
    assert errors[chapter] is None, errors[chapter]
    nb = json.loads((root / "book" / "chapters" / f"{chapter}.ipynb").read_text())
    assert not [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    keys = glued_keys(nb)
    assert {"profile", "cfg_seed", "seeds", "run_time_min", "claims_json", "env_commit"} <= keys
    assert any("_verdict" in k for k in keys), "a chapter ends with a glued claims table"
    assert not hidden_outputs(nb), hidden_outputs(nb)
    pngs = [o for c in nb["cells"] for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert pngs, "the chapter's figures reach the executed notebook"


def test_answer_page_lists_every_claim(smoke_book):
    root, errors, _ = smoke_book
    assert not any(errors.values())
    df = summary.claims(root / "book" / "chapters", summary.QUESTIONS + summary.LATER)
    per_chapter = {ch: len(json.loads(summary.glued(root / "book" / "chapters" / f"{ch}.ipynb")["claims_json"]))
                   for ch in book.toc_chapters()}
    assert df.groupby("chapter").size().to_dict() == per_chapter
    answer = (root / "book" / "summary" / "answer.ipynb").read_text()
    assert all(q in answer for q, _ in summary.QUESTIONS + summary.LATER)


def test_smoke_book_reads_cleanly_in_a_browser(smoke_book):
    root, errors, code = smoke_book
    assert not any(errors.values())
    warnings = [ln for ln in (root / "build.log").read_text().splitlines() if "WARNING" in ln or "ERROR" in ln]
    assert code == 0 and not warnings, "the smoke book builds with -W -n:\n" + "\n".join(warnings)
    found = pagecheck.check(root / "_build" / "html")
    assert len(found) >= len(book.toc_chapters()) + 4  # chapters, intro, answer, execution, references
    assert not any(found.values()), pagecheck.report(found)


def test_first_chapter_writes_its_runs(tmp_path, monkeypatch):
    runs_dir = tmp_path / "store"
    monkeypatch.setenv("BNLIB_RUNS", str(runs_dir))
    book.execute("training", profile="smoke", out=tmp_path / "t.ipynb", progress=False)
    rows = runs.listing(runs_dir)
    assert len(rows) == 4  # {none, bn} x {lr, lr_large} x 1 seed
    assert all(r["state"] == "done" and r["trained_by"] == ["training"] for r in rows)


def test_figures_survive_a_headless_backend(tmp_path, monkeypatch):
    """With MPLBACKEND=Agg in the caller's environment, the kernels still draw inline."""
    monkeypatch.setenv("MPLBACKEND", "Agg")
    src, out = tmp_path / "fig.ipynb", tmp_path / "out.ipynb"
    cell = {"cell_type": "code", "id": "plot", "metadata": {}, "execution_count": None, "outputs": [],
            "source": ["import matplotlib.pyplot as plt\n", "plt.plot([0, 1])"]}
    src.write_text(json.dumps({"cells": [cell], "metadata": {"kernelspec": {"name": "python3", "language": "python",
                               "display_name": "Python 3"}}, "nbformat": 4, "nbformat_minor": 5}))
    book.papermill(src, out, {}, progress=False)
    outputs = json.loads(out.read_text())["cells"][0]["outputs"]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    import os
    assert os.environ["MPLBACKEND"] == "Agg", "the caller's environment is restored"


def test_the_plan_is_what_the_smoke_book_trained_and_probed(smoke_book):
    """``python -m bnlib plan`` replays the chapters' experiment cells: at smoke it lists exactly
    the trajectories and probes the executed book stored (so the paper plan cannot drift)."""
    root, errors, _ = smoke_book
    assert not any(errors.values())
    differences = plan.differences(plan.plan("smoke"), root / "_runs")
    assert not any(differences.values()), differences
