"""The ics_noise chapter's criteria and small analysis functions on synthetic numbers, and the
specs it asks the store for (the standard and BN runs must be the training chapter's)."""

import math

import numpy as np
import pandas as pd
import pytest

from bnlib import chapters, profiles
from bnlib.chapters.ics_noise import (
    CRITERIA,
    NORMS,
    anchors,
    at_end,
    at_records,
    bn_identity_errors,
    compared_seeds,
    headline,
    lag_growth,
    lag_steps,
    lag_table,
    map_layer,
    median_shifts,
    mnist_specs,
    record_steps,
    recorded_layers,
    shift_numbers,
    stability,
)
from bnlib.train import History

INF = math.inf
TH = dict(k=2.0, chance_frac=0.9, steps=1000, record_every=25)
# per-seed (2 seeds) final losses and test accuracies of a run where everything holds
LOSS = {"none": [1.60, 1.55], "bn": [1.10, 1.05], "noisy_bn": [1.15, 1.12], "noise": [2.28, 2.30]}
ACC = {"none": [0.45, 0.46], "bn": [0.60, 0.61], "noisy_bn": [0.59, 0.60], "noise": [0.11, 0.10]}
PLATEAU = [2.25, 2.28]


@pytest.mark.parametrize("loss, acc, diverged, expected", [
    ({}, {}, False, "reproduced"),
    ({"noisy_bn": [1.40, 1.38]}, {}, False, "partly"),               # accuracy close, loss excess too large
    ({}, {"noisy_bn": [0.50, 0.52]}, False, "partly"),               # loss close, accuracy 9 points below BN
    ({"noisy_bn": [1.40, 1.38]}, {"noisy_bn": [0.50, 0.52]}, False, "not reproduced"),
    ({"none": PLATEAU}, {}, False, "inconclusive"),                  # standard net still at chance
    ({"bn": [1.65, 1.60]}, {}, False, "inconclusive"),               # BN does not beat standard: nothing to match
    ({"noisy_bn": [1.12, 1.40]}, {}, False, "inconclusive"),        # accuracy holds, loss swamped by the spread
    ({"noisy_bn": [1.12, 1.40]}, {"noisy_bn": [0.35, 0.36]}, False, "not reproduced"),  # accuracy fails clearly
    ({}, {}, True, "inconclusive")])
def test_near_bn(loss, acc, diverged, expected):
    row = CRITERIA["near_bn"](loss={**LOSS, **loss}, acc={**ACC, **acc}, near_frac=0.25, acc_margin=0.03,
                              diverged=diverged, **TH)
    assert row.verdict == expected and "0.25 x the standard" in row.criterion and "- 3%" in row.criterion
    assert "2 seeds" in row.measured


def test_near_bn_fails_when_noisy_bn_is_below_the_standard_net():
    """The issue's case: noisy BN's test accuracy below the standard net's cannot be 'near BN'."""
    row = CRITERIA["near_bn"](loss={**LOSS, "noisy_bn": [1.58, 1.57]}, acc={**ACC, "noisy_bn": [0.44, 0.45]},
                              near_frac=0.25, acc_margin=0.03, diverged=False, **TH)
    assert row.verdict == "not reproduced"


@pytest.mark.parametrize("acc, loss, expected", [
    ({}, {}, "reproduced"),
    ({"noisy_bn": [0.40, 0.41]}, {}, "partly"),                      # noisy BN's accuracy below standard's
    ({"noisy_bn": [0.40, 0.41], "bn": [0.40, 0.41]}, {}, "not reproduced"),
    ({}, {"none": PLATEAU}, "inconclusive")])
def test_beat_standard(acc, loss, expected):
    row = CRITERIA["beat_standard"](loss={**LOSS, **loss}, acc={**ACC, **acc}, diverged=False, **TH)
    assert row.verdict == expected and row.measured.startswith("BN: loss BN 1.075 vs standard")


@pytest.mark.parametrize("m_noisy, v_noisy, none_loss, expected", [
    ([0.40, 0.42], [0.30, 0.31], LOSS["none"], "reproduced"),
    ([0.40, 0.42], [0.05, 0.06], LOSS["none"], "partly"),            # the mean moves more, the variance less
    ([0.01, 0.02], [0.05, 0.06], LOSS["none"], "not reproduced"),
    ([0.01, 0.50], [0.01, 0.50], LOSS["none"], "inconclusive"),      # seeds disagree, spread swamps the gap
    ([0.40, 0.42], [0.30, 0.31], PLATEAU, "inconclusive")])
def test_less_stable(m_noisy, v_noisy, none_loss, expected):
    row = CRITERIA["less_stable"](mshift={"none": [0.05, 0.06], "noisy_bn": m_noisy},
                                  vshift={"none": [0.10, 0.12], "noisy_bn": v_noisy}, loss_none=none_loss,
                                  diverged=False, **TH)
    assert row.verdict == expected and row.measured.startswith("median over layers")
    assert "Site: after the normaliser" in row.criterion and "25 steps apart" in row.criterion


@pytest.mark.parametrize("noise, none, expected", [
    ([2.28, 2.30], LOSS["none"], "reproduced"),                      # never left chance
    ([INF, 2.25], LOSS["none"], "reproduced"),                       # a diverged noise-only run did not train
    ([1.90, 1.95], LOSS["none"], "partly"),                          # trains, but worse than standard
    ([1.40, 1.45], LOSS["none"], "not reproduced"),
    ([2.28, 1.40], [1.60, 1.62], "inconclusive"),                    # one seed stalls, the other beats standard
    ([2.28, 2.30], PLATEAU, "inconclusive")])                        # the standard net did not train either
def test_noise_stalls(noise, none, expected):
    row = CRITERIA["noise_stalls"](noise=noise, none=none, none_diverged=False, **TH)
    assert row.verdict == expected and "0.9 ln 10" in row.criterion and "at step 1000" in row.criterion
    assert ("diverged" in row.measured) == (INF in noise)


def shift_rows(values, site="post"):
    """A per-seed shifts table: {(network, seed): [(mean, var) per layer]}, layers 1, 6 and 7."""
    return pd.DataFrame([{"network": n, "seed": s, "site": site, "layer": i, "mean shift": m, "var shift": v}
                         for (n, s), mv in values.items() for i, (m, v) in zip((1, 6, 7), mv)])


def test_median_shifts_are_per_seed_medians_over_layers_at_one_site():
    sh = pd.concat([shift_rows({("none", 1): [(0.1, 1), (0.3, 2), (0.2, 9)], ("none", 0): [(5, 5), (1, 1), (2, 2)]}),
                    shift_rows({("none", 1): [(9, 9)] * 3, ("none", 0): [(7, 7)] * 3}, site="pre")])
    med = median_shifts(sh)
    assert med["mean shift"]["none"] == [2, 0.2] and med["var shift"]["none"] == [2, 2]  # seed 0 first
    assert median_shifts(sh, "pre")["mean shift"]["none"] == [7, 9]
    st = stability(sh).set_index(["network", "site", "layer"])
    assert st.loc[("none", "post", 1), "mean shift"] == pytest.approx(2.55)
    assert st.loc[("none", "pre", 1), "mean shift"] == pytest.approx(8)


def stab_table(noisy, none):
    """A stability table of 2 layers: noisy BN's and the standard net's shifts given after the
    normaliser, others 1e-3; before it everything is 1."""
    rows = []
    for n in NORMS:
        for k, i in enumerate((1, 6)):
            m, v = {"noisy_bn": noisy[k], "none": none[k]}.get(n, (1e-3, 1e-3))
            rows.append({"network": n, "site": "post", "layer": i, "mean shift": m, "var shift": v})
            rows.append({"network": n, "site": "pre", "layer": i, "mean shift": 1.0, "var shift": 1.0})
    return pd.DataFrame(rows)


def test_shift_numbers():
    sh = shift_numbers(stab_table(noisy=[(0.3, 0.15), (0.3, 0.15)], none=[(0.01, 0.3), (0.1, 0.05)]))
    assert sh["mshift_noisy_bn_6"] == 0.3 and sh["vshift_none_1"] == 0.3 and sh["mshift_none_max"] == 0.1
    assert sh["ratio_min"] == pytest.approx(3) and sh["ratio_max"] == pytest.approx(30)
    assert sh["vratio_min"] == pytest.approx(0.5) and sh["vratio_max"] == pytest.approx(3)
    assert sh["n_layers"] == 2 and sh["n_less_stable"] == 1  # layer 1: the standard net's variance moved more


def test_headline_says_why_an_accuracy_is_missing():
    table = pd.DataFrame([{"network": n, "diverged runs": int(n == "noise"), "final train loss": 1.0,
                           "final test acc": 0.5, "final test acc, noise on": 0.25 if n == "noisy_bn" else np.nan}
                          for n in NORMS])
    h = headline(table)
    assert h["acc_on_noisy_bn"] == "25.0%" and h["acc_on_noise"] == "not measured (diverged)"
    assert h["acc_on_bn"] == "not measured (no noise)" and h["div_bn"] == "finished"
    assert h["div_noise"] == "diverged in 1 seed"


def test_paper_layers_map_to_the_same_relative_depth():
    assert [map_layer(i, 16) for i in (2, 3, 9, 11, 13)] == [2, 3, 9, 11, 13]  # VGG-16 has the paper's 13 convs
    assert [map_layer(i, 11) for i in (2, 3, 9, 11, 13)] == [1, 2, 6, 7, 8]
    assert recorded_layers(chapters.resolve("ics_noise", profile="smoke")) == [1, 2, 6, 7, 8]


@pytest.mark.parametrize("profile", ["smoke", "quick", "paper"])
def test_standard_and_bn_runs_are_the_shared_ones(profile):
    """Same specs as the training chapter (so the store trains them once); the noisy nets differ
    only by the noise options; probes are checkpointed at exactly the record steps."""
    ours, theirs = (chapters.resolve(c, profile=profile) for c in ("ics_noise", "training"))
    assert profiles.vgg_specs(ours) == profiles.vgg_specs(theirs)
    every = profiles.VGG_RECORDS[profile]["record_every"]
    assert record_steps(ours) == tuple(range(0, ours.num_steps, every))
    assert record_steps(ours, ours.variant_steps) == tuple(range(0, ours.variant_steps, every))
    assert compared_seeds(ours) == profiles.seeds(ours)[:ours.variant_seeds]


def test_mnist_variant_pads_and_takes_one_channel():
    cfg = chapters.resolve("ics_noise", profile="smoke", dataset="mnist-mini")
    data, vgg, _ = profiles.vgg_specs(cfg)
    assert data.pad_to == 32 and vgg.in_channels == 1


def history(steps_done, diverged, record_steps):
    z = np.zeros(steps_done)
    return History(z, z, z, np.array([0]), np.array([2.3]), np.array([0.1]), diverged=diverged,
                   records={"step": np.array(record_steps)} if record_steps else {})


def test_probe_steps_stop_where_a_run_stopped():
    done, cut, dead = history(6, False, [0, 2, 4]), history(3, True, [0, 2]), history(0, True, [])
    assert at_records(done) == [0, 2, 4] and at_records(cut) == [0, 2] and at_records(dead) == []
    assert at_end(done) == [6] and at_end(cut) == []  # nothing to evaluate after a divergence


@pytest.mark.parametrize("err_mean, err_var, expected", [
    (2e-6, 4e-6, "identity"), (2e-6, 0.2, "not reproduced"), (0.1, 1e-6, "not reproduced")])
def test_bn_identity_row(err_mean, err_var, expected):
    row = CRITERIA["bn_identity"](err_mean=err_mean, err_var=err_var, ident_tol=1e-3, probed=12)
    assert row.verdict == expected and "Site: after the normaliser" in row.criterion and "12 probed" in row.criterion


def moments_of(gamma, beta, pre_var, post_mean, post_var, norm="bn"):
    """A Moments probe result of one slot at two steps (3 channels)."""
    rows = lambda x: np.tile(np.asarray(x, float), (2, 1))  # noqa: E731
    return {(norm, 0.1, 0): {"step": np.array([0, 1]), "gamma1": rows(gamma), "beta1": rows(beta),
                             "eps1": np.array([1e-5, 1e-5]), "pre1.var": rows(pre_var),
                             "post1.mean": rows(post_mean), "post1.var": rows(post_var)}}


def test_bn_identity_errors_by_hand():
    g, b, v = [2.0, -0.5, 1.0], [0.1, 0.2, -0.3], [4.0, 1.0, 1e-5]
    exact = [gi**2 * vi / (vi + 1e-5) for gi, vi in zip(g, v)]  # the last channel: half its variance
    assert bn_identity_errors(moments_of(g, b, v, b, exact)) == {"mean": 0.0, "var": pytest.approx(0, abs=1e-12)}
    err = bn_identity_errors(moments_of(g, b, v, [0.1, 0.25, -0.3], [e * 1.01 for e in exact]))
    assert err["mean"] == pytest.approx(0.1) and err["var"] == pytest.approx(0.01)  # 0.05 / |-0.5|
    assert bn_identity_errors(moments_of(g, b, v, [9, 9, 9], exact, norm="none")) == {"mean": 0, "var": 0}


MARG = dict(marginal=2.0, loss_none=[1.3, 1.3, 1.3], diverged=False, num_steps=1500, **TH)


@pytest.mark.parametrize("ratio_mean, ratio_var, loss_none, expected", [
    ([1.2, 0.8, 1.5], [0.9, 1.1, 1.9], None, "reproduced"),
    ([1.2, 0.8, 1.5], [3.0, 1.1, 1.9], None, "partly"),              # variance: one seed beyond a factor 2
    ([2.5, 0.8, 1.5], [0.3, 1.1, 1.9], None, "not reproduced"),
    ([1.2, 0.8, 1.5], [0.9, 1.1, 1.9], [2.25, 1.3, 1.3], "inconclusive")])
def test_marginal_fig1c(ratio_mean, ratio_var, loss_none, expected):
    kw = {**MARG, "loss_none": loss_none or MARG["loss_none"]}
    row = CRITERIA["marginal"](ratio_mean=ratio_mean, ratio_var=ratio_var, **kw)
    assert row.verdict == expected and "Site: before the normaliser" in row.criterion
    assert "factor 2 either way" in row.criterion and "all 1500 steps" in row.criterion


LAG = dict(grow_ratio=2.0, k=2.0, anchors="300, 500", lags_hi=100, lags_lo=1)


@pytest.mark.parametrize("noisy, none, diverged, expected", [
    ([1.0, 1.1], [20.0, 30.0], False, "reproduced"),
    ([1.0, 1.1], [1.5, 1.2], False, "not reproduced"),               # the standard net does not drift either
    ([5.0, 4.0], [20.0, 30.0], False, "not reproduced"),             # the "noise" grows: it is drift
    ([1.0, 1.1], [2.34, 1.04], False, "inconclusive"),               # standard's seeds straddle the threshold
    ([1.0, 1.1], [20.0, 30.0], True, "inconclusive")])
def test_lag_growth_row(noisy, none, diverged, expected):
    row = CRITERIA["lag_growth"](noisy={"mean shift": noisy, "var shift": noisy},
                                 none={"mean shift": none, "var shift": none}, diverged=diverged, **LAG)
    assert row.verdict == expected and "Site: after the normaliser" in row.criterion
    assert "from steps 300, 500 to 100 steps later over the shift at the shortest lag, 1 (lags" in row.criterion


def test_lag_growth_row_partly_when_one_moment_holds():
    row = CRITERIA["lag_growth"](noisy={"mean shift": [1.0, 1.1], "var shift": [1.0, 1.1]},
                                 none={"mean shift": [20.0, 30.0], "var shift": [1.2, 1.3]}, diverged=False, **LAG)
    assert row.verdict == "partly"


def lag_moments(norm, grow):
    """Moments probe results of one slot (2 channels) at anchors 0, 10 and lags 1, 5: the mean
    moves by ``grow(lag)`` standard deviations (variance 4) from each anchor."""
    steps = [0, 1, 5, 10, 11, 15]
    mean = np.array([[0.0, 0.0] if s % 10 == 0 else [2 * grow(s % 10)] * 2 for s in steps])
    var = np.full((6, 2), 4.0)
    return {(norm, 0.1, 0): {"step": np.array(steps), **{f"{site}{i}.{m}": x for site in ("pre", "post")
                                                        for i in (1, 2) for m, x in (("mean", mean), ("var", var))}}}


def test_lag_table_and_growth_from_anchors():
    cfg = chapters.resolve("ics_noise", profile="smoke", lags=(1, 5), lag_anchors=(0, 10), variant_seeds=1)
    hist = {k: history(20, False, [0]) for k in (("noisy_bn", 0.1, 0), ("none", 0.1, 0))}
    mom = lag_moments("noisy_bn", lambda lag: 0.5) | lag_moments("none", lambda lag: 0.1 * lag)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("bnlib.chapters.ics_noise.recorded_layers", lambda cfg: [1, 2])
        lags = lag_table(cfg, hist, mom)
    assert set(lags["lag"]) == {1, 5} and set(lags["site"]) == {"pre", "post"} and len(lags) == 2 * 2 * 2 * 2
    got = lags.set_index(["network", "site", "layer", "lag"])["mean shift"]
    assert got[("noisy_bn", "post", 1, 1)] == pytest.approx(0.5) and got[("none", "pre", 2, 5)] == pytest.approx(0.5)
    assert lag_growth(cfg, lags, "noisy_bn")["mean shift"] == [pytest.approx(1)]
    assert lag_growth(cfg, lags, "none")["mean shift"] == [pytest.approx(5)]
    assert (lags["var shift"] == 0).all()


def test_lag_steps_and_anchors_stop_where_a_run_stopped():
    cfg = chapters.resolve("ics_noise", profile="smoke", lags=(1, 4), lag_anchors=(0, 2))
    assert lag_steps(cfg, history(6, False, [0])) == [0, 1, 2, 3, 4, 6]
    assert anchors(cfg, history(5, True, [0])) == [0] and lag_steps(cfg, history(3, True, [0])) == []


MNIST = {"none": [0.30, 0.32], "bn": [0.15, 0.16], "noisy_bn": [0.18, 0.19]}


@pytest.mark.parametrize("loss, diverged, expected", [
    ({}, False, "reproduced"),
    ({"noisy_bn": [0.35, 0.36]}, False, "not reproduced"),
    ({"none": [2.2, 2.25]}, False, "inconclusive"),                  # the standard LeNet did not train
    ({}, True, "inconclusive")])
def test_mnist_beats(loss, diverged, expected):
    row = CRITERIA["mnist_beats"](loss={**MNIST, **loss}, diverged=diverged, mnist_steps=300, **TH)
    assert row.verdict == expected and "MNIST, LeNet, 300 steps" in row.criterion


@pytest.mark.parametrize("loss, expected", [
    ({}, "reproduced"),
    ({"noisy_bn": [0.28, 0.29]}, "not reproduced"),                  # excess 0.13 > 0.25 x 0.15
    ({"bn": [0.31, 0.33]}, "inconclusive"),                          # BN no better than standard
    ({"none": [2.2, 2.25]}, "inconclusive")])
def test_mnist_near(loss, expected):
    row = CRITERIA["mnist_near"](loss={**MNIST, **loss}, near_frac=0.25, diverged=False, mnist_steps=300, **TH)
    assert row.verdict == expected and "0.25 x the standard" in row.criterion


@pytest.mark.parametrize("profile", ["smoke", "quick", "paper"])
def test_mnist_replication_specs(profile):
    """MNIST at its own 28 x 28, a one-channel LeNet, the chapter's SGD and records; the anchors
    plus the longest lag fit in the noisy runs."""
    cfg = chapters.resolve("ics_noise", profile=profile)
    data, model, sgd = mnist_specs(cfg)
    assert data.name.startswith("mnist") and data.pad_to is None
    assert (model.arch, model.in_channels, model.image_size) == ("lenet", 1, 28)
    assert (sgd.lr, sgd.batch_size, sgd.num_steps) == (cfg.lr, cfg.batch_size, cfg.mnist_steps)
    assert max(cfg.lag_anchors) + max(cfg.lags) <= cfg.variant_steps


def test_stability_wide_puts_the_networks_side_by_side_per_site_and_layer():
    from bnlib.chapters.ics_noise import NORMS, SITES, stability_wide

    rows = [{"network": n, "site": s, "layer": i, "mean shift": 0.1 * k, "var shift": 0.01 * i}
            for k, n in enumerate(NORMS) for s in SITES for i in (1, 2, 6)]
    mean, var = (stability_wide(pd.DataFrame(rows), q) for q in ("mean shift", "var shift"))
    assert list(mean.index) == [(site, f"layer {i}") for site in ("before the normaliser", "after the normaliser")
                                for i in (1, 2, 6)]
    assert list(mean.columns) == ["standard", "BN", "noisy BN", "noise only"]
    assert mean.loc[("after the normaliser", "layer 6"), "noisy BN"] == pytest.approx(0.2)
    assert var.loc[("before the normaliser", "layer 2"), "standard"] == pytest.approx(0.02)
