"""The training chapter's criteria on synthetic numbers: each can pass, fail, and say diverged."""

import pytest

from bnlib.chapters.training import CRITERIA


@pytest.mark.parametrize("bn, none, diverged, expected", [
    (1.2, 1.9, False, "reproduced"), (2.0, 1.9, False, "not reproduced"), (1.2, 1.9, True, "diverged")])
def test_lower_loss(bn, none, diverged, expected):
    assert CRITERIA["lower"](bn=bn, none=none, diverged=diverged, lr=0.1).verdict == expected


@pytest.mark.parametrize("fractions, expected", [
    ([0.1, 0.3], "reproduced"), ([0.1, None], "partly"), ([None, None], "not reproduced")])
def test_faster(fractions, expected):
    row = CRITERIA["faster"](fractions=fractions, num_seeds=2, window=25)
    assert row.verdict == expected and "25 steps" in row.criterion


@pytest.mark.parametrize("bn, none, expected", [(0.6, 0.5, "reproduced"), (0.4, 0.5, "not reproduced")])
def test_higher_accuracy(bn, none, expected):
    assert CRITERIA["accuracy"](bn=bn, none=none, diverged=False, lr=0.1).verdict == expected


@pytest.mark.parametrize("bn, none, bn_diverged, expected", [
    (1.3, float("inf"), False, "reproduced"), (2.4, 2.2, False, "not reproduced"), (1.0, 2.0, True, "diverged")])
def test_large_lr(bn, none, bn_diverged, expected):
    row = CRITERIA["large_lr"](bn=bn, none=none, none_diverged=0, bn_diverged=bn_diverged, lr=0.5)
    assert row.verdict == expected and "0.5" in row.criterion
