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
    at_end,
    at_records,
    compared_seeds,
    headline,
    map_layer,
    median_shifts,
    record_steps,
    recorded_layers,
    shift_numbers,
    stability,
)
from bnlib.train import History

INF = math.inf
TH = dict(k=2.0, chance_frac=0.9, steps=1000)
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


def shift_rows(values):
    """A per-seed shifts table: {(network, seed): [(mean, var) per layer]}, layers 1 and 6."""
    return pd.DataFrame([{"network": n, "seed": s, "layer": i, "mean shift": m, "var shift": v}
                         for (n, s), mv in values.items() for i, (m, v) in zip((1, 6, 7), mv)])


def test_median_shifts_are_per_seed_medians_over_layers():
    sh = shift_rows({("none", 1): [(0.1, 1), (0.3, 2), (0.2, 9)], ("none", 0): [(5, 5), (1, 1), (2, 2)]})
    med = median_shifts(sh)
    assert med["mean shift"]["none"] == [2, 0.2] and med["var shift"]["none"] == [2, 2]  # seed 0 first
    st = stability(sh).set_index(["network", "layer"])
    assert st.loc[("none", 1), "mean shift"] == pytest.approx(2.55)


def stab_table(noisy, none):
    """A stability table of 2 layers: noisy BN's and the standard net's shifts given, others 1e-3."""
    rows = []
    for n in NORMS:
        for k, i in enumerate((1, 6)):
            m, v = {"noisy_bn": noisy[k], "none": none[k]}.get(n, (1e-3, 1e-3))
            rows.append({"network": n, "layer": i, "mean shift": m, "var shift": v})
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
    assert h["div_noise"] == "diverged in 1 seed(s)"


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
