"""The Hessian chapter's criteria on synthetic per-seed numbers: each reproduces, fails, and is
inconclusive when a precondition fails (verdicts.md); the kernel row is an identity."""

import numpy as np
import pytest

from bnlib.chapters.hessian import CRITERIA, Params, full_epochs, kappa, probe_epochs

NONE = {"train": [0.90, 0.91], "val": [0.88, 0.89], "test": [0.87, 0.88]}
TH = dict(k=2.0, margin=0.003, acc_margin=0.003)


@pytest.mark.parametrize("bn, ok, expected", [
    ({"train": [0.95, 0.96], "val": [0.90, 0.91], "test": [0.90, 0.91]}, True, "reproduced"),
    ({"train": [0.85, 0.86], "val": [0.85, 0.86], "test": [0.90, 0.91]}, True, "partly"),
    ({"train": [0.85, 0.86], "val": [0.85, 0.86], "test": [0.80, 0.81]}, True, "not reproduced"),
    ({"train": [0.95, 0.96], "val": [0.90, 0.91], "test": [0.95, 0.80]}, True, "inconclusive"),  # swamped
    ({"train": [0.95, 0.96], "val": [0.90, 0.91], "test": [0.90, 0.91]}, False, "inconclusive")])
def test_accuracy(bn, ok, expected):
    row = CRITERIA["accuracy"](bn=bn, none=NONE, ok=ok, **TH)
    assert row.verdict == expected and row.measured.startswith("test: standard ") and "(mean 2 seeds" in row.measured
    assert "0.003" in row.criterion


def test_accuracy_margin_counts():  # BN ahead by less than the margin on every split
    bn = {s: [x + 0.001 for x in v] for s, v in NONE.items()}
    assert CRITERIA["accuracy"](bn=bn, none=NONE, ok=True, **TH).verdict == "not reproduced"


@pytest.mark.parametrize("t_bn, ok, expected", [
    ([1.0, 1.1], True, "reproduced"), ([3.0, 3.1], True, "not reproduced"),
    ([float("inf"), 1.0], True, "not reproduced"), ([1.0, 3.0], True, "inconclusive"),
    ([1.0, 1.1], False, "inconclusive")])
def test_wall_clock(t_bn, ok, expected):
    row = CRITERIA["wall_clock"](bn=t_bn, none=[2.0, 2.0], ok=ok, k=2.0, margin=0.05, time_margin=0.05)
    assert row.verdict == expected and "standard 2 s" in row.measured and "5%" in row.criterion


@pytest.mark.parametrize("bn, expected", [
    ([0.05, 0.051, 0.049], "reproduced"), ([0.0305, 0.0302, 0.0301], "not reproduced"),  # < 5% margin
    ([0.02, 0.021, 0.019], "not reproduced"), ([0.05, 0.01, 0.03], "inconclusive")])
def test_epoch_time_interleaved_rounds(bn, expected):
    row = CRITERIA["epoch_time"](bn=bn, none=[0.03, 0.03, 0.03], k=2.0, margin=0.05, time_margin=0.05)
    assert row.verdict == expected and "3 timing rounds" in row.measured


@pytest.mark.parametrize("name", ["lambda1", "kappa"])
@pytest.mark.parametrize("bn, bn_last, ok, expected", [
    ([1.0, 1.2], [1.0, 1.2], True, "reproduced"), ([9.0, 9.5], [1.0, 1.2], True, "partly"),
    ([9.0, 9.5], [9.0, 9.5], True, "not reproduced"), ([1.0, 12.0], [1.0, 1.2], True, "inconclusive"),
    ([1.0, 1.2], [1.0, 1.2], False, "inconclusive")])
def test_smaller_curvature(name, bn, bn_last, ok, expected):
    row = CRITERIA[name](bn=bn, none=[5.0, 5.5], bn_last=bn_last, none_last=[5.0, 5.5], ok=ok, k=2.0, top_k=7)
    assert row.verdict == expected and row.measured.startswith("median over trained epochs: BN ")


def test_kappa_criterion_names_k_and_kappa_is_a_ratio():
    assert "lambda_1/lambda_7" in CRITERIA["kappa"](bn=[1.0], none=[2.0], bn_last=[1.0], none_last=[2.0], ok=True,
                                                     k=2.0, top_k=7).criterion
    assert np.allclose(kappa({"e": np.array([[4.0, 2.0, 1.0]])}, "e", k=3), [4.0])


@pytest.mark.parametrize("fewest, expected", [(100, "identity"), (143, "identity"), (99, "not reproduced")])
def test_kernel_identity(fewest, expected):
    row = CRITERIA["singular"](fewest=fewest, hidden=100, zero_rel=1e-6)
    assert row.verdict == expected and "at least 100" in row.criterion and "1e-06" in row.criterion


BLOCK = {"lam1": [[0.8, 0.9], [9.0, 9.5]], "kappa": [[1.9, 2.0], [14.0, 15.0]]}  # [BN seeds, standard seeds]


@pytest.mark.parametrize("full, ok, expected", [
    ({"lam1": [[7.0, 7.5], [19.0, 20.0]], "kappa": [[2.0, 2.1], [6.0, 6.5]]}, True, "reproduced"),
    ({"lam1": [[21.0, 22.0], [19.0, 19.5]], "kappa": [[2.0, 2.1], [6.0, 6.5]]}, True, "partly"),
    ({"lam1": [[21.0, 22.0], [19.0, 19.5]], "kappa": [[7.0, 7.5], [6.0, 6.5]]}, True, "not reproduced"),
    ({"lam1": [[18.0, 21.0], [19.0, 20.0]], "kappa": [[2.0, 2.1], [6.0, 6.5]]}, True, "inconclusive"),
    ({"lam1": [[7.0, 7.5], [19.0, 20.0]], "kappa": [[2.0, 2.1], [6.0, 6.5]]}, False, "inconclusive")])
def test_full_hessian_orders_like_the_block(full, ok, expected):
    assert CRITERIA["full"](full=full, block=BLOCK, ok=ok, k=2.0).verdict == expected


def test_probe_schedule_dense_then_sparse():
    cfg = Params(epochs=30, dense_epochs=6, probe_every=5, full_every=10)
    assert probe_epochs(Params()) == (0, 1, 10, 20, 30) and full_epochs(Params()) == (0, 30)
    assert probe_epochs(cfg) == (0, 1, 2, 3, 4, 5, 6, 10, 15, 20, 25, 30)
    assert full_epochs(cfg) == (0, 10, 20, 30)


def test_wall_clock_names_the_seed_where_bn_never_reached():
    row = CRITERIA["wall_clock"](bn=[1.0, float("inf")], none=[2.0, 2.0], ok=True, k=2.0, margin=0.05,
                                 time_margin=0.05)
    assert row.verdict == "not reproduced" and "never" in row.measured and "inf" not in row.measured
