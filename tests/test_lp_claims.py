"""The lp chapter's criteria on synthetic per-seed numbers: each reproduces, holds partly (its
own weaker criterion), fails, and is inconclusive on a failed precondition or swamped seeds."""

import pytest

from bnlib.chapters.lp_norms import CRITERIA, LANDSCAPE

OPTS = dict(k=2.0, chance_frac=0.9, horizon=1000, dln_steps=10000, layers="3, 7", similar_factor=3.0)


def per_norm(none, bn, l1, l2, linf):
    """Two seeds per normaliser: the value and the value + 0.01."""
    return {n: [v, v + 0.01] for n, v in zip(("none", "bn", "l1", "l2", "linf"), (none, bn, l1, l2, linf))}


@pytest.mark.parametrize("acc, pre, expected", [
    (per_norm(0.5, 0.7, 0.68, 0.7, 0.71), True, "reproduced"),
    (per_norm(0.5, 0.7, 0.68, 0.7, 0.5), True, "partly"),      # linf out of the margin: 2 of 3
    (per_norm(0.5, 0.7, 0.68, 0.5, 0.5), True, "not reproduced"),
    (per_norm(0.5, 0.7, 0.68, 0.7, 0.71), False, "inconclusive")])
def test_comparable_accuracy(acc, pre, expected):
    row = CRITERIA["comparable"](acc=acc, margin=0.05, precondition=pre, **OPTS)
    assert row.verdict == expected and "BN's - 5%" in row.criterion and "step 1000" in row.criterion
    assert row.measured.startswith("BN 70.5%; l1 68.5%") and "2 seeds" in row.measured


def test_comparable_swamped_seeds_are_inconclusive():
    acc = {"bn": [0.7, 0.7], "l1": [0.6, 0.8], "l2": [0.7, 0.7], "linf": [0.7, 0.7]}
    assert CRITERIA["comparable"](acc=acc, margin=0.05, precondition=True, **OPTS).verdict == "inconclusive"


def landscape(none, bn, lp):
    """Every LANDSCAPE quantity set to the given per-seed values per normaliser."""
    return {n: dict.fromkeys(LANDSCAPE, v) for n, v in per_norm(none, bn, *lp).items()}


@pytest.mark.parametrize("arch", ["vgg", "dln"])
@pytest.mark.parametrize("q, pre, expected", [
    (landscape(10.0, 1.0, (2.0, 1.5, 2.9)), True, "reproduced"),
    (landscape(10.0, 1.0, (2.0, 5.0, 5.0)), True, "partly"),   # all below none; l2, linf > 3 x BN
    (landscape(10.0, 1.0, (2.0, 20.0, 5.0)), True, "not reproduced"),  # l2 above the standard net
    (landscape(10.0, 1.0, (2.0, 1.5, 2.9)), False, "inconclusive")])
def test_smoothing_like_bn(arch, q, pre, expected):
    row = CRITERIA[f"smooth_{arch}"](q=q, precondition=pre, **OPTS)
    assert row.verdict == expected and "<= 3 x BN's" in row.criterion and "medians" in row.criterion
    assert row.measured.startswith("beta_eff: none 10, bn 1")


def test_smoothing_on_one_lp_net_one_seed():
    q = {n: dict.fromkeys(LANDSCAPE, [v]) for n, v in (("none", 10.0), ("bn", 1.0), ("l1", 2.0))}
    row = CRITERIA["smooth_dln"](q=q, precondition=True, **OPTS)
    assert row.verdict == "reproduced" and row.measured.endswith("(1 seed)")


SHIFT = per_norm(0.1, 0.0, 0.2, 0.3, 0.2)  # every lp net moves more than the standard net (0.1)
BETTER = per_norm(2, 1, 1, 1, 1)           # every lp net ends below the standard net's loss


@pytest.mark.parametrize("mean_shift, var_shift, loss, pre, expected", [
    (SHIFT, SHIFT, BETTER, True, "reproduced"),
    # all train better with the larger variance shift, but l1's mean moves less: partly
    (per_norm(0.1, 0.0, 0.05, 0.3, 0.2), SHIFT, BETTER, True, "partly"),
    (SHIFT, SHIFT, per_norm(2, 1, 3, 1, 1), True, "not reproduced"),
    (SHIFT, SHIFT, BETTER, False, "inconclusive")])
def test_shift_more_yet_train_better(mean_shift, var_shift, loss, pre, expected):
    row = CRITERIA["shift"](mean_shift=mean_shift, var_shift=var_shift, loss=loss, precondition=pre, **OPTS)
    assert row.verdict == expected and "layers 3, 7" in row.criterion
    assert row.criterion.startswith("Site: before the normaliser")
    assert row.measured.startswith("mean shift: none 0.105, l1")


@pytest.mark.parametrize("kurt, pre, expected", [
    (per_norm(0.5, 0.3, 0.8, 0.5, 1.0), True, "reproduced"),
    (per_norm(0.5, 0.3, 0.8, 0.1, 1.0), True, "partly"),
    (per_norm(0.5, 0.3, 0.1, 0.2, 0.25), True, "not reproduced"),
    (per_norm(0.5, 0.3, 0.8, 0.5, 1.0), False, "inconclusive")])
def test_non_gaussian(kurt, pre, expected):
    row = CRITERIA["non_gaussian"](kurt=kurt, precondition=pre, **OPTS)
    assert row.verdict == expected and "layers 3, 7" in row.criterion and "median over channels" in row.criterion
    assert row.criterion.startswith("Per channel")


@pytest.mark.parametrize("mean, final, pre, expected", [
    ({"l1": [1.0, 1.1], "bn": [2.0, 2.1]}, {"l1": [0.5, 0.5], "bn": [0.6, 0.6]}, True, "reproduced"),
    ({"l1": [3.0, 3.1], "bn": [2.0, 2.1]}, {"l1": [0.5, 0.5], "bn": [0.6, 0.6]}, True, "partly"),
    ({"l1": [3.0, 3.1], "bn": [2.0, 2.1]}, {"l1": [0.7, 0.7], "bn": [0.6, 0.6]}, True, "not reproduced"),
    ({"l1": [1.0, 1.1], "bn": [2.0, 2.1]}, {"l1": [0.5, 0.5], "bn": [0.6, 0.6]}, False, "inconclusive"),
    ({"l1": [1.0, 3.0], "bn": [2.0, 2.1]}, {"l1": [0.7, 0.7], "bn": [0.6, 0.6]}, True, "inconclusive")])
def test_l1_beats_bn_on_the_dln(mean, final, pre, expected):
    row = CRITERIA["l1_dln"](mean=mean, final=final, precondition=pre, **OPTS)
    assert row.verdict == expected and "10000 steps" in row.criterion
    assert row.measured.startswith("mean: l1 ") and "2 seeds" in row.measured


@pytest.mark.parametrize("bn_spread, expected", [(0.01, "reproduced"), (1.0, "inconclusive")])
def test_l1_beats_bn_with_one_seed_needs_a_gap_beyond_bns_seed_spread(bn_spread, expected):
    row = CRITERIA["l1_dln"](mean={"l1": [1.9], "bn": [2.0]}, final={"l1": [0.5], "bn": [0.6]}, precondition=True,
                             bn_spread=bn_spread, **OPTS)
    assert row.verdict == expected and "(1 seed)" in row.measured and "2 x BN's seed spread" in row.criterion


@pytest.mark.parametrize("ln, gn, pre, expected", [
    (0.68, 0.69, True, "reproduced"),
    (0.68, 0.50, True, "partly"),           # GN out of the margin: one of the two
    (0.50, 0.55, True, "not reproduced"),
    (0.68, 0.69, False, "inconclusive")])   # BN at chance or a run diverged
def test_layernorm_and_groupnorm_comparable_to_bn(ln, gn, pre, expected):
    acc = {"bn": [0.7, 0.71], "ln": [ln, ln + 0.01], "gn": [gn, gn + 0.01]}
    row = CRITERIA["ln_gn"](acc=acc, margin=0.05, ln_gn_margin=0.05, precondition=pre, **OPTS)
    assert row.verdict == expected and "BN's - 5%" in row.criterion and "LN and of GN" in row.criterion
    assert row.measured.startswith("BN 70.5%; ln ") and "Sec. 5" in row.source


@pytest.mark.parametrize("l1c, pre, expected", [
    (0.68, True, "reproduced"), (0.50, True, "not reproduced"), (0.68, False, "inconclusive")])
def test_comparable_with_the_centred_norm(l1c, pre, expected):
    acc = {"bn": [0.7, 0.71], "l1c": [l1c, l1c + 0.01]}
    row = CRITERIA["comparable_centred"](acc=acc, margin=0.05, centred="l1c", precondition=pre, **OPTS)
    assert row.verdict == expected and "centred input (l1c)" in row.criterion
    assert row.measured.startswith("BN 70.5%; l1c ")


@pytest.mark.parametrize("mean, final, pre, expected", [
    ({"l1c": [1.0, 1.1], "bn": [2.0, 2.1]}, {"l1c": [0.5, 0.5], "bn": [0.6, 0.6]}, True, "reproduced"),
    ({"l1c": [3.0, 3.1], "bn": [2.0, 2.1]}, {"l1c": [0.5, 0.5], "bn": [0.6, 0.6]}, True, "partly"),
    ({"l1c": [3.0, 3.1], "bn": [2.0, 2.1]}, {"l1c": [0.7, 0.7], "bn": [0.6, 0.6]}, True, "not reproduced"),
    ({"l1c": [1.0, 1.1], "bn": [2.0, 2.1]}, {"l1c": [0.5, 0.5], "bn": [0.6, 0.6]}, False, "inconclusive")])
def test_l1_beats_bn_on_the_dln_with_the_centred_norm(mean, final, pre, expected):
    row = CRITERIA["l1_dln_centred"](mean=mean, final=final, precondition=pre, centred_steps=1000, **OPTS)
    assert row.verdict == expected and "centred input (l1c), over its 1000 steps" in row.criterion
    assert row.measured.startswith("mean: l1c ")
