"""The ICS-measurement chapter: its criteria on synthetic numbers (each reproduces, fails, and
is inconclusive or partly where it can be), its tables on synthetic probe results, and its specs
(the shared trajectories, unchanged)."""

import numpy as np
import pandas as pd
import pytest

from bnlib import chapters, page, profiles
from bnlib.chapters import ics_measure as ch
from bnlib.chapters.ics_measure import CRITERIA
from bnlib.train import History

TH = dict(margin=0.05, k=2.0, chance_frac=0.9, compare_from=300, no_ics=0.99, nearly_no_ics=0.9,
          uncorrelated=0.3, lower_by=0.1, explained=0.5, settles_below=0.5, lr=0.1, net="VGG")
RAW = {"l2_bn": {4: [9.0, 9.0, 9.0]}, "l2_none": {4: [0.1, 0.1, 0.1]}}  # reported, never judged
TRAINED, AT_CHANCE = [1.3, 1.2, 1.4], [1.3, 2.25, 1.4]


@pytest.mark.parametrize("cos_bn, rel_bn, tails, diverged, expected", [
    ([0.5, 0.6, 0.93], [2.0, 2.5, 2.2], TRAINED, False, "reproduced"),   # 0.93 <= 0.9 + margin: "similar"
    ([0.5, 0.6, 0.7], [0.5, 0.6, 0.4], TRAINED, False, "partly"),        # cosines lower, relative ICS smaller
    ([0.99, 0.99, 0.99], [2.0, 2.0, 2.0], TRAINED, False, "not reproduced"),
    ([0.5, 0.6, 0.7], [2.0, 2.0, 2.0], AT_CHANCE, False, "inconclusive"),  # a standard run stayed at chance
    ([0.5, 0.6, 0.7], [2.0, 2.0, 2.0], TRAINED, True, "inconclusive")])   # a run diverged
def test_ics_larger(cos_bn, rel_bn, tails, diverged, expected):
    none = {"cos_none": {4: [0.9, 0.9, 0.9]}, "rel_none": {4: [1.0, 1.0, 1.0]}}
    row = CRITERIA["ics_larger"](cos_bn={4: cos_bn}, rel_bn={4: rel_bn}, **none, **RAW, tails_none=tails,
                                 diverged=diverged, **TH)
    assert row.verdict == expected and "+ 0.05" in row.criterion and "step 300" in row.criterion
    assert "relative ICS" in row.criterion and "raw ‖G − G′‖, not judged: standard 0.1, BN 9" in row.measured
    assert "3 seeds" in row.measured and ("precondition fails" in row.measured) == (expected == "inconclusive")


def test_ics_larger_judges_the_relative_ics_not_the_raw_one():
    """A BN net whose raw ICS is tiny only because its gradients are (vanishing gradients) does
    not fail the norm part: the relative ICS decides it."""
    row = CRITERIA["ics_larger"](cos_bn={4: [0.5] * 3}, cos_none={4: [0.9] * 3}, rel_bn={4: [2.0] * 3},
                                 rel_none={4: [1.0] * 3}, l2_bn={4: [1e-6] * 3}, l2_none={4: [1.0] * 3},
                                 tails_none=TRAINED, diverged=False, **TH)
    assert row.verdict == "reproduced"


@pytest.mark.parametrize("raw, grad, diverged, expected", [
    ([-0.4, -0.35, -0.5], [-0.35, -0.3, -0.4], False, "reproduced"),     # ||G|| falls as much as the raw ICS
    ([-0.4, -0.35, -0.5], [0.0, 0.05, -0.02], False, "not reproduced"),  # raw ICS settles, ||G|| does not fall
    ([-0.1, -0.35, -0.5], [-0.35, -0.3, -0.4], False, "inconclusive"),   # seed 1 falls x0.79 only: no settling
    ([-0.4, -0.35, -0.5], [-0.35, -0.3, -0.4], True, "inconclusive")])   # a run diverged
def test_settles(raw, grad, diverged, expected):
    row = CRITERIA["settles"](raw=raw, grad=grad, rel=[0.0, 0.0, 0.0], diverged=diverged, **TH)
    assert row.verdict == expected and "0.5 x the raw ICS's fall" in row.criterion and "step 300" in row.criterion
    assert "late / middle < 0.5 on every seed" in row.criterion
    assert ("precondition fails" in row.measured) == (expected == "inconclusive") and "3 seeds" in row.measured


@pytest.mark.parametrize("l2_max, cos_min, expected", [
    (0.0, 1.0, "identity"), (0.0, float("nan"), "identity"),  # nan: a zero gradient, cos undefined
    (1e-9, 1.0, "not reproduced"), (0.0, 0.9, "not reproduced")])
def test_layer_one(l2_max, cos_min, expected):
    row = CRITERIA["layer_one"](l2_max=l2_max, cos_min=cos_min, runs=4, measurements=40)
    assert row.verdict == expected and "40 measurements of 4 runs" in row.measured


def test_settle_ratios_from_probe_results():
    cfg = chapters.resolve("ics_measure", profile="quick")
    steps = (300, 600, 900, 1200)  # split at (300 + 1500) / 2 = 900
    ics = {"vgg": {}}
    for s in profiles.seeds(cfg):
        p = probe_result(cos=[1.0] * 10, l2=[0.0] + [1.0] * 9, steps=steps)
        p["l2"][2:] /= 10  # the raw ICS falls x10 in the late half
        p["g_norm"][2:] /= 10  # and so does ||G||: the relative ICS is flat
        ics["vgg"][("bn", cfg.lr, s)] = p
    assert ch.settle(cfg, ics, "l2") == pytest.approx([-1.0] * 3)
    assert ch.settle(cfg, ics, "g_norm") == pytest.approx([-1.0] * 3)
    assert ch.settle(cfg, ics, "rel_l2") == pytest.approx([0.0] * 3)


def test_ics_larger_is_inconclusive_when_the_seeds_disagree_within_their_spread():
    row = CRITERIA["ics_larger"](cos_bn={4: [0.5, 1.0, 0.3]}, cos_none={4: [0.9, 0.5, 0.9]},
                                 rel_bn={4: [2.0, 0.1, 2.0]}, rel_none={4: [1.0, 1.0, 1.0]},
                                 tails_none=TRAINED, diverged=False, **RAW, **TH)
    assert row.verdict == "inconclusive"


def test_ics_larger_fails_where_one_part_clearly_fails_whatever_the_swamped_parts():
    """Layer 6 has a clearly higher BN cosine on every seed: neither the claim nor its partly
    version can hold, so the swamped norm gap does not make the row inconclusive."""
    row = CRITERIA["ics_larger"](cos_bn={3: [0.5, 0.6, 0.5], 6: [0.75, 0.76, 0.74]},
                                 cos_none={3: [0.9, 0.9, 0.9], 6: [0.5, 0.49, 0.5]},
                                 rel_bn={3: [2.0, 2.0, 2.0], 6: [0.7, 0.6, 0.75]},
                                 rel_none={3: [1.0, 1.0, 1.0], 6: [0.65, 0.7, 0.7]},
                                 tails_none=TRAINED, diverged=False,
                                 l2_bn={3: [1.0] * 3, 6: [1.0] * 3}, l2_none={3: [1.0] * 3, 6: [1.0] * 3}, **TH)
    assert row.verdict == "not reproduced" and "standard 0.683 vs BN 0.683" in row.measured


@pytest.mark.parametrize("loss_bn, diverged, expected", [
    ([1.0, 1.1, 0.9], False, "reproduced"), ([2.0, 2.1, 1.9], False, "not reproduced"),
    ([1.0, 1.1, 0.9], True, "inconclusive"), ([1.0, 1.6, 1.5], False, "inconclusive")])  # last: swamped
def test_trains_better(loss_bn, diverged, expected):
    row = CRITERIA["trains_better"](loss_bn=loss_bn, loss_none=[1.5, 1.5, 1.4], diverged=diverged, **TH)
    assert row.verdict == expected and row.criterion.startswith("VGG at lr 0.1")
    assert "3 seeds" in row.measured


@pytest.mark.parametrize("cos_none, diverged, expected", [
    ([0.999, 0.995], False, "reproduced"), ([0.999, 0.95], False, "partly"),
    ([0.999, 0.5], False, "not reproduced"), ([0.999, 0.995], True, "inconclusive")])
def test_no_ics(cos_none, diverged, expected):
    row = CRITERIA["no_ics"](cos_none={9: cos_none, 17: [0.999, 0.999]}, diverged=diverged, **TH)
    assert row.verdict == expected and "layer 9: 0.999, " in row.measured and "(2 seeds)" in row.measured


@pytest.mark.parametrize("cos_bn, diverged, expected", [
    ([0.2, -0.1], False, "reproduced"), ([0.8, 0.5], False, "partly"),
    ([0.95, 0.99], False, "not reproduced"), ([0.2, -0.1], True, "inconclusive")])
def test_uncorrelated(cos_bn, diverged, expected):
    row = CRITERIA["uncorrelated"](cos_bn={9: cos_bn}, cos_none={9: [0.999, 0.999]}, diverged=diverged, **TH)
    assert row.verdict == expected


def probe_result(cos: list[float], l2: list[float], g_norm: float = 2.0, steps=(0, 5, 10)) -> dict:
    """A synthetic ICS result of len(steps) measurements x len(cos) layers, the same at every step."""
    k, n = len(cos), len(steps)
    return {"step": np.array(steps), "layer": np.tile(np.arange(1, k + 1), (n, 1)),
            "cos": np.tile(cos, (n, 1)), "l2": np.tile(l2, (n, 1)), "g_norm": np.full((n, k), g_norm)}


def history(loss: float, diverged: bool = False) -> History:
    n = 20
    return History(np.full(n, loss, np.float32), np.full(n, np.nan, np.float32), np.arange(n, dtype=float),
                   np.array([0, n]), np.array([loss, loss]), np.array([0.5, 0.6]), diverged)


def test_tables_and_claims_on_synthetic_runs():
    cfg = chapters.resolve("ics_measure", profile="smoke")
    vgg_layers, dln_layers = ch.shown_layers(cfg, "vgg"), ch.shown_layers(cfg, "dln")
    assert (vgg_layers, dln_layers) == ([3, 6], [2, 4])  # paper's 5, 10 of 13 convs -> of 8; 9, 17 of 25 -> of 6
    n = {"vgg": 9, "dln": cfg.dln_depth}
    ics = {net: {(norm, lr, 0): probe_result(cos=[1.0] + [0.999 if norm == "none" else 0.1] * (n[net] - 1),
                                             l2=[0.0] + [0.01 if norm == "none" else 1.0] * (n[net] - 1))
                 for norm in ch.NORMS for lr in ch.lrs(cfg, net)} for net in ch.NETS}
    hist = {net: {(norm, lr, 0): history(1.0 if norm == "bn" else 2.0 if net == "dln" else 1.5)
                  for norm in ch.NORMS for lr in ch.lrs(cfg, net)} for net in ch.NETS}
    t = ch.ics_table(cfg, ics, net="dln")
    assert len(t) == 2 * 2 * cfg.dln_depth
    row = t[(t.norm == "bn") & (t.layer == 2)].iloc[0]
    assert (row.cos, row.l2, row.rel_l2, row.seeds) == pytest.approx((0.1, 1.0, 0.5, 1))
    assert list(ch.shown_table(cfg, ics).columns) == ["net", "norm", "lr", "seeds", "layer", "l2", "rel_l2", "cos"]
    rows = ch.claims(cfg, hist, ics)
    assert [c.verdict for c in rows] == ["reproduced"] * 8 + ["inconclusive", "identity"]
    texts = [c.claim for c in rows]  # the answer page shows only these: each names its setting
    assert len(set(texts)) == len(texts)
    assert texts[0].endswith(f"(VGG, lr {cfg.lr:g})") and texts[3].endswith(f"(DLN, lr {ch.lr_text(cfg.dln_lr)})")
    assert ch.lr_text(1e-6) == "1e-6" and ch.lr_text(0.1) == "0.1"
    k = ch.key_numbers(cfg, hist, ics)
    assert (k["dln_bn_lower_cos"], k["dln_pairs"]) == (2 * (cfg.dln_depth - 1),) * 2  # layer 1 left out
    assert (k["vgg_cos_bn_a"], k["vgg_loss_bn"], k["vgg_layer_b"]) == (pytest.approx(0.1), 1.0, 6)
    hist["vgg"][("none", cfg.lr, 0)] = history(2.3)  # the standard VGG stayed at chance
    hist["dln"][("bn", cfg.dln_lr, 0)] = history(np.inf, diverged=True)
    verdicts = [c.verdict for c in ch.claims(cfg, hist, ics)]
    assert verdicts[0] == "inconclusive" and verdicts[3] == verdicts[4] == "inconclusive"
    assert isinstance(ch.summary(cfg, hist), pd.DataFrame)
    assert list(page.thresholds(cfg).data["threshold"]) == list(ch.THRESHOLDS)


def test_medians_start_at_compare_from():
    p = probe_result(cos=[1.0, 0.5], l2=[0.0, 1.0], steps=(0, 100, 300, 400))
    p["cos"][:2, 1] = -1.0  # the plateau's measurements are left out
    assert ch.seed_medians(p, "cos", 2, start=300) == 0.5 and ch.seed_medians(p, "cos", 2) == pytest.approx(-0.25)


def test_steps_and_reached():
    cfg = chapters.resolve("ics_measure", profile="smoke")
    vgg_at, dln_at = ch.ics_steps(cfg)
    assert vgg_at == (0, 2, 4) and dln_at == (0, 5, 10, 20)
    assert ch.reached(dln_at)(history(1.0)) == [0, 5, 10]  # a run that stopped after 20 steps
    assert ch.schedule(1500, 25, 300, 100)[:13] == tuple(range(0, 301, 25))
    assert ch.schedule(1500, 25, 300, 100)[-2:] == (1300, 1400)


@pytest.mark.parametrize("profile", ["smoke", "quick", "paper"])
def test_specs_are_the_shared_trajectories(profile):
    """At its defaults the chapter asks for exactly the trajectories the other chapters ask for
    (so the store trains each once): the training chapter's VGG at lr 0.1, the shared DLN."""
    cfg = chapters.resolve("ics_measure", profile=profile)
    training = chapters.resolve("training", profile=profile)
    assert profiles.vgg_specs(cfg) == profiles.vgg_specs(training) and cfg.lr == training.lr
    assert ch.dln_specs(cfg) == profiles.dln_specs(cfg)
    assert ch.dln_specs(cfg)[1].norm_output is False  # the builder default, made explicit
    other = chapters.resolve("ics_measure", profile=profile, dln_norm_output=True, dln_loss="mse")
    linear, dln, gd = ch.dln_specs(other)
    assert (dln.norm_output, gd.loss) == (True, "mse")


def test_numbers_in_tables_are_written_out():
    assert (ch.number_text(13_512.3), ch.number_text(871.2), ch.number_text(0.00923)) == ("13,512", "871", "0.00923")
