"""The "claims checked" table that closes every chapter: claim, criterion, measurement, verdict.

A verdict is computed from a measurement by a stated criterion, never typed. The five
verdicts and their rules are ``shared/spec/verdicts.md``'s:

- ``reproduced``: the criterion holds on every seed, or the mean effect exceeds ``k`` times
  the seed spread (``Gap``);
- ``partly``: a weaker, stated, failable version holds (the row's criterion says which);
- ``not reproduced``: the preconditions hold and the criterion fails;
- ``inconclusive``: a precondition fails (a net that should train stayed at chance, a run
  the comparison needs diverged, the seeds disagree and their spread swamps the gap);
- ``identity``: the check holds by construction; shown, never counted as a reproduction.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

VERDICTS = ("reproduced", "partly", "not reproduced", "inconclusive", "identity")
COUNTED = ("reproduced", "partly", "not reproduced")  # evidence for or against a claim
CHANCE_LOSS = math.log(10)  # cross-entropy of a uniform guess over 10 classes


@dataclass(frozen=True)
class Claim:
    """One claim of a source, tested by ``criterion``; ``measured`` is the formatted evidence."""

    claim: str       # the claim, in our words
    source: str      # where it is made, e.g. "Santurkar et al. 2018, Fig. 1"
    criterion: str   # the test applied to the measurement (and its "partly" version, if any)
    measured: str    # the measured value(s), formatted, with the number of seeds
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
        if v not in VERDICTS:
            raise ValueError(f"verdict {v!r} of {self.claim!r} is not one of {VERDICTS}")
        scalars = {k: x for k, x in inputs.items() if isinstance(x, (int, float, str))}
        return Claim(self.claim, self.source, self.criterion.format(**scalars), measured, v)


def verdict(ok: bool, *, partly: bool = False, precondition: bool = True) -> str:
    """``"inconclusive"`` if a precondition failed, else ``"reproduced"`` if ``ok``, else
    ``"partly"`` if the row's own weaker criterion ``partly`` holds, else ``"not reproduced"``."""
    if not precondition:
        return "inconclusive"
    return "reproduced" if ok else ("partly" if partly else "not reproduced")


def identity(ok: bool) -> str:
    """The verdict of a check that holds by construction: ``"identity"``, or ``"not
    reproduced"`` if it fails (then the code or the derivation is wrong)."""
    return "identity" if ok else "not reproduced"


@dataclass(frozen=True)
class Gap:
    """The claim "a < b + margin" across seeds, from paired per-seed values ``a`` and ``b``.

    It *holds* if ``b - a > margin`` on every seed, or if the mean of ``b - a - margin``
    exceeds ``k`` times the seed spread (the sample standard deviation of ``b - a``). It is
    *swamped* when the seeds disagree in sign and the mean gap is within ``k`` spreads: the
    seed-to-seed variation is larger than the effect, so nothing can be concluded.
    """

    a: tuple[float, ...]
    b: tuple[float, ...]
    k: float = 2.0
    margin: float = 0.0

    def __post_init__(self) -> None:
        if len(self.a) != len(self.b) or not self.a:
            raise ValueError(f"Gap needs paired per-seed values; got {len(self.a)} and {len(self.b)}")

    @property
    def diffs(self) -> np.ndarray:
        return np.asarray(self.b, float) - np.asarray(self.a, float)

    @property
    def n(self) -> int:
        return len(self.a)

    @property
    def mean(self) -> float:
        return float(np.mean(self.diffs))

    @property
    def spread(self) -> float:
        """Sample standard deviation of the per-seed gaps (0 with one seed)."""
        d = self.diffs[np.isfinite(self.diffs)]
        return float(np.std(d, ddof=1)) if len(d) > 1 else 0.0

    @property
    def wins(self) -> int:
        """Seeds on which the gap exceeds the margin."""
        return int(np.sum(self.diffs > self.margin))

    @property
    def holds(self) -> bool:
        return self.wins == self.n or (self.n > 1 and self.mean - self.margin > self.k * self.spread)

    @property
    def swamped(self) -> bool:
        d = self.diffs
        return not self.holds and bool(np.any(d > 0) and np.any(d < 0)) and abs(self.mean) <= self.k * self.spread

    def verdict(self, *, precondition: bool = True, partly: bool = False) -> str:
        """reproduced / partly / not reproduced / inconclusive (precondition or swamped)."""
        if not precondition or self.swamped:
            return "inconclusive"
        return verdict(self.holds, partly=partly)

    def seeds(self) -> str:
        """"3 seeds: holds on 3/3, mean gap 0.31, spread 0.02" (or "1 seed")."""
        if self.n == 1:
            return "1 seed"
        return (f"{self.n} seeds: holds on {self.wins}/{self.n}, mean gap {_g(self.mean)}, "
                f"spread {_g(self.spread)}")

    def text(self, names: tuple[str, str], fmt: str = "{:.3f}") -> str:
        """"BN 1.02 vs standard 1.33 (means; 3 seeds: holds on 3/3, ...)"."""
        a, b = np.mean(self.a), np.mean(self.b)
        mean = "mean " if self.n > 1 else ""
        return f"{names[0]} {fmt.format(a)} vs {names[1]} {fmt.format(b)} ({mean}{self.seeds()})"


def less(a: Sequence[float], b: Sequence[float], *, k: float = 2.0, margin: float = 0.0) -> Gap:
    """``Gap`` for "a < b" (by more than ``margin``) over paired seeds; for "a > b" use
    ``less(b, a)``."""
    return Gap(tuple(map(float, a)), tuple(map(float, b)), k, margin)


def _g(x: float) -> str:
    return f"{x:.3g}"


def left_chance(tail_losses: Sequence[float], *, frac: float = 0.9, chance: float = CHANCE_LOSS) -> bool:
    """Precondition "the net trained": every seed's tail loss is finite and below ``frac`` x chance."""
    return all(math.isfinite(x) and x < frac * chance for x in tail_losses)


def table(claims: list[Claim]) -> pd.DataFrame:
    """The claims as a DataFrame, one row per claim, numbered from 1."""
    df = pd.DataFrame([asdict(c) for c in claims])
    df.index = range(1, len(df) + 1)
    return df.rename(columns=str.capitalize)


def tally(claims: list[Claim]) -> str:
    """"3 reproduced, 1 partly, ... (2 identities shown, not counted)": the table in a line."""
    n = {v: sum(c.verdict == v for c in claims) for v in VERDICTS}
    counted = ", ".join(f"{n[v]} {v}" for v in (*COUNTED, "inconclusive") if n[v])
    word = "identity" if n["identity"] == 1 else "identities"
    ident = f" ({n['identity']} {word} shown, not counted)" if n["identity"] else ""
    return (counted or "no claims") + ident
