"""The command line and plain papermill reject bad parameters with one clear message."""

import subprocess
import sys
from pathlib import Path

import pytest

from bnlib import book
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
