"""The last chapter's answer section: computed from the executed chapters' claims, plain when they
are missing, and the rows it quotes found by their claim's text (loudly missing when reworded)."""

import json

import pytest

from bnlib import answers, summary


def _executed(path, name, rows):
    """An executed chapter that glued ``rows`` as its claims table."""
    out = {"output_type": "display_data", "metadata": {"scrapbook": {"name": "claims_json"}},
           "data": {summary.RECORD: json.dumps(rows)}}
    nb = {"cells": [{"cell_type": "markdown", "source": f"# Chapter {name}", "metadata": {}},
                    {"cell_type": "code", "source": "", "metadata": {}, "outputs": [out]}]}
    (path / f"{name}.ipynb").write_text(json.dumps(nb))


def _chapter(path, name, verdicts):
    _executed(path, name, [{"claim": f"claim {i}", "source": "s", "criterion": "c", "measured": "m", "verdict": v}
                           for i, v in enumerate(verdicts, 1)])


def test_answers_are_computed_from_the_executed_chapters(tmp_path):
    for _, names in summary.QUESTIONS:
        for n in names:
            _chapter(tmp_path, n, ["reproduced", "not reproduced", "identity"])
    a = answers.answers(tmp_path)
    assert set(a) == {"answer_source", *(f"answer_{i}" for i in range(1, len(summary.QUESTIONS) + 1))}
    one, two = a["answer_1"].data, a["answer_2"].data
    assert one.startswith("Of the 2 claims decided at this profile, 1 reproduced, 1 not reproduced.")
    assert "\n:::{dropdown} The claims behind this tally\n" in one and one.endswith("\n:::\n")
    assert "**Reproduced** (1)\n\n- claim 1 (Ch. 1, row 1)" in one
    assert "**Not reproduced** (1)\n\n- claim 2 (Ch. 1, row 2)" in one and "In part" not in one
    assert "- claim 1 (Ch. 2, row 1)\n- claim 1 (Ch. 3, row 1)" in two  # ics_noise, ics_measure


def test_claim_texts_are_escaped_so_myst_shows_them_as_written(tmp_path):
    for _, names in summary.QUESTIONS:
        for n in names:
            _executed(tmp_path, n, [{"claim": "⟨1,g⟩²/m and $x$ or a*b_c [d] <e> | #f", "source": "s",
                                     "criterion": "c", "measured": "m", "verdict": "reproduced"}])
    got = answers.answers(tmp_path)["answer_5"].data
    assert r"- ⟨1,g⟩²/m and \$x\$ or a\*b\_c \[d\] \<e\> \| \#f (Ch. 8, row 1)" in got


def test_answers_say_so_when_the_chapters_are_missing(tmp_path):
    a = answers.answers(tmp_path / "nowhere")
    assert a["answer_source"] == "missing"
    assert all("Not answered in this run" in a[f"answer_{i}"].data for i in range(1, len(summary.QUESTIONS) + 1))


def _cited_chapters(path, ics_claim="With BN, ICS is similar or larger (VGG, lr 0.1)"):
    claims = {"training": ["BN reaches a lower training loss within the same step budget"],
              "ics_measure": [ics_claim, ics_claim],
              "smoothness": ["VGG: other", "VGG: effective β-smoothness is lower with BN",
                             "VGG: BN lowers gradient magnitudes (a more Lipschitz loss)"],
              "lp_norms": ["other", "lp schemes smooth the landscape like BatchNorm (VGG)",
                           "lp schemes smooth the landscape like BatchNorm (DLN)"]}
    for _, names in summary.QUESTIONS:
        for n in names:
            rows = [{"claim": c, "source": "s", "criterion": f"lr {lr}; c", "measured": f"m {n} {i}",
                     "verdict": "reproduced"} for i, (c, lr) in enumerate(zip(claims.get(n, ["x"]), [0.1, 0.01, 0.1]))]
            _executed(path, n, rows)


def test_cited_rows_are_found_by_their_claim_text(tmp_path):
    _cited_chapters(tmp_path)
    c = answers.cited(tmp_path, lr=0.1)
    assert c["cite_training_row"] == "1" and c["cite_beta_row"] == "2" and c["cite_grad_row"] == "3"
    assert c["cite_lp_row"] == "2" and c["cite_lp_measured"] == "m lp_norms 1"
    assert c["cite_ics_row"] == "1"  # the claim at lr 0.1, not its twin at lr 0.01
    assert answers.cited(tmp_path, lr=0.01)["cite_ics_row"] == "2"


def test_a_cited_row_that_is_gone_fails_loudly(tmp_path):
    _cited_chapters(tmp_path, ics_claim="ICS reworded")
    with pytest.raises(LookupError, match="ics_measure.*ICS is similar or larger"):
        answers.cited(tmp_path, lr=0.1)


def test_cited_rows_say_so_when_the_chapters_are_missing(tmp_path):
    c = answers.cited(tmp_path / "nowhere", lr=0.1)
    assert set(c) == {f"cite_{n}_{f}" for n in answers.CITED for f in ("row", "verdict", "measured")}
    assert set(c.values()) == {"not available in this run"}


def test_chapters_dir_defaults_to_the_books_executed_chapters():
    from bnlib import book

    assert answers.chapters_dir() == answers.chapters_dir("") == book.EXECUTED
    assert str(answers.chapters_dir("/x")) == "/x"
