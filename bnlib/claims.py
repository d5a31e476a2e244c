"""The "claims checked" table that closes every chapter: claim, criterion, measurement, verdict.

A verdict is computed from a measurement by a stated criterion, never typed. Verdicts:
"reproduced", "partly", "not reproduced", and "diverged" when a run the criterion needs
did not finish.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

VERDICTS = ("reproduced", "partly", "not reproduced", "diverged")


@dataclass(frozen=True)
class Claim:
    """One claim of a seed, tested by ``criterion``; ``measured`` is the formatted evidence."""

    claim: str       # the claim, in our words
    source: str      # where it is made, e.g. "Santurkar et al. 2018, Fig. 1"
    criterion: str   # the test applied to the measurement
    measured: str    # the measured value(s), formatted
    verdict: str     # one of VERDICTS


def verdict(ok: bool, *, partly: bool = False, diverged: bool = False) -> str:
    """``"reproduced"`` if ``ok``, else ``"partly"`` if ``partly``, else ``"not reproduced"``;
    ``"diverged"`` overrides when a run the criterion needs diverged."""
    if diverged:
        return "diverged"
    return "reproduced" if ok else ("partly" if partly else "not reproduced")


def table(claims: list[Claim]) -> pd.DataFrame:
    """The claims as a DataFrame, one row per claim, numbered from 1."""
    df = pd.DataFrame([asdict(c) for c in claims])
    df.index = range(1, len(df) + 1)
    return df.rename(columns=str.capitalize)
