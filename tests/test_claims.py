"""The shared verdict rules (shared/spec/verdicts.md) on synthetic per-seed numbers."""

import math

import pytest

from bnlib.claims import Criterion, Gap, identity, left_chance, less, tally, verdict


@pytest.mark.parametrize("a, b, expected", [
    ([1.0, 1.1, 0.9], [1.5, 1.6, 1.4], "reproduced"),        # every seed
    ([1.5, 1.6, 1.4], [1.0, 1.1, 0.9], "not reproduced"),    # every seed the other way
    ([1.0, 1.6, 1.0], [1.3, 1.2, 1.3], "inconclusive"),      # seeds disagree, spread swamps the gap
    ([1.0], [1.2], "reproduced"), ([1.2], [1.0], "not reproduced")])
def test_gap_verdicts(a, b, expected):
    assert less(a, b).verdict() == expected


def test_gap_mean_beyond_k_spreads_holds_without_every_seed():
    g = less([0.0] * 9 + [1.05], [1.0] * 10, k=2.0)  # one seed loses slightly, the mean gap is large
    assert g.wins == 9 and g.holds and g.verdict() == "reproduced"


def test_gap_margin_and_precondition():
    assert less([1.0, 1.0], [1.05, 1.06], margin=0.1).verdict() == "not reproduced"
    assert less([1.0, 1.0], [2.0, 2.0]).verdict(precondition=False) == "inconclusive"
    assert less([1.0, 1.0], [0.9, 0.9]).verdict(partly=True) == "partly"


def test_gap_text_says_seeds():
    assert "1 seed" in less([1.0], [2.0]).text(("BN", "standard"))
    t = less([1.0, 1.2], [2.0, 2.1]).text(("BN", "standard"))
    assert t.startswith("BN 1.100 vs standard 2.050 (mean 2 seeds: holds on 2/2")


def test_gap_needs_paired_seeds():
    with pytest.raises(ValueError, match="paired"):
        Gap((1.0,), (1.0, 2.0))


def test_verdict_identity_chance_and_tally():
    assert verdict(True, precondition=False) == "inconclusive" and verdict(False, partly=True) == "partly"
    assert identity(True) == "identity" and identity(False) == "not reproduced"
    assert left_chance([1.5, 2.0]) and not left_chance([1.5, 2.2]) and not left_chance([math.inf])
    rows = [Criterion("c", "s", "x", lambda v=v: ("m", v))() for v in ("reproduced", "identity", "inconclusive")]
    assert tally(rows) == "1 reproduced, 1 inconclusive (1 identity shown, not counted)"


def test_criterion_rejects_unknown_verdict():
    with pytest.raises(ValueError, match="not one of"):
        Criterion("c", "s", "x", lambda: ("m", "diverged"))()
