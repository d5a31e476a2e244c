"""The answer and execution pages, read from the executed chapters (``book/chapters/*.ipynb``),
so they can never disagree with them: every chapter glues its claims (``claims_json``), its
profile, seeds, run time, device, trajectories trained or loaded and environment."""

from __future__ import annotations

import ast
import html
import json
from pathlib import Path

import pandas as pd

from .claims import COUNTED, VERDICTS

# The paper's questions, in the order the answer page asks them, and the chapters that test each.
QUESTIONS = (
    ("Does BatchNorm make training faster and better?", ("training",)),
    ("Does BatchNorm work by reducing internal covariate shift?", ("ics_noise", "ics_measure")),
    ("Does BatchNorm make the optimisation landscape smoother?", ("smoothness", "surfaces", "hessian")),
    ("Is the smoothing specific to BatchNorm?", ("lp_norms",)),
    ("What does the theory guarantee, and do its bounds hold?", ("theory",)),
)
# The last chapter tests what later studies said about the paper (it reads the chapters above,
# so it is not one of them): its claims get their own section of the answer page.
LATER = (("What does later work add, tested here?", ("later_work",)),)
RECORD = "application/papermill.record/text/plain"


def glued(notebook: Path) -> dict[str, str]:
    """Every value an executed notebook glued, as text, by key."""
    out = {}
    for cell in json.loads(Path(notebook).read_text())["cells"]:
        for o in cell.get("outputs", []):
            name = o.get("metadata", {}).get("scrapbook", {}).get("name")
            if name and RECORD in o.get("data", {}):
                out[name] = _plain("".join(o["data"][RECORD]))
    return out


def _plain(record: str) -> str:
    """A glued value as the page shows it: a recorded string repr without its quotes (as
    ``{glue:text}`` does), anything else as recorded."""
    try:
        value = ast.literal_eval(record)
    except (SyntaxError, ValueError):
        return record
    return value if isinstance(value, str) else record


def title(notebook: Path) -> str:
    """The page title: the first ``# `` heading of the notebook."""
    for cell in json.loads(Path(notebook).read_text())["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return Path(notebook).stem


def verdict_html(v: str) -> str:
    """A verdict as the coloured label used on every page (``book/_static/bnlib.css``)."""
    if v not in VERDICTS:
        raise ValueError(f"unknown verdict {v!r}; expected one of {VERDICTS}")
    return f'<span class="verdict verdict-{v.replace(" ", "-")}">{v}</span>'


def claims(chapters_dir: Path, questions: tuple = QUESTIONS) -> pd.DataFrame:
    """Every claim of every executed chapter of ``questions``: chapter, title, question, row
    number and the row."""
    rows = []
    for q, names in questions:
        for name in names:
            nb = Path(chapters_dir) / f"{name}.ipynb"
            if not nb.exists():
                raise FileNotFoundError(f"{nb} is not executed: run `python -m bnlib book` first")
            data = glued(nb)
            if "claims_json" not in data:
                raise ValueError(f"{nb} glued no claims_json: its claims cell did not run page.claims")
            for i, c in enumerate(json.loads(data["claims_json"]), 1):
                rows.append({"chapter": name, "title": title(nb), "question": q, "row": i, **c})
    return pd.DataFrame(rows)


def tally_sentence(verdicts: list[str]) -> str:
    """"Of 7 claims decided at this profile, 4 reproduced, ...": a question's verdicts in words."""
    n = {v: verdicts.count(v) for v in VERDICTS}
    decided = sum(n[v] for v in COUNTED)
    parts = [f"{n[v]} {v}" for v in COUNTED if n[v]]
    text = (f"Of the {decided} claim{'s' if decided != 1 else ''} decided at this profile, "
            + ", ".join(parts) + "." if decided else "No claim was decided at this profile.")
    if n["inconclusive"]:
        text += (f" {n['inconclusive']} {'is' if n['inconclusive'] == 1 else 'are'} inconclusive "
                 "(a precondition failed or the seeds disagree).")
    if n["identity"]:
        holds = "identity holds" if n["identity"] == 1 else "identities hold"
        text += f" {n['identity']} {holds} by construction (not counted)."
    return text


def _link(chapter: str, text: str, title_: str, anchor: str = "claims-checked") -> str:
    return f'<a href="../chapters/{chapter}.html#{anchor}" title="{html.escape(title_)}">{html.escape(text)}</a>'


def place(chapter: str) -> str:
    """"Ch. N" (its place in ``_toc.yml``), or "Last chapter" for the unnumbered one."""
    from .book import toc_chapters

    if any(chapter in names for _, names in LATER):
        return "Last chapter"
    return f"Ch. {toc_chapters().index(chapter) + 1}"


def question_table(df: pd.DataFrame) -> str:
    """One question's claims as an HTML table: chapter (linked to its claims table), claim,
    source, verdict, measured."""
    head = "".join(f"<th>{h}</th>" for h in ("where", "claim", "source", "verdict", "measured"))
    body = "".join(
        f"<tr><td>{_link(r.chapter, f'{place(r.chapter)}, row {r.row}', r.title)}</td>"
        f"<td>{html.escape(r.claim)}</td>"
        f"<td>{html.escape(r.source)}</td><td>{verdict_html(r.verdict)}</td><td>{html.escape(r.measured)}</td></tr>"
        for r in df.itertuples())
    return f'<table class="bnlib-answer"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def execution(chapters_dir: Path, questions: tuple = QUESTIONS + LATER) -> pd.DataFrame:
    """Per executed chapter: profile, run time, seeds, trajectories trained and loaded, device and
    environment, as glued by the chapter itself."""
    rows = []
    for _, names in questions:
        for name in names:
            g = glued(Path(chapters_dir) / f"{name}.ipynb")
            rows.append({"chapter": name, "profile": g.get("profile", "?"),
                         "run time (min)": g.get("run_time_min", "?"), "seeds": g.get("seeds", "?"),
                         "trajectories trained": g.get("trajectories_trained", "?"),
                         "trajectories loaded": g.get("trajectories_loaded", "?"),
                         "device": g.get("device", "?"), "bnlib commit": g.get("env_commit", "?"),
                         "torch": g.get("env_torch", "?"), "executed": g.get("env_date", "?")})
    return pd.DataFrame(rows)
