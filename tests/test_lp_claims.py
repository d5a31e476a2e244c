"""The lp chapter's criteria on synthetic numbers: each can pass, pass partly, fail, and say
diverged where the criterion needs finished runs."""

import pytest

from bnlib.chapters.lp_norms import CRITERIA, LANDSCAPE


def per_norm(none, bn, l1, l2, linf):
    return {"none": none, "bn": bn, "l1": l1, "l2": l2, "linf": linf}


@pytest.mark.parametrize("acc, diverged, expected", [
    (per_norm(0.5, 0.7, 0.68, 0.7, 0.71), False, "reproduced"),
    (per_norm(0.5, 0.7, 0.68, 0.5, 0.5), False, "partly"),
    (per_norm(0.5, 0.7, 0.5, 0.5, 0.5), False, "not reproduced"),
    (per_norm(0.5, 0.7, 0.68, 0.7, 0.71), True, "diverged")])
def test_comparable_accuracy(acc, diverged, expected):
    row = CRITERIA["comparable"](acc=acc, margin=0.05, diverged=diverged)
    assert row.verdict == expected and "BN's - 5%" in row.criterion
    assert row.measured.startswith("none 50.0%, bn 70.0%")


def landscape(none, bn, lp):
    """Every LANDSCAPE quantity set to the given value per normaliser."""
    return {n: dict.fromkeys(LANDSCAPE, v) for n, v in per_norm(none, bn, *lp).items()}


@pytest.mark.parametrize("arch", ["vgg", "dln"])
@pytest.mark.parametrize("q, diverged, expected", [
    (landscape(10.0, 1.0, (2.0, 1.5, 2.9)), False, "reproduced"),
    (landscape(10.0, 1.0, (2.0, 20.0, 5.0)), False, "partly"),   # l1 passes; l2 above none; linf > 3 x BN
    (landscape(10.0, 1.0, (11.0, 20.0, 30.0)), False, "not reproduced"),
    (landscape(10.0, 1.0, (2.0, 1.5, 2.9)), True, "diverged")])
def test_smoothing_like_bn(arch, q, diverged, expected):
    row = CRITERIA[f"smooth_{arch}"](q=q, similar_factor=3.0, diverged=diverged)
    assert row.verdict == expected and "<= 3 x BN's" in row.criterion
    assert row.measured.endswith(f"; beta_eff: none 10, bn 1, l1 {q['l1']['beta_eff']:g}, "
                                 f"l2 {q['l2']['beta_eff']:g}, linf {q['linf']['beta_eff']:g}")


SHIFT = per_norm(0.1, 0.0, 0.2, 0.3, 0.2)  # every lp net moves more than the standard net (0.1)
BETTER = per_norm(2, 1, 1, 1, 1)           # every lp net ends below the standard net's loss


@pytest.mark.parametrize("mean_shift, var_shift, loss, diverged, expected", [
    (SHIFT, SHIFT, BETTER, False, "reproduced"),
    # all train better, but l1's mean moves less than the standard net's: only some shifts larger
    (per_norm(0.1, 0.0, 0.05, 0.3, 0.2), SHIFT, BETTER, False, "partly"),
    (SHIFT, SHIFT, per_norm(2, 1, 3, 1, 1), False, "not reproduced"),
    (SHIFT, SHIFT, BETTER, True, "diverged")])
def test_shift_more_yet_train_better(mean_shift, var_shift, loss, diverged, expected):
    row = CRITERIA["shift"](mean_shift=mean_shift, var_shift=var_shift, loss=loss, diverged=diverged, layers="3, 7")
    assert row.verdict == expected and "layers 3, 7" in row.criterion
    assert row.measured.startswith("mean shift: none 0.100, bn 0.000")


@pytest.mark.parametrize("kurt, expected", [
    (per_norm(0.5, -0.3, 0.8, -0.5, 1.0), "reproduced"),
    (per_norm(0.5, -0.3, 0.8, 0.1, 0.2), "partly"),
    (per_norm(0.5, -0.3, 0.1, 0.2, -0.25), "not reproduced")])
def test_non_gaussian(kurt, expected):
    row = CRITERIA["non_gaussian"](kurt=kurt, layer=7)
    assert row.verdict == expected and "layer 7" in row.criterion


@pytest.mark.parametrize("mean, final, diverged, expected", [
    ({"l1": 1.0, "bn": 2.0}, {"l1": 0.5, "bn": 0.6}, False, "reproduced"),
    ({"l1": 3.0, "bn": 2.0}, {"l1": 0.5, "bn": 0.6}, False, "partly"),
    ({"l1": 3.0, "bn": 2.0}, {"l1": 0.7, "bn": 0.6}, False, "not reproduced"),
    ({"l1": 1.0, "bn": 2.0}, {"l1": 0.5, "bn": 0.6}, True, "diverged")])
def test_l1_beats_bn_on_the_dln(mean, final, diverged, expected):
    row = CRITERIA["l1_dln"](mean=mean, final=final, diverged=diverged)
    assert row.verdict == expected
    assert row.measured == f"mean: l1 {mean['l1']:.4g} vs BN 2; final: l1 {final['l1']:.4g} vs BN 0.6"
