"""The training chapter's criteria on synthetic per-seed numbers: each reproduces, fails, and is
inconclusive when its precondition (the standard net left chance, no needed run diverged) fails."""

import math

import numpy as np
import pytest

from bnlib import chapters, page
from bnlib.chapters.training import CRITERIA, acc_at, summary, tail_loss
from bnlib.train import History

INF = math.inf
TH = dict(k=2.0, chance_frac=0.9, lr=0.1)
NONE = [1.40, 1.35, 1.45]      # a standard net that left chance (0.9 ln 10 = 2.07)
PLATEAU = [2.25, 2.28, 2.30]   # one still on its plateau


@pytest.mark.parametrize("bn, none, diverged, expected", [
    ([1.0, 0.9, 1.1], NONE, False, "reproduced"),
    ([1.5, 1.45, 1.5], NONE, False, "not reproduced"),
    ([1.0, 1.6, 1.3], NONE, False, "inconclusive"),          # seeds disagree, spread swamps the gap
    ([1.0, 0.9, 1.1], PLATEAU, False, "inconclusive"),       # the standard net never left chance
    ([1.0, 0.9, 1.1], NONE, True, "inconclusive")])          # a needed run diverged
def test_lower_loss(bn, none, diverged, expected):
    row = CRITERIA["lower"](bn=bn, none=none, diverged=diverged, **TH)
    assert row.verdict == expected and "3 seeds" in row.measured and "0.9 ln 10" in row.criterion


@pytest.mark.parametrize("fracs, none, expected", [
    ([0.4, 0.5, 0.6], NONE, "reproduced"),        # a quarter of the budget or more to spare, every seed
    ([0.8, 0.9, 0.95], NONE, "partly"),           # within the budget, less than the margin spare
    ([0.4, INF, 0.5], NONE, "not reproduced"),    # one seed never got there
    ([0.4, 0.5, 0.6], PLATEAU, "inconclusive")])
def test_faster(fracs, none, expected):
    row = CRITERIA["faster"](bn_frac=fracs, none=none, diverged=False, window=150, faster_margin=0.25,
                             keep=0.75, **TH)
    assert row.verdict == expected and "150 steps" in row.criterion and "<= 75%" in row.criterion
    assert ("never" in row.measured) == (INF in fracs)


@pytest.mark.parametrize("bn, none, loss, expected", [
    ([0.62, 0.64, 0.63], [0.55, 0.57, 0.56], NONE, "reproduced"),
    ([0.52, 0.54, 0.53], [0.55, 0.57, 0.56], NONE, "not reproduced"),
    ([0.62, 0.64, 0.63], [0.55, 0.57, 0.56], PLATEAU, "inconclusive")])
def test_higher_accuracy(bn, none, loss, expected):
    row = CRITERIA["accuracy"](bn=bn, none=none, none_loss=loss, diverged=False, **TH)
    assert row.verdict == expected and "%" in row.measured


@pytest.mark.parametrize("bn, none, small, expected", [
    ([1.1, 1.2], [INF, 1.9], NONE[:2], "reproduced"),       # a diverged standard run counts as infinite loss
    ([1.9, 2.0], [1.5, 1.6], NONE[:2], "not reproduced"),
    ([INF, 1.0], [INF, 1.5], NONE[:2], "inconclusive"),     # both diverged on a seed: nothing to compare
    ([1.1, 1.2], [1.5, 1.6], PLATEAU[:2], "inconclusive")])
def test_large_lr(bn, none, small, expected):
    row = CRITERIA["large_lr"](bn=bn, none=none, none_small=small, lr_large=0.5, steps=1000, **TH)
    assert row.verdict == expected and "lr 0.5 after 1000 steps" in row.criterion


def history(losses, accs, diverged=False):
    n = len(losses)
    ev = np.arange(0, n + 1, max(1, n // (len(accs) - 1)))[:len(accs)]
    return History(np.asarray(losses, float), np.zeros(n), np.zeros(n), ev, np.zeros(len(accs)),
                   np.asarray(accs, float), diverged=diverged)


def test_tail_loss_and_accuracy_at_a_step():
    h = history(np.linspace(2.3, 1.3, 100), [0.1, 0.3, 0.5])   # evaluations at 0, 50, 100
    assert tail_loss(h, 0.1) == pytest.approx(np.mean(np.linspace(2.3, 1.3, 100)[-10:]))
    assert tail_loss(h, 0.1, steps=50) == pytest.approx(np.mean(np.linspace(2.3, 1.3, 100)[45:50]))
    assert acc_at(h) == 0.5 and acc_at(h, 60) == 0.3
    dead = history([2.3] * 30, [0.1, 0.1], diverged=True)
    assert tail_loss(dead) == INF and np.isnan(acc_at(dead)) and tail_loss(dead, steps=20) == 2.3


def test_summary_pairs_core_and_variant_runs():
    cfg = chapters.resolve("training", profile="smoke", num_seeds=2)
    hist = {(n, lr, s): history([2.0 - 0.5 * (n == "bn")] * 10, [0.1, 0.2, 0.3])
            for n in ("none", "bn") for lr in (cfg.lr, cfg.lr_large) for s in range(2 if lr == cfg.lr else 1)}
    t = summary(cfg, hist).set_index(["network", "lr"])
    assert t.loc[("BN", cfg.lr), "seeds"] == 2 and t.loc[("BN", cfg.lr_large), "seeds"] == 1
    assert t.loc[("standard", cfg.lr), "final train loss"] == pytest.approx(2.0)


def test_thresholds_table_gives_reasons():
    cfg = chapters.resolve("training", profile="quick")
    t = page.thresholds(cfg).data
    assert list(t["threshold"]) == ["k", "chance_frac", "tail_frac", "faster_margin"]
    assert list(t["value"])[::3] == ["2", "0.25"] and t["reason"].str.len().min() > 20


def test_curves_fit_the_column_with_one_legend_off_the_data():
    import matplotlib

    matplotlib.use("Agg")
    from bnlib import plots
    from bnlib.plots import curves

    hist = {(n, lr, s): history(np.linspace(2.3, 1.0 + (n == "none"), 40), [0.1, 0.3, 0.5],
                                diverged=(lr, s) == (0.5, 1))
            for n in ("none", "bn") for lr in (0.1, 0.5) for s in (0, 1)}
    fig = curves.curves(hist, norms=("none", "bn"), lrs=[0.1, 0.5], metric="train_loss", smooth=5)
    assert fig.get_size_inches()[0] <= plots.COLUMN_IN
    assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in fig.axes)
    assert [ax.get_title() for ax in fig.axes] == ["learning rate 0.1", "learning rate 0.5"]
    assert any(t.get_text() == "diverged" for t in fig.axes[1].texts)


def test_listed_reads_as_words_not_as_a_tuple():
    from bnlib.chapters.training import listed

    assert (listed([0, 1, 2]), listed([0])) == ("0, 1 and 2", "0")
    assert listed([1e-7, 1e-6], "{:g}".format) == "1e-07 and 1e-06"
