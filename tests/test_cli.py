"""The command line and plain papermill reject bad parameters with one clear message."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bnlib import book, chapters, config
from bnlib.__main__ import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("argv, match", [
    (["run", "training", "-p", "lr", "-1"], "Parameter 'lr' of chapter 'training' must be a float in (0, 10]; got -1"),
    (["run", "training", "-p", "lr_rate", "0.1"], "Unknown parameter 'lr_rate' for chapter 'training'"),
    (["run", "training", "-p", "num_steps", "0"], "Parameter 'num_steps'"),
    (["run", "no_such_chapter"], "Unknown chapter 'no_such_chapter'"),
])
def test_run_rejects_bad_input_before_any_kernel_starts(argv, match, capsys):
    assert main(argv) == 2
    assert match in capsys.readouterr().err


def test_params_lists_every_profile(capsys):
    assert main(["params", "training"]) == 0
    out = capsys.readouterr().out
    assert "num_steps" in out and "15000" in out and "(paper" in out


def test_plain_papermill_fails_with_the_same_message(tmp_path):
    papermill = Path(sys.executable).parent / "papermill"
    proc = subprocess.run([str(papermill), str(ROOT / "notebooks" / "training.ipynb"), str(tmp_path / "o.ipynb"),
                           "-p", "profile", "smoke", "-p", "lr", "-1"], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "Parameter 'lr' of chapter 'training' must be a float in (0, 10]; got -1" in proc.stdout + proc.stderr


def test_toc_lists_the_first_chapter():
    assert book.toc_chapters()[0] == "training"


@pytest.mark.parametrize("chapter", book.toc_chapters())
def test_plain_papermill_rejects_an_unknown_name_in_every_chapter(chapter, tmp_path):
    papermill = Path(sys.executable).parent / "papermill"
    proc = subprocess.run([str(papermill), str(ROOT / "notebooks" / f"{chapter}.ipynb"), str(tmp_path / "o.ipynb"),
                           "-p", "profile", "smoke", "-p", "seed_count", "2"], capture_output=True, text=True)
    assert proc.returncode != 0
    assert f"Unknown parameter 'seed_count' for chapter '{chapter}'; did you mean 'seed'?" in proc.stdout + proc.stderr


@pytest.mark.parametrize("chapter", book.toc_chapters())
def test_parameters_cell_is_generated_from_params(chapter):
    nb = json.loads((ROOT / "notebooks" / f"{chapter}.ipynb").read_text())
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1
    expected = config.params_cell(chapters.module(chapter).Params)
    assert "".join(cells[0]["source"]).strip() == expected, (
        f"regenerate it: python -m bnlib params {chapter} --cell")


def test_store_lists_and_prunes(tmp_path, capsys):
    assert main(["store", "--root", str(tmp_path)]) == 0
    assert "0 trajectories" in capsys.readouterr().out
    stale = tmp_path / "traj" / "0123456789abcdef"
    stale.mkdir(parents=True)
    (stale / "spec.json").write_text('{"code": "old", "label": "vgg11 bn"}')
    assert main(["store", "--root", str(tmp_path), "--prune"]) == 0
    assert "removed 1 entries" in capsys.readouterr().out and not stale.exists()


def test_book_rejects_bad_jobs_and_orders_every_chapter():
    with pytest.raises(ValueError, match="jobs must be a positive int"):
        book.book(jobs=0, build_html=False)
    assert sorted(book.COST_ORDER) == sorted(book.toc_chapters())
