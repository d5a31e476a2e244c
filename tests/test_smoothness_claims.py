"""The smoothness chapter's criteria on synthetic numbers (each reproduces, fails, and is
inconclusive or partly where it can be), and its tables on synthetic probe results and histories."""

import numpy as np
import pytest

from bnlib import config
from bnlib.chapters import smoothness as ch
from bnlib.chapters.smoothness import CRITERIA
from bnlib.train import History

TH = dict(compare_from=300, k=2.0, chance_frac=0.9, trained_below=0.9, tail_frac=0.2, early_factor=100.0,
          early_partly=10.0, layer_share=0.5, kind="unit", mult_max=4.0, beyond="0.8, 1.6 x the gradient")


@pytest.mark.parametrize("name", ["vgg_loss_range", "vgg_grad_diff", "vgg_beta_eff"])
@pytest.mark.parametrize("factors, trained, expected", [
    ([3.0, 1.5, 2.0], True, "reproduced"), ([2.0], True, "reproduced"),
    ([0.22, 0.38, 1.0], True, "not reproduced"),        # the medians: the standard net smoother
    ([3.0, 0.3, 2.0], True, "inconclusive"),           # seeds disagree within their spread
    ([3.0, 1.5, 2.0], False, "inconclusive")])         # the standard net stayed at chance
def test_median_factor_over_seeds(name, factors, trained, expected):
    row = CRITERIA[name](factors=factors, trained=trained, **TH)
    assert row.verdict == expected and "every seed" in row.criterion and "step 300" in row.criterion
    assert "partly" not in row.criterion.lower()
    assert ("precondition fails" in row.measured) == (not trained)


@pytest.mark.parametrize("factors, trained, expected", [
    ([150.0, 120.0, 300.0], True, "reproduced"), ([150.0, 20.0, 30.0], True, "partly"),
    ([15.0, 5.0, 2.0], True, "not reproduced"), ([0.01], True, "not reproduced"),
    ([150.0, 120.0, 300.0], False, "inconclusive"), ([1000.0, 0.5, 0.01], True, "inconclusive")])
def test_two_orders_of_magnitude_early(factors, trained, expected):
    row = CRITERIA["vgg_early"](factors=factors, trained=trained, **TH)
    assert row.verdict == expected and "maximum" in row.criterion and "Partly: > 10" in row.criterion


@pytest.mark.parametrize("name", ["dln", "vgg_random", "dln_random", "vgg_beyond"])
@pytest.mark.parametrize("factors, trained, expected", [
    ({"loss_range": [2.0, 3.0], "grad_diff": [1.5, 1.2], "beta_eff": [4.0, 1.1]}, True, "reproduced"),
    ({"loss_range": [2.0, 3.0], "grad_diff": [1.5, 1.2], "beta_eff": [0.8, 0.9]}, True, "partly"),
    ({"loss_range": [2.0, 3.0], "grad_diff": [0.5, 0.7], "beta_eff": [0.8, 0.9]}, True, "not reproduced"),
    ({"loss_range": [2.0, 3.0], "grad_diff": [0.5, 8.0], "beta_eff": [0.8, 0.9]}, True, "inconclusive"),
    ({"loss_range": [2.0, 3.0], "grad_diff": [1.5, 1.2], "beta_eff": [4.0, 1.1]}, False, "inconclusive")])
def test_all_three_quantities(name, factors, trained, expected):
    row = CRITERIA[name](factors=factors, trained=trained, **TH)
    assert row.verdict == expected and "Partly: it holds for two of the three" in row.criterion
    assert ("(unit)" in row.criterion) == name.endswith("random")


@pytest.mark.parametrize("bn, none, expected", [
    (2.0, 0.5, "reproduced"), (0.5, 0.5, "not reproduced"), (0.1, 0.5, "not reproduced"),
    (2.0, 0.0, "inconclusive"), (0.0, 0.0, "inconclusive")])
def test_larger_learning_rate(bn, none, expected):
    row = CRITERIA["vgg_lr"](bn=bn, none=none, lrs="0.1, 0.5, 2", seeds=1, rule="< 0.9 x ln 10", **TH)
    assert row.verdict == expected and "< 0.9 x ln 10" in row.criterion and "0.2 of the steps" in row.criterion
    assert "swept 0.1, 0.5, 2; 1 seed" in row.measured


def _probe(steps, loss_range, grad_diff, beta):
    steps = np.asarray(steps)
    return {"step": steps, "loss_min": np.zeros(len(steps)), "loss_max": np.asarray(loss_range, float),
            "grad_diff_max": np.asarray(grad_diff, float), "beta_eff": np.asarray(beta, float)}


def test_factor_summary_on_synthetic_probes():
    """Standard / BN per probed step; only the steps both runs reached count; medians from
    compare_from on, the early maximum (first half), the last."""
    cfg = config.resolve(ch.Params, "smoke", num_steps=40, compare_from=10)
    none = _probe([0, 10, 20, 30], [8, 4, 2, 6], [1, 1, 1, 1], [2, 2, 2, 2])
    bn = _probe([0, 10, 20], [2, 2, 2], [1, 2, 4], [1, 1, 4])  # step 30 missing: the BN run diverged
    s = ch.factor_summary(cfg, {("vgg", "grad"): {("none", 0): none, ("bn", 0): bn}}, [0]).set_index("metric")
    assert s.loc["loss_range", ["med", "early", "last"]].tolist() == [1.5, 4.0, 1.0]  # med of 2, 1 (steps 10, 20)
    assert s.loc["grad_diff", "med"] == pytest.approx(0.375) and s.loc["beta_eff", "last"] == 0.5


def _hist(losses, diverged=False):
    n = len(losses)
    return History(np.asarray(losses, np.float32), np.zeros(n, np.float32), np.zeros(n), np.array([n]),
                   np.array([0.0]), np.array([0.0]), diverged)


def test_sweep_table_and_largest_lr():
    cfg = config.resolve(ch.Params, "smoke")
    fall, flat = [2.3] * 5 + [1.0] * 5, [2.3] * 10
    hist = {("none", 0.1, 0): _hist(fall), ("none", 2.0, 0): _hist([2.3, np.inf], diverged=True),
            ("bn", 0.1, 0): _hist(fall), ("bn", 2.0, 0): _hist(fall),
            ("bn", 0.5, 0): _hist(flat), ("none", 0.5, 0): _hist(flat)}
    table = ch.sweep_table(cfg, {"vgg": hist})
    assert table[["norm", "lr"]].values.tolist() == [["none", 0.1], ["none", 0.5], ["none", 2.0],
                                                     ["bn", 0.1], ["bn", 0.5], ["bn", 2.0]]
    assert table["trains"].tolist() == [True, False, False, True, False, True]
    assert table["diverged"].tolist() == [0, 0, 1, 0, 0, 0]
    assert ch.largest_lr(table, "vgg", "bn") == 2.0 and ch.largest_lr(table, "vgg", "none") == 0.1
    dln = ch.sweep_table(cfg, {"dln": {("none", 1e-6, 0): _hist([100.0] * 5 + [95.0] * 5),
                                       ("bn", 1e-6, 0): _hist([100.0] * 5 + [50.0] * 5)}})
    assert dln["trains"].tolist() == [False, True]  # 95 is not below 0.9 x 100


def test_prefix_is_a_shorter_run():
    h = History(np.arange(10, dtype=np.float32), np.zeros(10, np.float32), np.arange(10.0), np.array([0, 5, 10]),
                np.ones(3), np.ones(3), False)
    p = ch.prefix(h, 6)
    assert p.steps_done == 6 and p.eval_step.tolist() == [0, 5] and not p.diverged
    late = History(np.array([1.0, 1.0, np.inf], np.float32), np.zeros(3), np.arange(3.0), np.array([0]),
                   np.ones(1), np.ones(1), True)
    assert not ch.prefix(late, 2).diverged and ch.prefix(late, 3).diverged


def test_line_searches_follow_the_parameters_and_stop_at_divergence():
    cfg = config.resolve(ch.Params, "smoke", num_mults=4, direction_kind="filter")
    lines = ch.line_searches(cfg)
    grad, steps = lines["vgg", "grad"]
    rand, rsteps = lines["vgg", "rand"]
    assert grad.direction == "gradient" and len(grad.multipliers) == 4 + len(cfg.beyond_mults)
    assert grad.multipliers[0] == pytest.approx(cfg.mult_min) and grad.multipliers[3] == pytest.approx(cfg.mult_max)
    assert grad.multipliers[4:] == cfg.beyond_mults  # the VGG's gradient line goes on past the paper's cap
    assert rand.direction == "filter" and rand.multipliers == grad.multipliers[:4] and rand.seed == cfg.seed
    assert lines["dln", "grad"][0].multipliers[-1] == pytest.approx(cfg.dln_mult_max)
    full, stopped = _hist([1.0] * cfg.num_steps), _hist([1.0] * 3, diverged=True)
    assert steps(full) == ch.probe_steps(cfg, "vgg") == list(range(0, cfg.num_steps, 2))
    assert rsteps(full) == ch.probe_steps(cfg, "vgg")[::2]
    assert steps(stopped) == [s for s in ch.probe_steps(cfg, "vgg") if s < 3]
    quick = config.resolve(ch.Params, "quick")
    assert ch.probe_steps(quick, "vgg")[:3] == [0, 25, 50] and ch.probe_steps(quick, "vgg")[-1] == 1400


def test_sweeps_reuse_the_shared_runs_where_long_enough():
    cfg = config.resolve(ch.Params, "quick")
    shared = ch.shared_runs(cfg)
    assert set(shared["vgg"]) == {0.1, 0.5} and set(shared["dln"]) == {1e-6, 1e-7}
    assert shared["vgg"][0.5][0][2].num_steps >= cfg.sweep_steps


ACT_NONE = np.array([[2.0, 3.0, 4.0, 5.0]] * 3)  # (seeds, layers)
WEIGHT = dict(weight_bn=np.ones((3, 4)), weight_none=np.full((3, 4), 2.0))


@pytest.mark.parametrize("act_bn, trained, expected", [
    (ACT_NONE / 2, True, "reproduced"),
    (ACT_NONE * np.array([0.5, 0.5, 0.5, 2.0]), True, "partly"),      # lower in 3 of 4 layers
    (ACT_NONE * np.array([0.5, 2.0, 2.0, 2.0]), True, "not reproduced"),
    (ACT_NONE / 2, False, "inconclusive"),                             # the standard net stayed at chance
    (ACT_NONE * np.array([[0.5, 0.5, 0.2, 0.5], [0.5, 0.5, 3.0, 0.5], [0.5, 0.5, 0.9, 0.5]]), True,
     "inconclusive")])                                                 # layer 3 swamped: reproduced or partly
def test_lower_gradient_magnitudes(act_bn, trained, expected):
    row = CRITERIA["vgg_lipschitz"](act_bn=act_bn, act_none=ACT_NONE, **WEIGHT, trained=trained, **TH)
    assert row.verdict == expected and "input of its normaliser" in row.criterion and "Partly: at more than 0.5" \
        in row.criterion
    assert "not the paper's site): BN lower in 4 of 4" in row.measured and "mean over 3 seeds" in row.measured


def test_split_line_cuts_the_vgg_gradient_line_at_mult_max():
    cfg = config.resolve(ch.Params, "smoke", mult_max=4.0)
    mults = np.array([[0.5, 2.0, 4.0, 8.0, 16.0]] * 2)
    p = {"step": np.array([0, 10]), "multipliers": mults, "loss": np.array([[1, 2, 3, 9, 5]] * 2, float),
         "grad_diff": mults * 2, "grad_norm": mults, "distance": mults, "loss_min": np.zeros(2)}
    along = {("vgg", "grad"): {("bn", 0): p}, ("dln", "grad"): {("bn", 0): p}}
    inside, beyond = ch.split_line(cfg, along)
    assert inside["dln", "grad"]["bn", 0] is p and set(beyond) == {("vgg", "grad")}
    a, b = inside["vgg", "grad"]["bn", 0], beyond["vgg", "grad"]["bn", 0]
    assert a["multipliers"][0].tolist() == [0.5, 2.0, 4.0] and b["multipliers"][0].tolist() == [8.0, 16.0]
    assert (a["loss_max"].tolist(), b["loss_min"].tolist(), b["grad_diff_max"].tolist()) == ([3, 3], [5, 5], [32, 32])
    assert a["beta_eff"].tolist() == [2.0, 2.0]


def test_the_small_dln_run_is_the_ics_chapters():
    """The sweep's DLN at 1e-7 reuses the ICS chapter's run at its quick length (trained once)."""
    from bnlib import chapters
    cfg, ics = config.resolve(ch.Params, "quick"), chapters.resolve("ics_measure", profile="quick")
    spec = ch.shared_runs(cfg)["dln"][1e-7][0]
    assert spec[2].num_steps == ics.dln_small_steps >= cfg.dln_sweep_steps and ics.dln_lr_small == 1e-7


def test_sweep_table_reads_in_words():
    import pandas as pd

    from bnlib.chapters.smoothness import styled_sweep

    t = pd.DataFrame([{"network": "dln", "norm": "bn", "lr": 1e-6, "seeds": 1, "steps": 10, "initial loss": 84_860.0,
                       "tail loss": float("inf"), "diverged": 1, "trains": False}])
    html = styled_sweep(t).to_html()
    for text in ("DLN", "Standard + BatchNorm", "1e-6", "84,860", "diverged", ">no<", "learning rate"):
        assert text in html, text
