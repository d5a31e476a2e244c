"""The last chapter's answer section, read from the executed chapters' claims (like the answer
page, so it sits with ``summary``): per question of the paper, the tally and, in a closed
dropdown, the claims that held and did not (MyST, glued as Markdown), and the rows it quotes,
found by their claim's text."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from IPython.display import Markdown

from . import book, summary


def chapters_dir(folder: str = "") -> Path:
    """Where the executed chapters are read from: ``folder``, else ``book.EXECUTED``."""
    return Path(folder) if folder else book.EXECUTED


def read_claims(folder: Path) -> pd.DataFrame | None:
    """Every executed chapter's claims (``summary.claims``), or None if a chapter is not executed."""
    try:
        return summary.claims(folder)
    except (FileNotFoundError, ValueError):
        return None


MARKUP = "\\`*_[]<>$|#{}"  # characters a claim's text may hold that MyST would read as markup


def _plain(text: str) -> str:
    return "".join("\\" + c if c in MARKUP else c for c in text)


def _listing(df: pd.DataFrame, v: str) -> str:
    rows = df[df.verdict == v]
    return "\n".join(f"- {_plain(r.claim)} ({summary.place(r.chapter)}, row {r.row})" for r in rows.itertuples())


def answer(df: pd.DataFrame, question: str) -> str:
    """One question's answer in MyST: the tally, then a closed dropdown naming the claims that
    held, held in part and did not, one per line."""
    q = df[df.question == question]
    lists = [f"**{lead}** ({(q.verdict == v).sum()})\n\n{_listing(q, v)}"
             for v, lead in (("reproduced", "Reproduced"), ("partly", "In part"), ("not reproduced", "Not reproduced"))
             if (q.verdict == v).any()]
    text = summary.tally_sentence(list(q.verdict))
    if lists:
        text += "\n\n:::{dropdown} The claims behind this tally\n" + "\n\n".join(lists) + "\n:::\n"
    return text


def answers(folder: Path) -> dict[str, str | Markdown]:
    """``answer_<i>`` (1-based, ``summary.QUESTIONS`` order; Markdown, for ``{glue:md}``) and
    ``answer_source``; a plain statement instead of an answer when the executed chapters are missing."""
    df = read_claims(folder)
    if df is None:
        missing = Markdown(f"Not answered in this run: the executed chapters are not in `{folder}` (a standalone "
                           "run of this page). Run `python -m bnlib book`, which executes this page after every other.")
        return {"answer_source": "missing", **{f"answer_{i}": missing for i in range(1, len(summary.QUESTIONS) + 1)}}
    out = {f"answer_{i}": Markdown(answer(df, q)) for i, (q, _) in enumerate(summary.QUESTIONS, 1)}
    return {"answer_source": f"{len(df)} claims of {df.chapter.nunique()} chapters", **out}


# Rows of other chapters the answer section quotes: (chapter, a stable part of the claim's text, a part
# of its criterion, ``{lr}`` the VGG learning rate; the ICS chapter has the claim at two rates).
CITED = {"training": ("training", "lower training loss", ""),
         "ics": ("ics_measure", "ICS is similar or larger (VGG", "lr {lr:g};"),
         "beta": ("smoothness", "effective β-smoothness is lower", ""),
         "grad": ("smoothness", "BN lowers gradient magnitudes", ""),
         "lp": ("lp_norms", "smooth the landscape like BatchNorm (VGG)", "")}


def cited_row(df: pd.DataFrame, chapter: str, claim: str, criterion: str = "") -> pd.Series:
    """The one claims row of ``chapter`` whose claim contains ``claim`` and whose criterion contains
    ``criterion``; LookupError naming the chapter and the text otherwise."""
    rows = df[(df.chapter == chapter) & df.claim.str.contains(claim, regex=False)
              & df.criterion.str.contains(criterion, regex=False)]
    if len(rows) != 1:
        raise LookupError(f"chapter {chapter!r}: {len(rows)} claims rows contain {claim!r} (criterion: "
                          f"{criterion!r}); the answer section quotes exactly one (reworded? update "
                          "answers.CITED)")
    return rows.iloc[0]


def cited(folder: Path, lr: float) -> dict[str, str]:
    """``cite_<name>_row``, ``_verdict`` and ``_measured`` of every ``CITED`` row; a plain statement
    when the executed chapters are missing."""
    df = read_claims(folder)
    out = {}
    for name, (chapter, claim, criterion) in CITED.items():
        if df is None:
            out |= {f"cite_{name}_{f}": "not available in this run" for f in ("row", "verdict", "measured")}
            continue
        r = cited_row(df, chapter, claim, criterion.format(lr=lr))
        out |= {f"cite_{name}_row": str(r.row), f"cite_{name}_verdict": r.verdict,
                f"cite_{name}_measured": r.measured}
    return out
