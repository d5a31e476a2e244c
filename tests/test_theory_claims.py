"""The theory chapter's criteria on synthetic numbers: printed bounds reproduce or fail over all
instances, network sizes over the seeds (with an inconclusive case), identities are identities."""

import numpy as np
import pytest

from bnlib.chapters.theory import CRITERIA, Params, pool, probe_steps

TH = dict(k=2.0, tol_random=1e-9, tol_network=1e-5)


@pytest.mark.parametrize("name", ["thm_4_1", "thm_4_4", "eq_16"])
@pytest.mark.parametrize("fail, vgg_fail, holds, expected", [
    (0.0, 0.0, True, "reproduced"), (0.45, 0.3, False, "not reproduced"), (0.0, 0.01, False, "not reproduced")])
def test_printed_forms(name, fail, vgg_fail, holds, expected):
    row = CRITERIA[name](fail=fail, vgg_fail=vgg_fail, holds=holds, **TH)
    assert row.verdict == expected
    assert row.measured == f"{fail:.1%} of random instances and {vgg_fail:.1%} of probed VGG units (all seeds) fail"


def test_printed_thm_4_1_names_its_tolerances():
    assert "-1e-09 random, -1e-05 VGG" in CRITERIA["thm_4_1"](fail=0.0, vgg_fail=0.0, holds=True, **TH).criterion


@pytest.mark.parametrize("holds, expected", [(True, "reproduced"), (False, "not reproduced")])
def test_thm_4_2_printed(holds, expected):
    assert CRITERIA["thm_4_2"](fail=0.4, vgg_fail=0.5, holds=holds).verdict == expected


@pytest.mark.parametrize("name", ["never_enlarges", "thm_4_2_reading", "obs_4_3", "lemma_4_5"])
@pytest.mark.parametrize("ok, expected", [(True, "identity"), (False, "not reproduced")])
def test_identities(name, ok, expected):
    row = CRITERIA[name](text="47 pairs checked", ok=ok, obs_limit=1e-4)
    assert row.verdict == expected and row.measured == "47 pairs checked" and row.criterion.startswith("identity")


@pytest.mark.parametrize("values, ok, expected", [
    ([0.2, 0.3, 0.25], True, "reproduced"), ([0.03, 0.05, 0.02], True, "partly"),
    ([0.001, 0.002, 0.0], True, "not reproduced"), ([0.5, 0.0, 0.001], True, "inconclusive"),
    ([0.2, 0.3, 0.25], False, "inconclusive")])
def test_mean_term_over_seeds(values, ok, expected):
    row = CRITERIA["mean_term"](values=values, strong=0.1, weak=0.01, ok=ok, k=2.0, mean_strong=0.1, mean_weak=0.01)
    assert row.verdict == expected and row.measured.startswith("per seed ") and "3 seeds" in row.measured
    assert "> 10%" in row.criterion and "> 1%" in row.criterion


@pytest.mark.parametrize("values, expected", [
    ([0.95, 0.97], "reproduced"), ([0.6, 0.7], "partly"), ([0.3, 0.2], "not reproduced"),
    ([0.99, 0.1], "inconclusive")])
def test_inner_product_positive(values, expected):
    row = CRITERIA["inner"](values=values, strong=0.9, weak=0.5, ok=True, k=2.0, fmt="{:.0%}",
                            inner_strong=0.9, inner_weak=0.5)
    assert row.verdict == expected and row.measured.startswith("per seed ") and "%" in row.measured


@pytest.mark.parametrize("conv, fc, ok, expected", [
    ([1.0, 1.0], [1.0, 1.0], True, "reproduced"), ([0.9, 1.0], [1.0, 1.0], True, "partly"),
    ([1.0, 1.0], [0.95, 1.0], True, "not reproduced"), ([1.0, 1.0], [1.0, 1.0], False, "inconclusive")])
def test_psd(conv, fc, ok, expected):
    row = CRITERIA["psd"](conv=conv, fc=fc, ok=ok)
    assert row.verdict == expected and row.measured.startswith("conv layer ")


@pytest.mark.parametrize("values, ok, expected", [
    ([0.4, 0.5, 0.3], True, "reproduced"), ([2.6, 3.0, 2.0], True, "not reproduced"),
    ([0.1, 5.0, 0.2], True, "inconclusive"), ([0.4, 0.5, 0.3], False, "inconclusive")])
def test_sigma_large(values, ok, expected):
    row = CRITERIA["sigma"](values=values, limit=1.0, ok=ok, k=2.0, sigma_limit=1.0)
    assert row.verdict == expected and "< 1," in row.criterion


def test_pool_stacks_probes_and_collects_scalars():
    a = {"step": np.array([0, 25]), "fc/x": np.ones((2, 3)), "obs": 1e-7}
    b = {"step": np.array([0, 25]), "fc/x": np.zeros((2, 3)), "obs": 2e-7}
    p = pool({0: a, 1: b})
    assert p["fc/x"].shape == (4, 3) and np.allclose(p["obs"], [1e-7, 2e-7])


def test_probe_steps_dense_then_sparse():
    cfg = Params(num_steps=1500, probe_every=25, dense_until=200, sparse_every=100)
    steps = probe_steps(cfg)
    assert steps[:9] == tuple(range(0, 201, 25)) and steps[9:] == tuple(range(300, 1501, 100))
    assert probe_steps(Params()) == (0, 50, 100, 800, 1500)  # quick
    assert probe_steps(Params(num_steps=6, probe_every=2, dense_until=4, sparse_every=2)) == (0, 2, 4, 6)


def _synthetic_net(rng, steps=(0, 50, 100), units=4):
    k, net = len(steps), {"step": np.array(steps)}
    for lay in ("conv", "fc"):
        p = f"{lay}/thm_4_1/terms/"
        net |= {p + "norm": rng.uniform(1, 2, (k, units)), p + "mean": rng.uniform(0, 0.1, (k, units)),
                p + "corr": rng.uniform(0, 0.1, (k, units)), p + "scale": rng.uniform(0.5, 3, (k, units)),
                f"{lay}/thm_4_2/exact/lhs": rng.uniform(1e-5, 3e-5, k),
                f"{lay}/thm_4_2/terms/hess": rng.uniform(1e-5, 3e-5, k),
                f"{lay}/thm_4_2/terms/correction": rng.normal(0, 1e-7, k),
                f"{lay}/thm_4_2/terms/inner": rng.normal(0, 1, (k, units))}
    return net


def test_figures_fit_the_column_and_label_their_axes():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from bnlib import plots
    from bnlib.plots import bounds

    rng = np.random.default_rng(0)
    nets = {s: _synthetic_net(rng) for s in (0, 1)}
    n = 50
    inst = {"thm_4_1/terms/scale": rng.uniform(0.5, 2, n), "thm_4_1/terms/norm": rng.uniform(1, 2, n),
            **{f"thm_4_1/{f}/{side}": rng.uniform(0, 1, n)
               for f in ("seed003", "corrected") for side in ("lhs", "rhs")}}
    eps = {"delta": 10 ** rng.uniform(-5, 0, n),
           **{f"{key}/{q}": rng.uniform(0.5, 1, n)
              for key in ("thm_4_1/corrected", "thm_4_2/seed000") for q in ("lhs", "rhs", "mag")}}
    table = pd.DataFrame({"statement": ["Thm 4.1", "Thm 4.2"], "form": ["Santurkar et al.", "ours"],
                          "random instances failing": [0.4, 0.0], "VGG: failing": [0.9, np.nan]})
    for fig in (bounds.thm41_terms(nets), bounds.thm42_terms(nets), bounds.thm41_scatter(inst),
                bounds.failure_rates(table), bounds.eps_effect(eps)):
        fig.canvas.draw()
        assert fig.get_size_inches()[0] <= plots.COLUMN_IN
        for ax in fig.axes:  # tick labels on every labelled axis (log axes within a decade included)
            assert not ax.get_ylabel() or any(t.get_text() for t in ax.get_yticklabels()), ax.get_ylabel()
            assert "^" not in ax.get_ylabel().replace("$", "") or "$" in ax.get_ylabel()  # maths in mathtext
        plt.close(fig)
