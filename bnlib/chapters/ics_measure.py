"""Chapter "Does BatchNorm reduce internal covariate shift?" (Santurkar et al. 2018, Sec. 2.2).

ICS in the optimisation sense of Definition 2.1 (``probes.ics.ICS``), measured for every
layer on checkpoints of (a) the shared VGG trajectories on CIFAR-10 (plain SGD at the paper's
two learning rates) and (b) the shared 25-layer deep linear network (DLN, full-batch gradient
descent), each with and without BatchNorm (Fig. 3). Defaults are the quick profile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from .. import models, profiles
from ..claims import CHANCE_LOSS, Claim, Criterion, Gap, identity, left_chance, less, verdict
from ..config import Interval, ListOf, OneOf, param
from ..data import DataSpec
from ..models import ModelSpec
from ..plots import label
from ..probes.ics import ICS
from ..train import History, TrainConfig

TITLE = "Does BatchNorm reduce internal covariate shift?"
NORMS, NETS = ("none", "bn"), ("vgg", "dln")
PAPER_CONVS, PAPER_DLN = 13, 25  # the paper's layer numbers count 13 convs (VGG-16) and 25 DLN layers
_LR, _STEPS = Interval(float, 0, 10, low_open=True), Interval(int, 1, 1_000_000)
SOURCE = "Santurkar et al. 2018, Sec. 2.2, Fig. 3"


@dataclass(frozen=True)
class Params(profiles.VGGParams, profiles.DLNParams):
    lr_small: float = param(0.01, _LR, "the VGG's second, smaller learning rate (paper: 0.01)")
    small_steps: int = param(600, _STEPS, "VGG steps at lr_small (paper: 15,000; quick: 600, CPU budget)")
    small_seeds: int = param(1, Interval(int, 1, 20), "seeds at the second learning rates, VGG and DLN "
                             "(paper profile: 3; quick: 1, CPU budget)")
    ics_dense_every: int = param(25, _STEPS, "VGG steps between ICS measurements early on (choice)")
    ics_dense_until: int = param(300, _STEPS, "VGG step up to which ICS is measured densely (choice: the "
                                 "standard net's plateau ends near step 300)")
    ics_every: int = param(100, _STEPS, "VGG steps between ICS measurements after that (choice)")
    vgg_layers: tuple = param((5, 10), ListOf(Interval(int, 1, PAPER_CONVS)),
                              "VGG layers shown, numbered as in a 13-conv VGG (paper: 5, 10)")
    dln_lr_small: float = param(1e-7, _LR, "the DLN's second, smaller learning rate (paper: 1e-7)")
    dln_small_steps: int = param(5000, _STEPS, "DLN steps at dln_lr_small (paper: 10,000; quick: 5,000, CPU "
                                 "budget: half the paper's, pays for this page's new rows)")
    dln_ics_dense_every: int = param(200, _STEPS, "DLN steps between ICS measurements early on (choice: the "
                                     "shared DLN's checkpoints)")
    dln_ics_dense_until: int = param(2000, _STEPS, "DLN step up to which ICS is measured densely (choice: the "
                                     "standard DLN's loss falls fastest there)")
    dln_ics_every: int = param(1000, _STEPS, "DLN steps between ICS measurements after that (choice)")
    dln_layers: tuple = param((9, 17), ListOf(Interval(int, 1, PAPER_DLN)),
                              "DLN layers shown, numbered as in a 25-layer DLN (paper: 9, 17)")
    dln_norm_output: bool = param(False, OneOf((False, True)), "BN also after the DLN's last layer (choice)")
    dln_loss: str = param("mse_sum", OneOf(("mse_sum", "mse")),
                          "DLN loss summed or averaged over the points (choice; paper silent)")
    compare_from: int = param(300, _STEPS, "VGG ICS is compared over the measurements from this step on "
                              "(choice: after the standard net's plateau, near step 300 at lr 0.1)")
    k: float = param(2.0, Interval(float, 0, 100), "a gap over seeds holds if it holds on every seed or its mean "
                     "exceeds k x the seed spread (choice: twice the seed-to-seed standard deviation)")
    chance_frac: float = param(0.9, Interval(float, 0, 1, low_open=True), "precondition: the standard VGG's tail "
                               "loss is below this x ln 10 on every seed (choice: clearly off chance)")
    cos_margin: float = param(0.05, Interval(float, 0, 2), "BN's cosine may exceed the standard net's by this and "
                              "still count as 'similar' (choice: 1/40 of the cosine's range)")
    no_ics: float = param(0.99, Interval(float, -1, 1), "a median cosine at least this is 'almost no ICS' "
                          "(choice: G' within 8 degrees of G)")
    nearly_no_ics: float = param(0.9, Interval(float, -1, 1), "the weaker bar of 'almost no ICS' "
                                 "(choice: G' within 26 degrees of G)")
    uncorrelated: float = param(0.3, Interval(float, 0, 1), "a median |cosine| at most this is 'almost "
                                "uncorrelated' (choice: G' more than 72 degrees from G)")
    lower_by: float = param(0.1, Interval(float, 0, 2), "the weaker bar of 'uncorrelated': BN's median cosine "
                            "below the standard net's by this (choice: 1/20 of the cosine's range)")
    explained: float = param(0.5, Interval(float, 0, 1), "'an artifact of convergence': the fall of ||G|| must be at "
                             "least this share of the late fall of BN's raw ICS, on a log scale (choice: half)")
    settles_below: float = param(0.5, Interval(float, 0, 1, low_open=True), "BN's raw ICS 'settles' if its late "
                                 "median is below this x its middle median on every seed (choice: it halves)")


THRESHOLDS = ("compare_from", "k", "chance_frac", "cos_margin", "no_ics", "nearly_no_ics", "uncorrelated",
              "lower_by", "explained",
              "settles_below")
_SMOKE = {**profiles.VGG["smoke"], **profiles.DLN["smoke"]}
PROFILES = {"smoke": dict(_SMOKE, small_steps=_SMOKE["num_steps"], ics_dense_every=2, ics_dense_until=2,
                          ics_every=2, dln_small_steps=_SMOKE["dln_steps"], dln_ics_dense_every=5,
                          dln_ics_dense_until=10, dln_ics_every=10, compare_from=2),
            "quick": {"ics_dense_every": 50},  # 25 before: the book's CPU budget; the rows judge from step 300
            "paper": {**profiles.VGG["paper"], **profiles.DLN["paper"], "small_steps": 15_000, "small_seeds": 3,
                      "dln_small_steps": 10_000,
                      "ics_dense_every": 50, "ics_dense_until": 1000, "ics_every": 250, "dln_ics_dense_every": 20,
                      "dln_ics_dense_until": 1000, "dln_ics_every": 100, "compare_from": 1000}}
KEY_SETTINGS = ("dataset", "depth", "width", "lr", "lr_small", "batch_size", "num_steps", "small_steps",
                "num_seeds", "small_seeds", "ics_dense_every", "ics_dense_until", "ics_every", "dln_depth", "dln_lr",
                "dln_lr_small", "dln_steps", "dln_small_steps", "dln_ics_dense_every", "dln_ics_dense_until",
                "dln_ics_every", "dln_loss")


def dln_specs(cfg: Params) -> tuple[DataSpec, ModelSpec, TrainConfig]:
    """The shared DLN (``profiles.dln_specs``) with this chapter's two options; at their
    defaults the specs are exactly the other chapters' (norm_output None = the builder's False)."""
    linear, dln, gd = profiles.dln_specs(cfg, norm_output=cfg.dln_norm_output)
    return linear, dln, replace(gd, loss=cfg.dln_loss)


def schedule(n: int, dense_every: int, dense_until: int, every: int) -> tuple[int, ...]:
    """Steps below ``n``: every ``dense_every`` up to ``dense_until``, then every ``every``."""
    return tuple(sorted({*range(0, min(dense_until, n), dense_every), *range(dense_until, n, every)}))


def ics_steps(cfg: Params, dln_steps: int | None = None) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The measured steps of the VGG (core runs) and of a DLN run of ``dln_steps`` (default: the
    core DLN's): dense early, then sparse."""
    return (schedule(cfg.num_steps, cfg.ics_dense_every, cfg.ics_dense_until, cfg.ics_every),
            schedule(dln_steps or cfg.dln_steps, cfg.dln_ics_dense_every, cfg.dln_ics_dense_until, cfg.dln_ics_every))


def reached(steps: tuple[int, ...]) -> Callable[[History], list[int]]:
    """Of ``steps``, those a run reached before its end (a diverged run stops early)."""
    return lambda h: [s for s in steps if s < h.steps_done]


def lrs(cfg: Params, net: str) -> tuple[float, float]:
    return (cfg.lr, cfg.lr_small) if net == "vgg" else (cfg.dln_lr, cfg.dln_lr_small)


def seeds_at(cfg: Params, net: str, lr: float) -> list[int]:
    """The seeds run at ``lr``: the core seeds at the first lr, ``small_seeds`` at the second."""
    return profiles.seeds(cfg) if lr == lrs(cfg, net)[0] else profiles.seeds(cfg, "small_seeds")


def train_and_probe(cfg: Params, store) -> tuple[dict, dict]:
    """Train (or load) both networks at both learning rates and measure ICS on the checkpoints:
    ``hist[net][(norm, lr, seed)]`` and ``ics[net][(norm, lr, seed)]``. The first lr's runs are
    the shared trajectories; the VGG at ``lr_small`` runs ``small_steps``."""
    vgg_at, dln_at = ics_steps(cfg)
    small_at = schedule(cfg.small_steps, cfg.ics_dense_every, cfg.ics_dense_until, cfg.ics_every)
    cifar, vgg, sgd = profiles.vgg_specs(cfg)
    linear, dln, gd = dln_specs(cfg)
    plan = {"vgg": [(cifar, vgg, sgd, {"lr": [cfg.lr]}, profiles.seeds(cfg), vgg_at),
                    (cifar, vgg, sgd, {"lr": [cfg.lr_small], "num_steps": [cfg.small_steps]},
                     profiles.seeds(cfg, "small_seeds"), small_at)],
            "dln": [(linear, dln, gd, {"lr": [cfg.dln_lr]}, profiles.seeds(cfg), dln_at),
                    (linear, dln, gd, {"lr": [cfg.dln_lr_small], "num_steps": [cfg.dln_small_steps]},
                     profiles.seeds(cfg, "small_seeds"), ics_steps(cfg, cfg.dln_small_steps)[1])]}
    hist, ics = {}, {}
    for net, sweeps in plan.items():
        hist[net], ics[net] = {}, {}
        for d, m, t, vary, seeds, at in sweeps:
            r = store.sweep(d, m, t, norm=list(NORMS), **vary, seeds=seeds, checkpoints=at)
            hist[net] |= {(k[0], k[1], k[-1]): h for k, h in r.hist.items()}
            ics[net] |= {(k[0], k[1], k[-1]): p for k, p in r.probe(ICS(), steps=reached(at)).items()}
    return hist, ics


def n_convs(depth: int) -> int:
    """Conv layers of VGG-``depth`` (weight layers 1..n_convs are the convs)."""
    return sum(v != "M" for v in models.VGG_CONFIGS[depth])


def shown_layers(cfg: Params, net: str) -> list[int]:
    """The paper's layers at the same relative depth of this run's network (VGG-16's 13 convs,
    the 25-layer DLN), in this run's numbering."""
    n, paper, layers = ((n_convs(cfg.depth), PAPER_CONVS, cfg.vgg_layers) if net == "vgg"
                        else (cfg.dln_depth, PAPER_DLN, cfg.dln_layers))
    return [max(1, round(i * n / paper)) for i in layers]


def seed_medians(p: dict, key: str, layer: int, start: int = 0) -> float:
    """Median over the measurements at steps >= ``start`` of ``key`` at ``layer`` of one run
    (finite values; ``rel_l2`` = ||G - G'|| / ||G||); nan if none."""
    v = (p["l2"] / p["g_norm"] if key == "rel_l2" else p[key])[:, layer - 1][np.asarray(p["step"]) >= start]
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else float("nan")


def per_seed(cfg: Params, ics: dict, net: str, norm: str, lr: float, key: str, layer: int) -> list[float]:
    """``seed_medians`` of every seed run at ``lr`` (VGG: from ``compare_from``; a run that
    diverged before any measurement gives nan)."""
    start = cfg.compare_from if net == "vgg" else 0
    return [seed_medians(p, key, layer, start) if "l2" in (p := ics[net][(norm, lr, s)]) else float("nan")
            for s in seeds_at(cfg, net, lr)]


def ics_table(cfg: Params, ics: dict, *, net: str, layers: list[int] | None = None) -> pd.DataFrame:
    """Per (norm, lr, layer): the mean over seeds of the per-seed medians (``per_seed``) of
    ||G - G'||, cos and ||G - G'|| / ||G||, and the number of seeds."""
    rows = []
    for lr in lrs(cfg, net):
        for norm in NORMS:
            ps = [p for s in seeds_at(cfg, net, lr) if "l2" in (p := ics[net][(norm, lr, s)])]
            for i in layers or range(1, (ps[0]["l2"].shape[1] if ps else 0) + 1):
                rows.append({"norm": norm, "lr": lr, "layer": i, "seeds": len(seeds_at(cfg, net, lr)),
                             **{k: float(np.mean(per_seed(cfg, ics, net, norm, lr, k, i)))
                                for k in ("l2", "cos", "rel_l2")}})
    return pd.DataFrame(rows)


def shown_table(cfg: Params, ics: dict) -> pd.DataFrame:
    """``ics_table`` of the shown layers of both networks, one frame."""
    return pd.concat([ics_table(cfg, ics, net=net, layers=shown_layers(cfg, net)).assign(net=net)
                      for net in NETS])[["net", "norm", "lr", "seeds", "layer", "l2", "rel_l2", "cos"]]


def tail_loss(h: History, frac: float = 0.1) -> float:
    """Mean training loss over the last ``frac`` of the steps (inf if diverged)."""
    return float("inf") if h.diverged else float(np.mean(h.train_loss[-max(1, int(len(h.train_loss) * frac)):]))


def summary(cfg: Params, hist: dict) -> pd.DataFrame:
    """One row per (net, norm, lr): seeds, steps, diverged runs, tail training loss and final
    test accuracy (VGG), means over seeds."""
    rows = []
    for net in NETS:
        for lr in lrs(cfg, net):
            for norm in NORMS:
                hs = [hist[net][(norm, lr, s)] for s in seeds_at(cfg, net, lr)]
                rows.append({"net": net, "norm": norm, "lr": lr, "seeds": len(hs),
                             "steps": max(h.steps_done for h in hs), "diverged runs": sum(h.diverged for h in hs),
                             "final train loss": np.mean([tail_loss(h) for h in hs]),
                             "final test acc": np.mean([np.nan if h.diverged else h.test_acc[-1] for h in hs])})
    return pd.DataFrame(rows)


COLUMNS = {"net": "network", "norm": "normaliser", "lr": "learning rate", "diverged runs": "diverged runs",
           "final train loss": "final training loss", "final test acc": "final test accuracy",
           "l2": "raw ICS ‖G − G′‖", "rel_l2": "relative ICS ‖G − G′‖ / ‖G‖", "cos": "cos(G, G′)"}


def styled(table: pd.DataFrame, formats: dict[str, str]):
    """``summary`` or ``shown_table`` as the page shows it: words for the codes (VGG, DLN, the
    normaliser's label, 1e-6), the column names of ``COLUMNS``, ``formats`` by the frame's own
    column names, n/a where a number does not exist (a DLN has no test set)."""
    fmt = {"net": str.upper, "norm": label, "lr": lr_text, **formats}
    return (table.rename(columns=COLUMNS).style.format({COLUMNS.get(k, k): f for k, f in fmt.items()}, na_rep="n/a")
            .hide(axis="index"))


# ---------------------------------------------------------------- criteria (pure functions of numbers)

def _decide(main: list[Gap], partly: list[Gap], precondition: bool) -> str:
    """``main`` (and the weaker ``partly``) hold if every one of their gaps holds; a gap the
    seeds swamp leaves its conjunction undecided (inconclusive) unless another gap clearly fails."""
    clear_fail = lambda gs: any(not g.holds and not g.swamped for g in gs)  # noqa: E731
    if not precondition:
        return "inconclusive"
    if all(g.holds for g in main):
        return "reproduced"
    if partly and all(g.holds for g in partly):
        return "partly"
    return "not reproduced" if clear_fail(main) and (not partly or clear_fail(partly)) else "inconclusive"


def _pre_text(tails_none: list[float], frac: float, diverged: bool) -> str:
    out = "" if left_chance(tails_none, frac=frac) else \
        f"precondition fails: standard tail loss {', '.join(f'{x:.3f}' for x in tails_none)} not all < " \
        f"{frac * CHANCE_LOSS:.3f}; "
    return out + ("precondition fails: a run diverged; " if diverged else "")


def _ics_larger(cos_bn: dict, cos_none: dict, rel_bn: dict, rel_none: dict, l2_bn: dict, l2_none: dict,
                tails_none: list[float], diverged: bool, margin: float, k: float,
                chance_frac: float) -> tuple[str, str]:
    """Per shown layer (dict keys), paired per-seed medians: cos BN < cos standard + ``margin``
    and the relative ‖G − G′‖ / ‖G‖ BN > standard; partly: the cosine part at every layer.
    The raw ‖G − G′‖ is reported beside, not judged (it shrinks with ‖G‖)."""
    pre = left_chance(tails_none, frac=chance_frac) and not diverged
    cg = {i: less(cos_bn[i], cos_none[i], k=k, margin=-margin) for i in cos_bn}
    lg = {i: less(rel_none[i], rel_bn[i], k=k) for i in cos_bn}
    raw = lambda d, i: f"{np.mean(d[i]):.3g}"  # noqa: E731
    text = "; ".join(f"layer {i}: cos {cg[i].text(('BN', 'standard'))}; ‖G − G′‖ / ‖G‖ "
                     f"{lg[i].text(('standard', 'BN'), '{:.3g}')} (raw ‖G − G′‖, not judged: standard "
                     f"{raw(l2_none, i)}, BN {raw(l2_bn, i)})" for i in cos_bn)
    return (_pre_text(tails_none, chance_frac, diverged) + text,
            _decide([*cg.values(), *lg.values()], list(cg.values()), pre))


def _trains_better(loss_bn: list[float], loss_none: list[float], diverged: bool, k: float) -> tuple[str, str]:
    g = less(loss_bn, loss_none, k=k)
    return (("precondition fails: a run diverged; " if diverged else "") + g.text(("BN", "standard"), "{:.4g}"),
            g.verdict(precondition=not diverged))


def _layer_one(l2_max: float, cos_min: float, runs: int, measurements: int) -> tuple[str, str]:
    """Layer 1 has no layer before it: G′ = G, so ‖G − G′‖ = 0 exactly at every measurement."""
    return (f"largest layer-1 ‖G − G′‖ {l2_max:.3g}, smallest cos {cos_min:.3g} ({measurements} measurements "
            f"of {runs} runs)", identity(l2_max == 0.0 and not cos_min < 1.0 - 1e-12))


def _settles(raw: list[float], grad: list[float], rel: list[float], diverged: bool, explained: float,
             settles_below: float, k: float) -> tuple[str, str]:
    """Per seed, log10 of (late median / middle median) of BN's raw ICS, ‖G‖ and relative ICS,
    median over the shown layers. Precondition: the raw ICS settles (ratio < ``settles_below``) on
    every seed. Holds if the gradient norm's log fall is at least ``explained`` x the raw ICS's
    (paired ``Gap``)."""
    falls = all(np.isfinite(raw)) and all(r < np.log10(settles_below) for r in raw)
    g = less(grad, explained * np.asarray(raw, float), k=k)
    x = lambda v: ", ".join(f"x{10 ** u:.2f}" for u in v)  # noqa: E731
    pre = ("precondition fails: a run diverged; " if diverged else "") + \
        ("" if falls else f"precondition fails: BN's raw ICS does not settle (late / middle < {settles_below:g}) "
                          "on every seed; ")
    return (pre + f"late / middle: raw ‖G − G′‖ {x(raw)}; ‖G‖ {x(grad)}; relative ICS {x(rel)} "
            f"(‖G‖ log fall vs {explained:g} x raw: {g.seeds()})", g.verdict(precondition=falls and not diverged))


def _per_layer(values: dict) -> str:
    n = len(next(iter(values.values())))
    return "; ".join(f"layer {i}: " + ", ".join(f"{v:.3f}" for v in vs) for i, vs in values.items()) + \
        f" ({n} seed{'s' * (n > 1)})"


def _no_ics(cos_none: dict, diverged: bool, no_ics: float, nearly_no_ics: float) -> tuple[str, str]:
    """Per shown layer, every seed's median cosine >= ``no_ics`` (partly: >= ``nearly_no_ics``)."""
    c = np.asarray(list(cos_none.values()), float)
    return (("precondition fails: a run diverged; " if diverged else "") + "median cos " + _per_layer(cos_none),
            verdict(bool(np.all(c >= no_ics)), partly=bool(np.all(c >= nearly_no_ics)), precondition=not diverged))


def _uncorrelated(cos_bn: dict, cos_none: dict, diverged: bool, uncorrelated: float, lower_by: float,
                  k: float) -> tuple[str, str]:
    """Per shown layer, every seed's median |cos| of BN <= ``uncorrelated``; partly: BN's median cosine
    below the standard net's by ``lower_by`` at every layer (paired seeds)."""
    b = np.abs(np.asarray(list(cos_bn.values()), float))
    part = all(less(cos_bn[i], cos_none[i], k=k, margin=lower_by).holds for i in cos_bn)
    return (("precondition fails: a run diverged; " if diverged else "") + "BN median cos " + _per_layer(cos_bn),
            verdict(bool(np.all(b <= uncorrelated)), partly=part, precondition=not diverged))


_PRE = "precondition: the standard net's tail loss < {chance_frac:g} x ln 10 on every seed, no run diverged. "
_GAP = ("A gap holds if it holds on every seed or its mean exceeds {k:g} x the seed spread; seeds that disagree "
        "within that spread: inconclusive. ")
CRITERIA = {
    "ics_larger": Criterion(
        "With BN, ICS is similar or larger", SOURCE,
        "lr {lr}; " + _PRE + "At each shown layer, per seed the median over measurements from step "
        "{compare_from} on: BN's "
        "cos(G, G′) < the standard net's + {margin:g}, and the standard net's relative ICS ‖G − G′‖ / ‖G‖ < "
        "BN's (the raw ‖G − G′‖ is shown, not judged: a net with vanishing gradients has a tiny raw ICS). " + _GAP +
        "Partly: the cosine part holds at every shown layer, the norm part does not.", _ics_larger),
    "layer_one": Criterion(
        "Layer 1's ICS is zero by definition (no layer before it moves)", "Santurkar et al. 2018, Def. 2.1",
        "Every measurement of every run (both nets, both learning rates): ‖G₁ − G′₁‖ = 0 exactly and "
        "cos = 1 (identity: a check of the probe)", _layer_one),
    "settles": Criterion(
        "The BN VGG's ICS settles late in training as an artifact of convergence", SOURCE,
        "lr {lr}; BN VGG; measurements from step {compare_from} on, split at the middle of that window. Per "
        "seed, log10(late median / middle median) of the raw ‖G − G′‖, of ‖G‖ and of ‖G − G′‖ / ‖G‖, "
        "median over the shown layers. Precondition: the raw ICS settles, late / middle < {settles_below:g} on "
        "every seed, and no run diverged. Holds "
        "if ‖G‖ falls by at least {explained:g} x the raw ICS's fall (log scale), paired over seeds. " + _GAP,
        _settles),
    "trains_better": Criterion(
        "BN networks still train better", SOURCE,
        "{net} at lr {lr}; precondition: no run diverged. Mean training loss over the last 10% of the steps: "
        "BN < standard. " + _GAP,
        _trains_better),
    "no_ics": Criterion(
        "The standard DLN has almost no ICS", SOURCE,
        "lr {lr}; precondition: no run diverged. At each shown layer, every seed's median cos(G, G′) >= {no_ics:g} "
        "(partly: >= {nearly_no_ics:g})", _no_ics),
    "uncorrelated": Criterion(
        "In the BN DLN, G and G′ are almost uncorrelated", SOURCE,
        "lr {lr}; precondition: no run diverged. At each shown layer, every seed's median |cos(G, G′)| <= "
        "{uncorrelated:g} (partly: BN's median cos below the standard net's by more than {lower_by:g} at every "
        "shown layer, as a gap over paired seeds with k = {k:g})", _uncorrelated),
}


# ---------------------------------------------------------------- the chapter's claims

def shown(cfg: Params, ics: dict, net: str, norm: str, lr: float, key: str) -> dict[int, list[float]]:
    """``{layer: per-seed medians}`` of ``key`` at the shown layers of ``net``."""
    return {i: per_seed(cfg, ics, net, norm, lr, key, i) for i in shown_layers(cfg, net)}


def settle(cfg: Params, ics: dict, key: str) -> list[float]:
    """Per seed of the BN VGG at ``lr``: log10(median over the late half / median over the middle
    half) of ``key`` (``l2``, ``g_norm`` or ``rel_l2``) over the measurements from ``compare_from``
    on, the median over the shown layers (nan if a half is empty)."""
    split, out = (cfg.compare_from + cfg.num_steps) / 2, []
    for s in profiles.seeds(cfg):
        p = ics["vgg"][("bn", cfg.lr, s)]
        if "l2" not in p:
            out.append(float("nan"))
            continue
        v, step = (p["l2"] / p["g_norm"] if key == "rel_l2" else p[key]), np.asarray(p["step"])
        mid, late = (step >= cfg.compare_from) & (step < split), step >= split
        out.append(float(np.median([np.log10(np.median(v[late, i - 1]) / np.median(v[mid, i - 1]))
                                    for i in shown_layers(cfg, "vgg")])) if mid.any() and late.any() else float("nan"))
    return out


def lr_text(lr: float) -> str:
    """A learning rate as the page writes it: 0.1, 1e-6 (not 1e-06)."""
    return f"{lr:g}".replace("e-0", "e-")


def number_text(v: float) -> str:
    """A value of any size readable in a table: 3 significant digits, thousands written out
    (13,500, not 1.35e+04)."""
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"


def at(claim: Claim, net: str, lr: float) -> Claim:
    """``claim`` with its setting in the claim text ("... (VGG, lr 0.1)"), so rows that test the same
    statement in two settings read apart wherever only the claim text is shown (the answer page)."""
    return replace(claim, claim=f"{claim.claim} ({net.upper()}, lr {lr_text(lr)})")


def claims(cfg: Params, hist: dict, ics: dict) -> list[Claim]:
    """The claims of Sec. 2.2 and Fig. 3, each decided by its criterion on the runs' numbers:
    per learning rate, on the seeds run there."""
    th = {n: getattr(cfg, n) for n in THRESHOLDS}
    hs = lambda net, norm, lr: [hist[net][(norm, lr, s)] for s in seeds_at(cfg, net, lr)]  # noqa: E731
    div = lambda net, lr: any(h.diverged for n in NORMS for h in hs(net, n, lr))  # noqa: E731
    keys = (("cos", "cos"), ("rel", "rel_l2"), ("l2", "l2"))  # criterion input -> ICS quantity
    rows = [at(CRITERIA["ics_larger"](**{f"{a}_{n}": shown(cfg, ics, "vgg", n, lr, k) for a, k in keys for n in NORMS},
                                      tails_none=[tail_loss(h) for h in hs("vgg", "none", lr)],
                                      diverged=div("vgg", lr), margin=cfg.cos_margin, lr=lr_text(lr), **th), "vgg", lr)
            for lr in lrs(cfg, "vgg")]
    rows += [at(CRITERIA["trains_better"](**{f"loss_{n}": [tail_loss(h) for h in hs(net, n, lr)] for n in NORMS},
                                          diverged=div(net, lr), net=net.upper(), lr=lr_text(lr), **th), net, lr)
             for net in NETS for lr in lrs(cfg, net)[:1]]
    for lr in lrs(cfg, "dln"):
        dln = {f"cos_{n}": shown(cfg, ics, "dln", n, lr, "cos") for n in NORMS}
        given = dict(diverged=div("dln", lr), lr=lr_text(lr), **th)
        rows += [at(CRITERIA["no_ics"](cos_none=dln["cos_none"], **given), "dln", lr),
                 at(CRITERIA["uncorrelated"](**dln, **given), "dln", lr)]
    rows.append(at(CRITERIA["settles"](**{k: settle(cfg, ics, q) for k, q in (("raw", "l2"), ("grad", "g_norm"),
                                                                             ("rel", "rel_l2"))},
                                       diverged=div("vgg", cfg.lr), lr=lr_text(cfg.lr), **th), "vgg", cfg.lr))
    ps = [p for net in NETS for p in ics[net].values() if "l2" in p]
    return rows + [CRITERIA["layer_one"](l2_max=float(max(np.max(p["l2"][:, 0]) for p in ps)),
                                         cos_min=float(np.nanmin([np.nanmin(p["cos"][:, 0]) for p in ps])),
                                         runs=len(ps), measurements=sum(len(p["step"]) for p in ps))]


def key_numbers(cfg: Params, hist: dict, ics: dict) -> dict[str, float | int]:
    """The numbers the chapter's prose quotes (all glued), at the first lr of each network:
    means over seeds of per-seed medians."""
    out: dict[str, float | int] = {"vgg_convs": n_convs(cfg.depth), "vgg_lr": cfg.lr, "dln_lr": cfg.dln_lr,
                                   "dln_depth": cfg.dln_depth, "dln_width": cfg.dln_width,
                                   "dln_points": cfg.dln_points, "small_seeds": cfg.small_seeds,
                                   "small_steps": cfg.small_steps, "compare_from": cfg.compare_from,
                                   "dln_small_steps": cfg.dln_small_steps, "settles_below": cfg.settles_below}
    out |= {f"settle_{q}": float(10 ** np.nanmean(settle(cfg, ics, q))) for q in ("l2", "g_norm", "rel_l2")}
    loss = summary(cfg, hist).set_index(["net", "norm", "lr"])["final train loss"]
    for net in NETS:
        lr, (a, b) = lrs(cfg, net)[0], shown_layers(cfg, net)[:2]
        t = ics_table(cfg, ics, net=net).set_index(["norm", "lr", "layer"])
        out |= {f"{net}_layer_a": a, f"{net}_layer_b": b}
        for norm in NORMS:
            for tag, i in (("a", a), ("b", b)):
                out[f"{net}_cos_{norm}_{tag}"] = float(t.loc[(norm, lr, i), "cos"])
                out[f"{net}_rel_{norm}_{tag}"] = float(t.loc[(norm, lr, i), "rel_l2"])
            out[f"{net}_loss_{norm}"] = float(loss[(net, norm, lr)])
        full = t.reset_index()
        wide = full[full["layer"] > 1].pivot_table(index=["lr", "layer"], columns="norm", values="cos")
        out[f"{net}_bn_lower_cos"] = int((wide["bn"] < wide["none"]).sum())  # layer 1: G' = G by definition
        out[f"{net}_pairs"] = len(wide)
    return out
