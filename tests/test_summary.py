"""The answer and execution pages read exactly what the executed chapters glued."""

import json

import pytest

from bnlib import summary
from bnlib.claims import Claim


def executed(path, glue: dict, heading: str = "# A chapter"):
    """A minimal executed notebook with ``glue`` recorded the way myst_nb.glue records it."""
    outs = [{"output_type": "display_data", "metadata": {"scrapbook": {"name": k, "mime_prefix": ""}},
             "data": {summary.RECORD: v}} for k, v in glue.items()]
    cells = [{"cell_type": "markdown", "id": "h", "metadata": {}, "source": [heading]},
             {"cell_type": "code", "id": "c", "metadata": {}, "source": [], "outputs": outs, "execution_count": 1}]
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))


def claims_json(*verdicts):
    return json.dumps([Claim(f"claim {i}", "Santurkar et al.", "crit", f"m{i}", v).__dict__
                       for i, v in enumerate(verdicts, 1)])


@pytest.fixture
def chapters(tmp_path):
    names = [n for _, ns in summary.QUESTIONS + summary.LATER for n in ns]
    for n in names:
        executed(tmp_path / f"{n}.ipynb", {"claims_json": claims_json("reproduced", "inconclusive"),
                                           "profile": "quick", "run_time_min": "1.5", "seeds": "0, 1, 2"},
                 heading=f"# Title of {n}")
    return tmp_path


def test_every_claim_of_every_chapter_with_its_question(chapters):
    df = summary.claims(chapters)
    n = sum(len(ns) for _, ns in summary.QUESTIONS)
    assert len(df) == 2 * n
    row = df[df.chapter == "ics_measure"].iloc[0]
    assert (row.title, row.row, row.verdict, row.measured) == ("Title of ics_measure", 1, "reproduced", "m1")
    assert row.question == summary.QUESTIONS[1][0]
    html = summary.question_table(df[df.chapter == "training"])
    assert 'href="../chapters/training.html#claims-checked"' in html
    assert '<span class="verdict verdict-inconclusive">inconclusive</span>' in html


def test_a_chapter_without_claims_is_an_error(chapters):
    executed(chapters / "theory.ipynb", {"profile": "quick"})
    with pytest.raises(ValueError, match="claims_json"):
        summary.claims(chapters)


def test_tally_sentence_counts_decided_claims_only():
    text = summary.tally_sentence(["reproduced", "reproduced", "not reproduced", "inconclusive", "identity"])
    assert text.startswith("Of the 3 claims decided at this profile, 2 reproduced, 1 not reproduced.")
    assert "1 is inconclusive" in text and "1 identity holds by construction" in text
    assert summary.tally_sentence(["inconclusive"]).startswith("No claim was decided")
    with pytest.raises(ValueError):
        summary.verdict_html("diverged")


def test_execution_table_reads_the_glued_values(chapters):
    df = summary.execution(chapters)
    assert set(df["run time (min)"]) == {"1.5"} and set(df.seeds) == {"0, 1, 2"}
    assert set(df["bnlib commit"]) == {"?"}  # not glued in this synthetic chapter: shown as unknown


def test_chapter_claims_tables_colour_their_verdicts():
    from bnlib import page

    rows = [Claim("a < b", "Santurkar et al.", "crit", "1 vs 2", "reproduced"),
            Claim("x & y", "Cai & Wei", "crit", "m", "not reproduced")]
    html = page.claims(rows, prefix="t").to_html()
    assert 'class="data row0 col4 verdict verdict-reproduced"' in html.replace("  ", " ")
    assert "verdict verdict-not-reproduced" in html and "a &lt; b" in html and "x &amp; y" in html


def test_glued_strings_are_read_without_their_quotes(tmp_path):
    from bnlib import page

    executed(tmp_path / "c.ipynb", {"seeds": repr(page.Text("0, 1, 2")), "claims_json": '[{"a": true}]',
                                    "run_time_min": "1.5"})
    assert summary.glued(tmp_path / "c.ipynb") == {"seeds": "0, 1, 2", "claims_json": '[{"a": true}]',
                                                   "run_time_min": "1.5"}
