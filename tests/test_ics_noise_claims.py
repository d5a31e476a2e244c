"""The ics_noise chapter's criteria and small analysis functions on synthetic numbers, and the
specs it asks the store for (the standard and BN runs must be the training chapter's)."""

import numpy as np
import pandas as pd
import pytest

from bnlib import chapters, profiles
from bnlib.chapters.ics_noise import (
    CRITERIA,
    NORMS,
    at_end,
    at_records,
    headline,
    map_layer,
    record_steps,
    recorded_layers,
    shift_numbers,
)
from bnlib.train import History

LOSS = {"none": 2.0, "bn": 1.2, "noisy_bn": 1.3, "noise": 2.3}
ACC = {"none": 0.40, "bn": 0.60, "noisy_bn": 0.58, "noise": 0.11}


@pytest.mark.parametrize("noisy_loss, diverged, expected", [
    (1.3, False, "reproduced"),       # excess 0.1 <= 0.8 / 4
    (1.7, False, "partly"),           # excess 0.5 > 0.2, but still below standard
    (2.1, False, "not reproduced"),   # worse than standard
    (1.3, True, "diverged")])
def test_near_bn(noisy_loss, diverged, expected):
    row = CRITERIA["near_bn"](loss={**LOSS, "noisy_bn": noisy_loss}, acc=ACC, diverged=diverged)
    assert row.verdict == expected and row.measured.startswith(f"excess {noisy_loss - 1.2:.3f} vs 0.800")


def test_near_bn_needs_bn_to_beat_standard():
    assert CRITERIA["near_bn"](loss={**LOSS, "none": 1.1}, acc=ACC, diverged=False).verdict != "reproduced"


@pytest.mark.parametrize("changes, diverged, expected", [
    ({}, False, "reproduced"),
    ({"noisy_bn": 0.35}, False, "partly"),     # noisy BN's accuracy below standard's
    ({"bn": 0.3, "noisy_bn": 0.3}, False, "not reproduced"),
    ({}, True, "diverged")])
def test_beat_standard(changes, diverged, expected):
    row = CRITERIA["beat_standard"](loss=LOSS, acc={**ACC, **changes}, diverged=diverged)
    assert row.verdict == expected and "vs 2.000" in row.measured


@pytest.mark.parametrize("n_less, diverged, expected", [
    (5, False, "reproduced"), (2, False, "partly"), (0, False, "not reproduced"), (5, True, "diverged")])
def test_less_stable(n_less, diverged, expected):
    row = CRITERIA["less_stable"](n_less_stable=n_less, n_layers=5, diverged=diverged)
    assert row.verdict == expected and row.measured == f"{n_less} of 5 layers"


@pytest.mark.parametrize("noise_acc, noise_loss, diverged, expected", [
    (0.11, 2.3, False, "reproduced"),      # within 5 points of chance
    (0.10, float("inf"), True, "reproduced"),  # a diverged noise-only run did not train either
    (0.30, 2.3, False, "partly"),          # trains, worse than standard
    (0.45, 1.9, False, "not reproduced")])
def test_noise_stalls(noise_acc, noise_loss, diverged, expected):
    row = CRITERIA["noise_stalls"](loss={**LOSS, "noise": noise_loss}, acc={**ACC, "noise": noise_acc},
                                   noise_diverged=diverged, chance=0.1)
    assert row.verdict == expected and "chance (10%)" in row.criterion
    assert row.measured == ("diverged" if diverged else f"test accuracy {noise_acc:.1%} (standard 40.0%)")


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
    assert h["acc_on_bn"] == "not measured (no noise)" and h["div_noise"] == "diverged" and h["div_bn"] == "finished"


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
    assert len(record_steps(ours)) == -(-ours.num_steps // every)


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
