"""The ICS-measurement chapter: its criteria on synthetic numbers (each can pass, fail, and say
partly / diverged where it has them), its tables on synthetic probe results, and its specs
(the shared trajectories, unchanged)."""

import numpy as np
import pandas as pd
import pytest

from bnlib import chapters, profiles
from bnlib.chapters import ics_measure as ch
from bnlib.chapters.ics_measure import CRITERIA
from bnlib.train import History


@pytest.mark.parametrize("cos_bn, l2_bn, diverged, expected", [
    ([0.5, 0.93], [2.0, 2.0], False, "reproduced"),   # 0.93 <= 0.9 + margin: "similar"
    ([0.5, 0.99], [2.0, 2.0], False, "partly"),       # one pair has a clearly higher cosine
    ([0.99, 0.99], [2.0, 0.5], False, "not reproduced"),
    ([0.5, 0.5], [2.0, 2.0], True, "diverged")])
def test_ics_larger(cos_bn, l2_bn, diverged, expected):
    row = CRITERIA["ics_larger"](cos_bn=cos_bn, cos_none=[0.9, 0.9], l2_bn=l2_bn, l2_none=[1.0, 1.0],
                                 margin=0.05, diverged=diverged)
    assert row.verdict == expected and "+ 0.05" in row.criterion


@pytest.mark.parametrize("losses, expected, measured", [
    ([(1.0, 2.0), (3.0, 4.0)], "reproduced", "2 of 2 settings"),
    ([(1.0, 2.0), (5.0, 4.0)], "partly", "1 of 2 settings"),
    ([(3.0, 2.0), (float("inf"), 4.0)], "not reproduced", "0 of 2 settings")])
def test_trains_better(losses, expected, measured):
    row = CRITERIA["trains_better"](losses=losses)
    assert (row.verdict, row.measured) == (expected, measured)


@pytest.mark.parametrize("cos_none, diverged, expected", [
    ([0.999, 0.995], False, "reproduced"), ([0.999, 0.95], False, "partly"),
    ([0.999, 0.5], False, "not reproduced"), ([0.999, 0.995], True, "diverged")])
def test_no_ics(cos_none, diverged, expected):
    row = CRITERIA["no_ics"](cos_none=cos_none, diverged=diverged)
    assert row.verdict == expected and row.measured.startswith("median cos 0.999, ")


@pytest.mark.parametrize("cos_bn, diverged, expected", [
    ([0.2, -0.1], False, "reproduced"), ([0.8, 0.5], False, "partly"),
    ([0.95, 0.99], False, "not reproduced"), ([0.2, -0.1], True, "diverged")])
def test_uncorrelated(cos_bn, diverged, expected):
    row = CRITERIA["uncorrelated"](cos_bn=cos_bn, cos_none=[0.999, 0.999], diverged=diverged)
    assert row.verdict == expected


def probe_result(cos: list[float], l2: list[float], g_norm: float = 2.0) -> dict:
    """A synthetic ICS result of 3 measurements x len(cos) layers, the same at every step."""
    k = len(cos)
    return {"step": np.array([0, 5, 10]), "layer": np.tile(np.arange(1, k + 1), (3, 1)),
            "cos": np.tile(cos, (3, 1)), "l2": np.tile(l2, (3, 1)), "g_norm": np.full((3, k), g_norm)}


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
    hist = {net: {(norm, lr, 0): history(1.0 if norm == "bn" else 2.0)
                  for norm in ch.NORMS for lr in ch.lrs(cfg, net)} for net in ch.NETS}
    t = ch.ics_table(cfg, ics, net="dln")
    assert len(t) == 2 * 2 * cfg.dln_depth
    row = t[(t.norm == "bn") & (t.layer == 2)].iloc[0]
    assert (row.cos, row.l2, row.rel_l2) == pytest.approx((0.1, 1.0, 0.5))
    assert list(ch.shown_table(cfg, ics).columns) == ["net", "norm", "lr", "layer", "l2", "rel_l2", "cos"]
    assert [c.verdict for c in ch.claims(cfg, hist, ics)] == ["reproduced"] * 4
    k = ch.key_numbers(cfg, hist, ics)
    assert (k["dln_bn_lower_cos"], k["dln_pairs"]) == (2 * (cfg.dln_depth - 1),) * 2  # layer 1 left out
    assert (k["vgg_cos_bn_a"], k["vgg_loss_bn"], k["vgg_layer_b"]) == (pytest.approx(0.1), 1.0, 6)
    hist["dln"][("bn", cfg.dln_lr, 0)] = history(np.inf, diverged=True)
    assert ch.claims(cfg, hist, ics)[2].verdict == "diverged"
    assert isinstance(ch.summary(cfg, hist), pd.DataFrame)


def test_steps_and_reached():
    cfg = chapters.resolve("ics_measure", profile="smoke")
    vgg_at, dln_at = ch.ics_steps(cfg)
    assert vgg_at == (0, 2, 4) and dln_at == (0, 5, 10, 15, 20, 25)
    assert ch.reached(dln_at)(history(1.0)) == [0, 5, 10, 15]  # a run that stopped after 20 steps


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
