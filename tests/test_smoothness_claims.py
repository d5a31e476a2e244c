"""The smoothness chapter's criteria on synthetic numbers (each can pass, fail, and say partly),
and its tables on synthetic probe results and histories."""

import numpy as np
import pytest

from bnlib import config
from bnlib.chapters import smoothness as ch
from bnlib.chapters.smoothness import CRITERIA
from bnlib.train import History


@pytest.mark.parametrize("name", ["vgg_loss_range", "vgg_grad_diff", "vgg_beta_eff"])
@pytest.mark.parametrize("factors, expected", [
    ([3.0, 1.5], "reproduced"), ([3.0, 0.8], "partly"), ([0.5, 0.9], "not reproduced"), ([2.0], "reproduced")])
def test_median_factor_on_every_seed(name, factors, expected):
    row = CRITERIA[name](factors=factors)
    assert row.verdict == expected and "every seed" in row.criterion


@pytest.mark.parametrize("factors, expected", [
    ([150.0, 120.0], "reproduced"), ([150.0, 20.0], "partly"), ([150.0, 5.0], "not reproduced"),
    ([0.01], "not reproduced")])
def test_two_orders_of_magnitude_early(factors, expected):
    row = CRITERIA["vgg_early"](factors=factors)
    assert row.verdict == expected and "maximum" in row.criterion


@pytest.mark.parametrize("name", ["dln", "vgg_random", "dln_random"])
@pytest.mark.parametrize("factors, expected", [
    ({"loss_range": [2.0, 3.0], "grad_diff": [1.5, 1.2], "beta_eff": [4.0, 1.1]}, "reproduced"),
    ({"loss_range": [2.0, 3.0], "grad_diff": [1.5, 1.2], "beta_eff": [4.0, 0.9]}, "partly"),
    ({"loss_range": [2.0, 3.0], "grad_diff": [0.5, 1.2], "beta_eff": [4.0, 0.9]}, "not reproduced")])
def test_all_three_quantities(name, factors, expected):
    row = CRITERIA[name](factors=factors, kind="unit")
    assert row.verdict == expected
    assert ("(unit)" in row.criterion) == name.endswith("random")


@pytest.mark.parametrize("bn, none, expected", [
    (2.0, 0.5, "reproduced"), (2.0, 0.0, "partly"), (0.5, 0.5, "not reproduced"), (0.0, 0.0, "not reproduced"),
    (0.1, 0.5, "not reproduced")])
def test_larger_learning_rate(bn, none, expected):
    row = CRITERIA["vgg_lr"](bn=bn, none=none, lrs="0.1, 0.5, 2", trained_below=0.9)
    assert row.verdict == expected and "0.9 x initial" in row.criterion and "swept 0.1, 0.5, 2" in row.measured


def _probe(steps, loss_range, grad_diff, beta):
    steps = np.asarray(steps)
    return {"step": steps, "loss_min": np.zeros(len(steps)), "loss_max": np.asarray(loss_range, float),
            "grad_diff_max": np.asarray(grad_diff, float), "beta_eff": np.asarray(beta, float)}


def test_factor_summary_on_synthetic_probes():
    """Standard / BN per probed step; only the steps both runs reached count; medians, early max, last."""
    none = _probe([0, 10, 20, 30], [8, 4, 2, 6], [1, 1, 1, 1], [2, 2, 2, 2])
    bn = _probe([0, 10, 20], [2, 2, 2], [1, 2, 4], [1, 1, 4])  # step 30 missing: the BN run diverged
    s = ch.factor_summary({("vgg", "grad"): {("none", 0): none, ("bn", 0): bn}}, [0]).set_index("metric")
    assert s.loc["loss_range", ["med", "max", "early", "last"]].tolist() == [2.0, 4.0, 4.0, 1.0]
    assert s.loc["grad_diff", "med"] == 0.5 and s.loc["beta_eff", "last"] == 0.5


def _hist(losses, diverged=False):
    n = len(losses)
    return History(np.asarray(losses, np.float32), np.zeros(n, np.float32), np.zeros(n), np.array([n]),
                   np.array([0.0]), np.array([0.0]), diverged)


class _Runs(dict):
    def __init__(self, hist):
        super().__init__({k: None for k in hist})
        self.hist = hist


def test_sweep_table_and_largest_lr():
    cfg = config.resolve(ch.Params, "smoke")
    fall, flat = [2.3] * 5 + [1.0] * 5, [2.3] * 10
    hist = {("none", 0.1, 10, 0): _hist(fall), ("none", 2.0, 10, 0): _hist([2.3, np.inf], diverged=True),
            ("bn", 0.1, 10, 0): _hist(fall), ("bn", 2.0, 10, 0): _hist(fall),
            ("bn", 0.5, 10, 0): _hist(flat), ("none", 0.5, 10, 0): _hist(flat)}
    table = ch.sweep_table(cfg, {"vgg": _Runs(hist)})
    assert table[["norm", "lr"]].values.tolist() == [["none", 0.1], ["none", 0.5], ["none", 2.0],
                                                     ["bn", 0.1], ["bn", 0.5], ["bn", 2.0]]
    assert table["trains"].tolist() == [True, False, False, True, False, True]
    assert table["diverged"].tolist() == [0, 0, 1, 0, 0, 0]
    assert ch.largest_lr(table, "vgg", "bn") == 2.0 and ch.largest_lr(table, "vgg", "none") == 0.1


def test_line_searches_follow_the_parameters_and_stop_at_divergence():
    cfg = config.resolve(ch.Params, "smoke", num_mults=4, direction_kind="filter")
    lines = ch.line_searches(cfg)
    grad, steps = lines["vgg", "grad"]
    rand, rsteps = lines["vgg", "rand"]
    assert grad.direction == "gradient" and len(grad.multipliers) == 4
    assert grad.multipliers[0] == pytest.approx(cfg.mult_min) and grad.multipliers[-1] == pytest.approx(cfg.mult_max)
    assert rand.direction == "filter" and rand.multipliers == grad.multipliers and rand.seed == cfg.seed
    assert lines["dln", "grad"][0].multipliers[-1] == pytest.approx(cfg.dln_mult_max)
    full, stopped = _hist([1.0] * cfg.num_steps), _hist([1.0] * 3, diverged=True)
    assert steps(full) == ch.probe_steps(cfg, "vgg") == list(range(0, cfg.num_steps, cfg.probe_every))
    assert rsteps(full) == ch.probe_steps(cfg, "vgg")[::2]
    assert steps(stopped) == [s for s in ch.probe_steps(cfg, "vgg") if s < 3]
