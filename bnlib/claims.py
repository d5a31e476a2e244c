"""The "claims checked" table that closes every chapter: claim, criterion, measurement, verdict.

A verdict is computed from a measurement by a stated criterion, never typed. Verdicts:
"reproduced", "partly", "not reproduced", and "diverged" when a run the criterion needs
did not finish.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

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


@dataclass(frozen=True)
class Criterion:
    """A row of a chapter's claims table: the claim, its source, the criterion in words and
    ``decide(**inputs) -> (measured, verdict)``, a pure function of plain numbers, so each
    criterion is unit-tested on synthetic inputs. ``criterion`` may hold ``{name}`` fields,
    filled from the scalar inputs (thresholds, learning rates)."""

    claim: str
    source: str
    criterion: str
    decide: Callable[..., tuple[str, str]]

    def __call__(self, **inputs: Any) -> Claim:
        """Decide on ``inputs``: those ``decide`` takes go to it, the scalars fill the text."""
        takes = inspect.signature(self.decide).parameters
        measured, v = self.decide(**{k: x for k, x in inputs.items() if k in takes})
        scalars = {k: x for k, x in inputs.items() if isinstance(x, (int, float, str))}
        return Claim(self.claim, self.source, self.criterion.format(**scalars), measured, v)


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
