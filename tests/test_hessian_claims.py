"""The Hessian chapter's criteria on synthetic numbers: each can pass, fail, and say partly
or diverged where it has them."""

import numpy as np
import pytest

from bnlib.chapters.hessian import CRITERIA

ACC = {"train": 0.9, "val": 0.88, "test": 0.87}


@pytest.mark.parametrize("bn, diverged, expected", [
    ({"train": 0.95, "val": 0.9, "test": 0.9}, False, "reproduced"),
    ({"train": 0.85, "val": 0.85, "test": 0.9}, False, "partly"),
    ({"train": 0.85, "val": 0.85, "test": 0.8}, False, "not reproduced"),
    ({"train": 0.95, "val": 0.9, "test": 0.9}, True, "diverged")])
def test_accuracy(bn, diverged, expected):
    row = CRITERIA["accuracy"](bn=bn, none=ACC, diverged=diverged)
    assert row.verdict == expected and row.measured.startswith("test ") and "; val " in row.measured


@pytest.mark.parametrize("t_bn, diverged, expected", [
    (1.0, False, "reproduced"), (3.0, False, "not reproduced"), (float("inf"), False, "not reproduced"),
    (1.0, True, "diverged")])
def test_wall_clock(t_bn, diverged, expected):
    row = CRITERIA["wall_clock"](bn=t_bn, none=2.0, diverged=diverged)
    assert row.verdict == expected and row.measured.endswith(" vs 2 s")


@pytest.mark.parametrize("bn, expected", [(0.05, "reproduced"), (0.02, "not reproduced")])
def test_epoch_time(bn, expected):
    row = CRITERIA["epoch_time"](bn=bn, none=0.03)
    assert row.verdict == expected and row.measured == f"{bn:.2f} s vs 0.03 s"


@pytest.mark.parametrize("name", ["lambda1", "kappa"])
@pytest.mark.parametrize("bn, expected", [
    ([9.0, 1.0, 0.8], "reproduced"), ([9.0, 1.0, 9.5], "partly"), ([9.0, 5.0, 9.5], "not reproduced")])
def test_smaller_curvature(name, bn, expected):
    # epoch 0 (the initialisation) does not count: only trained epochs are compared
    row = CRITERIA[name](bn=np.array(bn), none=np.array([1.0, 2.0, 9.0]), k=10)
    assert row.verdict == expected and row.measured.startswith("at ")


def test_kappa_criterion_names_k():
    assert "lambda_1/lambda_7" in CRITERIA["kappa"](bn=np.ones(3), none=np.ones(3), k=7).criterion


@pytest.mark.parametrize("zero, expected", [(1.6e-10, "reproduced"), (1e-3, "not reproduced")])
def test_singular(zero, expected):
    row = CRITERIA["singular"](zero=zero, zero_rel=1e-6)
    assert row.verdict == expected and "1e-06" in row.criterion


@pytest.mark.parametrize("full_bn, expected", [
    ({"lam1": 7.0, "kappa": 2.0}, "reproduced"), ({"lam1": 21.0, "kappa": 2.0}, "partly"),
    ({"lam1": 21.0, "kappa": 7.0}, "not reproduced")])
def test_full_hessian_orders_like_the_block(full_bn, expected):
    block = {"lam1": {"bn": 0.8, "none": 9.0}, "kappa": {"bn": 1.9, "none": 14.0}}
    full = {q: {"bn": full_bn[q], "none": {"lam1": 19.0, "kappa": 6.0}[q]} for q in full_bn}
    assert CRITERIA["full"](full=full, block=block).verdict == expected
