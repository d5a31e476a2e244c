"""Chapter "The smoothing effect" (Santurkar et al. 2018, Sec. 3.2; Figs. 4, 10, 11): the shared VGG and
deep-linear-network (DLN) trajectories of ``profiles``, with and without BN, probed from their checkpoints by
``probes.landscape.LineSearch`` (loss and gradient along the gradient and along random directions), and
learning-rate sweeps. Defaults are the quick profile."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

import numpy as np
import pandas as pd

from .. import plots, profiles
from ..claims import CHANCE_LOSS, Claim, Criterion, Gap, left_chance, less, verdict
from ..config import Interval, ListOf, OneOf, param
from ..probes import landscape
from ..probes.landscape import ActivationGrads, LineSearch
from ..train import History
from . import ics_measure
from .ics_measure import schedule
from .training import listed

TITLE = "The smoothing effect: the landscape along the gradient"
NORMS, ARCHS = ("none", "bn"), ("vgg", "dln")
DIRECTIONS = {"grad": "along the gradient", "rand": "along a random direction"}
METRICS = {k: label for k, (label, _) in landscape.QUANTITIES.items()}  # the three quantities of Fig. 4
_STEPS, _LR = Interval(int, 1, 1_000_000), Interval(float, 0, 100, low_open=True)
_pos = partial(Interval, float, 0, low_open=True)  # _pos(high): a float in (0, high]
_FRAC = Interval(float, 0, 1, low_open=True, high_open=True)


@dataclass(frozen=True)
class Params(profiles.VGGParams, profiles.DLNParams):
    probe_dense_every: int = param(25, _STEPS, "VGG steps between probes early on (paper: every step; choice)")
    probe_dense_until: int = param(300, _STEPS, "VGG step up to which probes are dense (choice: the standard "
                                   "net's plateau ends near step 300)")
    probe_every: int = param(100, _STEPS, "VGG steps between probes after that (choice)")
    mult_min: float = param(0.5, _pos(100), "smallest VGG step multiplier s (paper: 1/2)")
    mult_max: float = param(4.0, _pos(100), "largest VGG step multiplier s (paper: 4)")
    num_mults: int = param(6, Interval(int, 2, 100), "multipliers per line, log-spaced (choice)")
    beyond_mults: tuple = param((8.0, 16.0), ListOf(_pos(1000)), "VGG multipliers beyond mult_max along the "
                                "gradient, past the paper's cap of 0.4 x the gradient (choice: 0.8 and 1.6 x it at "
                                "lr 0.1)")
    direction_kind: str = param("unit", OneOf(("unit", "filter")), "random directions: unit or per filter (choice)")
    dln_probe_dense_every: int = param(200, _STEPS, "DLN steps between probes early on (choice: the shared "
                                       "DLN's checkpoints)")
    dln_probe_dense_until: int = param(2000, _STEPS, "DLN step up to which probes are dense (choice)")
    dln_probe_every: int = param(1000, _STEPS, "DLN steps between probes after that (choice)")
    dln_mult_min: float = param(0.01, _pos(1000), "smallest DLN step multiplier (paper: 1/100)")
    dln_mult_max: float = param(30.0, _pos(1000), "largest DLN step multiplier (paper: 30)")
    sweep_lrs: tuple = param((0.02, 0.1, 0.2, 0.5, 1.0, 2.0), ListOf(_LR, 2), "VGG learning rates of the sweep "
                             "(choice)")
    sweep_steps: int = param(300, _STEPS, "VGG steps per sweep run (choice: the standard net leaves its plateau "
                             "near step 300 at lr 0.1; a shared run at a swept lr is cut to this length)")
    dln_sweep_lrs: tuple = param((1e-7, 1e-6, 1e-5, 1e-4), ListOf(_LR, 2), "DLN learning rates of the sweep "
                                 "(choice)")
    dln_sweep_steps: int = param(2000, _STEPS, "DLN steps per sweep run (paper: 10,000; quick: 2,000, CPU "
                                 "budget; a shared run at a swept lr is cut to this length)")
    sweep_seeds: int = param(1, Interval(int, 1, 20), "seeds per swept learning rate (choice; CPU budget)")
    compare_from: int = param(300, _STEPS, "VGG factors are compared over the probes from this step on (choice: "
                              "after the standard net's plateau, near step 300 at lr 0.1)")
    k: float = param(2.0, Interval(float, 0, 100), "a gap over seeds holds if it holds on every seed or its mean "
                     "exceeds k x the seed spread (choice: twice the seed-to-seed standard deviation)")
    chance_frac: float = param(0.9, _FRAC, "a VGG run trains if its tail loss < this x ln 10 (choice: clearly off "
                               "chance; also the precondition of every VGG comparison)")
    trained_below: float = param(0.9, _FRAC, "a DLN run trains if its tail loss < this x its initial loss "
                                 "(choice: a 10% drop)")
    tail_frac: float = param(0.2, _FRAC, "a run is judged on the mean loss over this last fraction of its steps "
                             "(choice)")
    early_factor: float = param(100.0, _pos(1e6), "'two orders of magnitude': the early factor must exceed this "
                                "(paper's wording)")
    early_partly: float = param(10.0, _pos(1e6), "the weaker bar of the early factor (choice: one order of "
                                "magnitude)")
    layer_share: float = param(0.5, _FRAC, "'partly' of the gradient-magnitude row: BN lower in more than this "
                               "share of the layers (choice: a majority)")


THRESHOLDS = ("compare_from", "k", "chance_frac", "trained_below", "tail_frac", "early_factor", "early_partly",
              "layer_share")
_SMOKE, _PAPER = {**profiles.VGG["smoke"], **profiles.DLN["smoke"]}, {**profiles.VGG["paper"], **profiles.DLN["paper"]}
PROFILES = {
    "smoke": dict(_SMOKE, probe_dense_every=2, probe_dense_until=2, probe_every=2, num_mults=3, beyond_mults=(8.0,),
                  dln_probe_dense_every=10, dln_probe_dense_until=10, dln_probe_every=10, sweep_lrs=(0.1, 2.0),
                  sweep_steps=_SMOKE["num_steps"], dln_sweep_lrs=(1e-6, 1e-4), dln_sweep_steps=_SMOKE["dln_steps"],
                  compare_from=2),
    "quick": {},
    "paper": dict(_PAPER, probe_dense_every=50, probe_dense_until=1000, probe_every=250, num_mults=8,
                  dln_probe_dense_every=20, dln_probe_dense_until=1000, dln_probe_every=100,
                  sweep_lrs=(0.01, 0.03, 0.1, 0.3, 1.0, 3.0), sweep_steps=2000,
                  dln_sweep_lrs=(1e-7, 3e-7, 1e-6, 3e-6, 1e-5, 3e-5, 1e-4), dln_sweep_steps=10_000, sweep_seeds=3,
                  compare_from=1000),
}
KEY_SETTINGS = ("dataset", "depth", "width", "lr", "num_steps", "num_seeds", "probe_dense_every", "probe_dense_until",
                "probe_every", "mult_min", "mult_max", "num_mults", "beyond_mults",
                "direction_kind", "dln_lr", "dln_steps",
                "dln_probe_dense_every", "dln_probe_dense_until", "dln_probe_every", "sweep_lrs", "sweep_steps",
                "dln_sweep_steps", "sweep_seeds")


def probe_steps(cfg: Params, net: str) -> list[int]:
    """Steps at which ``net`` is probed along the gradient, dense early then sparse (random
    directions: every other)."""
    if net == "vgg":
        return list(schedule(cfg.num_steps, cfg.probe_dense_every, cfg.probe_dense_until, cfg.probe_every))
    return list(schedule(cfg.dln_steps, cfg.dln_probe_dense_every, cfg.dln_probe_dense_until, cfg.dln_probe_every))


def line_searches(cfg: Params) -> dict[tuple[str, str], tuple[LineSearch, object]]:
    """``{(net, "grad" | "rand"): (LineSearch spec, steps)}``, ``steps`` a function of the History
    (the probe steps the run reached: a diverged run stops early)."""
    out = {}
    for net in ARCHS:
        lo, hi = (cfg.mult_min, cfg.mult_max) if net == "vgg" else (cfg.dln_mult_min, cfg.dln_mult_max)
        line, grid = LineSearch.geometric(lo, hi, cfg.num_mults), probe_steps(cfg, net)
        longer = replace(line, multipliers=line.multipliers + tuple(cfg.beyond_mults)) if net == "vgg" else line
        for d, spec, g in (("grad", longer, grid), ("rand", replace(line, direction=cfg.direction_kind,
                                                                     seed=cfg.seed), grid[::2])):
            out[net, d] = (spec, lambda h, g=g: [s for s in g if s < h.steps_done])
    return out


def split_line(cfg: Params, along: dict) -> tuple[dict, dict]:
    """The VGG's gradient line cut at ``mult_max``: ``along`` with every result on the paper's
    segment (s <= mult_max; others unchanged) and ``{("vgg", "grad"): results beyond it}``."""
    def cut(res: dict, inside: bool) -> dict:
        return {k: landscape.restrict(p, (p["multipliers"][0] <= cfg.mult_max * (1 + 1e-9)) == inside)
                for k, p in res.items()}
    vgg = along["vgg", "grad"]
    return {**along, ("vgg", "grad"): cut(vgg, True)}, {("vgg", "grad"): cut(vgg, False)}


def gradient_magnitudes(cfg: Params, nets: dict, store_probe) -> dict[str, dict[str, np.ndarray]]:
    """Per site, ``{norm: (seeds, layers)}`` per-seed medians over the steps from ``compare_from`` on
    of the VGG's gradient norms: ``act`` = ||dL/dy_i|| at the output of weight layer i (the input
    of its normaliser: the paper's site), from ``ActivationGrads`` at the probe steps, and
    ``weight`` = ||dL/dW_i||, from the always-on records. ``store_probe(spec, steps)`` probes the
    VGG core runs (``Runs.probe``)."""
    steps = [s for s in probe_steps(cfg, "vgg") if s >= cfg.compare_from]
    act = store_probe(ActivationGrads(), lambda h: [s for s in steps if s < h.steps_done])
    out: dict[str, dict[str, np.ndarray]] = {"act": {}, "weight": {}}
    for norm in NORMS:
        hs = [nets["vgg"].hist[norm, s] for s in profiles.seeds(cfg)]
        late = lambda step: np.asarray(step) >= cfg.compare_from  # noqa: E731
        out["act"][norm] = np.stack([np.median(act[norm, s]["act"][late(act[norm, s]["step"])], axis=0)
                                     for s in profiles.seeds(cfg)])
        out["weight"][norm] = np.stack([np.median(h.records["grad_norm"][late(h.records["step"])], axis=0)
                                        for h in hs])
    return out


def prefix(h: History, n: int) -> History:
    """The first ``n`` steps of a run: a shorter run at the same constant learning rate and seed
    sees the same batches, so it is exactly this."""
    keep = h.eval_step < n
    return replace(h, train_loss=h.train_loss[:n], train_acc=h.train_acc[:n], time_s=h.time_s[:n],
                   eval_step=h.eval_step[keep], test_loss=h.test_loss[keep], test_acc=h.test_acc[keep],
                   diverged=bool(h.diverged and h.steps_done <= n), probes={}, records={})


def sweep_runs(cfg: Params, store, specs: dict, shared: dict) -> dict[str, dict[tuple, History]]:
    """``{net: {(norm, lr, seed): History}}`` of the sweeps: a swept lr with a longer shared run
    (``shared[net]``: {lr: (specs, seeds)}) takes that run's first steps, every other lr trains
    its own short run (``specs[net]``; ``sweep_seeds`` seeds)."""
    seeds = profiles.seeds(cfg, "sweep_seeds")
    out = {}
    plan = {"vgg": (cfg.sweep_lrs, cfg.sweep_steps), "dln": (cfg.dln_sweep_lrs, cfg.dln_sweep_steps)}
    for net, (lrs, n) in plan.items():
        out[net] = {}
        usable = {lr: v for lr, v in shared[net].items() if v[0][2].num_steps >= n and set(seeds) <= set(v[1])}
        own = [lr for lr in lrs if lr not in usable]
        if own:
            r = store.sweep(*specs[net], norm=list(NORMS), lr=own, num_steps=[n], seeds=seeds)
            out[net] |= {(k[0], k[1], k[-1]): h for k, h in r.hist.items()}
        for lr in (lr for lr in lrs if lr in usable):
            r = store.sweep(*usable[lr][0], norm=list(NORMS), lr=[lr], seeds=seeds)
            out[net] |= {(k[0], k[1], k[-1]): prefix(h, n) for k, h in r.hist.items()}
    return out


def shared_runs(cfg: Params) -> dict:
    """The longer shared trajectories the sweeps reuse: VGG at lr (core) and 0.5 (variant), DLN at
    dln_lr (core) and 1e-7 (the ICS chapter's second lr, its first seed)."""
    core, variant = profiles.vgg_specs(cfg), profiles.vgg_specs(cfg, variant=True)
    dln = profiles.dln_specs(cfg)
    small = (*dln[:2], replace(dln[2], num_steps=ics_measure.Params.dln_small_steps))  # that chapter's quick length
    return {"vgg": {cfg.lr: (core, profiles.seeds(cfg)), 0.5: (variant, profiles.seeds(cfg, "variant_seeds"))},
            "dln": {cfg.dln_lr: (dln, profiles.seeds(cfg)), 1e-7: (small, [cfg.seed])}}


def tail(h: History, frac: float) -> float:
    """Mean loss over the last ``frac`` of the steps run (inf if diverged)."""
    return float("inf") if h.diverged else float(np.mean(h.train_loss[-max(1, round(h.steps_done * frac)):]))


def trains(cfg: Params, net: str, h: History) -> bool:
    """VGG: tail loss < ``chance_frac`` x ln 10; DLN: tail loss < ``trained_below`` x initial."""
    if net == "vgg":
        return left_chance([tail(h, cfg.tail_frac)], frac=cfg.chance_frac)
    return tail(h, cfg.tail_frac) < cfg.trained_below * float(h.train_loss[0])


def factor_summary(cfg: Params, along: dict, seeds: list[int]) -> pd.DataFrame:
    """Per network, direction, quantity and seed, the standard / BN factor (``landscape.factors``):
    the median over probed steps (VGG: from ``compare_from`` on), the largest in the first half of
    training ("early") and the last."""
    rows = []
    for (net, d), res in along.items():
        for seed in seeds:
            r = landscape.factors(res["none", seed], res["bn", seed])
            steps, n = r["step"], cfg.num_steps if net == "vgg" else cfg.dln_steps
            late = steps >= (cfg.compare_from if net == "vgg" else 0)
            early = steps < n / 2
            rows += [{"network": net, "direction": d, "metric": m, "seed": seed,
                      "med": float(np.median(r[m][late])) if late.any() else np.nan,
                      "early": float(r[m][early].max()) if early.any() else np.nan, "last": r[m][-1]}
                     for m in METRICS]
    return pd.DataFrame(rows)


def sweep_table(cfg: Params, sweeps: dict) -> pd.DataFrame:
    """One row per (network, norm, lr) of ``{net: {(norm, lr, seed): History}}``: initial loss, tail loss
    (seed means; inf if diverged), diverged seeds, and whether every seed trains (``trains``)."""
    rows = []
    for net, hist in sweeps.items():
        for norm, lr in sorted({k[:2] for k in hist}, key=lambda k: (NORMS.index(k[0]), k[1])):
            hs = [h for k, h in hist.items() if k[:2] == (norm, lr)]
            rows.append({"network": net, "norm": norm, "lr": lr, "seeds": len(hs),
                         "steps": max(h.steps_done for h in hs),
                         "initial loss": np.mean([float(h.train_loss[0]) for h in hs]),
                         "tail loss": np.mean([tail(h, cfg.tail_frac) for h in hs]),
                         "diverged": sum(h.diverged for h in hs), "trains": all(trains(cfg, net, h) for h in hs)})
    return pd.DataFrame(rows)


SWEEP_COLUMNS = {"network": "network", "norm": "normaliser", "lr": "learning rate", "diverged": "diverged runs",
                 "trains": "trains"}


def styled_sweep(table: pd.DataFrame):
    """``sweep_table`` as the page shows it: network and normaliser in words, yes / no for ``trains``,
    without the seeds column (every rate runs ``sweep_seeds``, which the prose says)."""
    num = ics_measure.number_text
    fmt = {"network": {"vgg": "VGG", "dln": "DLN"}.get, "norm": plots.label, "lr": ics_measure.lr_text,
           "initial loss": num, "tail loss": lambda v: num(v) if np.isfinite(v) else "diverged",
           "trains": lambda ok: "yes" if ok else "no"}
    return (table.drop(columns="seeds").rename(columns=SWEEP_COLUMNS).style
            .format({SWEEP_COLUMNS.get(k, k): f for k, f in fmt.items()}).hide(axis="index"))


def largest_lr(table: pd.DataFrame, net: str, norm: str) -> float:
    """Largest swept learning rate at which ``net`` with ``norm`` trains (0 if none)."""
    ok = table[(table["network"] == net) & (table["norm"] == norm) & table["trains"]]
    return float(ok["lr"].max()) if len(ok) else 0.0



# ---------------------------------------------------------------- criteria (pure functions of numbers)

def _log_gap(factors: list[float], k: float, margin: float = 0.0) -> Gap:
    """"factor > 10**margin" over seeds, on log10 factors (``claims.Gap``)."""
    return less(np.zeros(len(factors)), np.log10(np.asarray(factors, float)), k=k, margin=margin)


def _pre(ok: bool, what: str) -> str:
    return "" if ok else f"precondition fails: {what}; "


def _factor(factors: list[float], trained: bool, k: float) -> tuple[str, str]:
    """Standard / BN factor > 1 over paired seeds (on log10 factors)."""
    g = _log_gap(factors, k)
    return (_pre(trained, "the standard net did not leave chance on every seed, or a run diverged") +
            ", ".join(f"x{v:.2f}" for v in factors) + f" (log10 factors; {g.seeds()})", g.verdict(precondition=trained))


def _early(factors: list[float], trained: bool, k: float, early_factor: float, early_partly: float) -> tuple[str, str]:
    """The early maximum factor > ``early_factor`` over seeds (partly: > ``early_partly``)."""
    g, weak = _log_gap(factors, k, np.log10(early_factor)), _log_gap(factors, k, np.log10(early_partly))
    return (_pre(trained, "the standard net did not leave chance on every seed, or a run diverged") +
            ", ".join(f"x{v:.3g}" for v in factors) + f" (largest per seed; {g.seeds()})",
            "inconclusive" if trained and not g.holds and not weak.holds and weak.swamped
            else verdict(g.holds, partly=weak.holds, precondition=trained))


def _all_metrics(factors: dict[str, list[float]], trained: bool, k: float) -> tuple[str, str]:
    """Every quantity's factor > 1 over seeds; partly: two of the three; seeds that swamp the
    gap of a quantity that decides it: inconclusive."""
    gaps = {m: _log_gap(v, k) for m, v in factors.items()}
    n_ok = sum(g.holds for g in gaps.values())
    text = "; ".join(f"{m} " + ", ".join(f"x{x:.2f}" for x in factors[m]) + f" ({g.seeds()})" for m, g in gaps.items())
    undecided = n_ok < 2 and n_ok + sum(g.swamped for g in gaps.values()) >= 2
    v = "inconclusive" if trained and undecided else verdict(n_ok == len(gaps), partly=n_ok >= 2, precondition=trained)
    return _pre(trained, "the standard net did not train on every seed, or a run diverged") + text, v


def _lower_grads(act_bn: np.ndarray, act_none: np.ndarray, weight_bn: np.ndarray, weight_none: np.ndarray,
                 trained: bool, k: float, layer_share: float) -> tuple[str, str]:
    """Per layer, BN's activation-gradient norm < the standard net's over paired seeds (``Gap``;
    arrays (seeds, layers)); partly: in more than ``layer_share`` of the layers; undecided
    (swamped) layers that could change the verdict: inconclusive. The weight-gradient reading
    (not the paper's site) is reported, not judged."""
    gaps = [less(act_bn[:, i], act_none[:, i], k=k) for i in range(act_bn.shape[1])]
    n, ok, swamped = len(gaps), sum(g.holds for g in gaps), sum(g.swamped for g in gaps)
    wins = sum(less(weight_bn[:, i], weight_none[:, i], k=k).holds for i in range(n))
    ratio = ", ".join(f"{i + 1}: x{r:.2g}" for i, r in enumerate(np.mean(act_none / act_bn, axis=0)))
    seeds = f"{act_bn.shape[0]} seed{'s' * (act_bn.shape[0] > 1)}"
    text = (f"standard / BN ||dL/dy|| per layer (mean over {seeds}) {ratio}; BN lower in {ok} of {n} "
            f"layers ({swamped} swamped). Weight gradients (records, not the paper's site): BN lower in {wins} of {n}")
    best, worst = (verdict(m == n, partly=m > n * layer_share) for m in (ok + swamped, ok))
    v = "inconclusive" if trained and best != worst else verdict(ok == n, partly=ok > n * layer_share,
                                                                  precondition=trained)
    return _pre(trained, "the standard net did not leave chance on every seed, or a run diverged") + text, v


def _larger_lr(bn: float, none: float, lrs: str, seeds: int) -> tuple[str, str]:
    """BN's largest training lr > the standard net's; inconclusive if the standard net trains at none."""
    return (_pre(none > 0, "the standard net trains at no swept lr") +
            f"BN {bn:g} vs standard {none:g} (swept {lrs}; {seeds} seed{'s' * (seeds > 1)})",
            verdict(bn > none, precondition=none > 0))


SRC, SRC10, SRC31 = (f"Santurkar et al. 2018, Sec. {s}" for s in ("3.2, Fig. 4", "3.2, Fig. 10", "3.1"))
_PRE_VGG = "precondition: the standard net's tail loss < {chance_frac:g} x ln 10 on every seed, no run diverged. "
_GAP = ("Holds if it holds on every seed or the mean log10 factor exceeds {k:g} x its seed spread; seeds that "
        "disagree within that spread: inconclusive.")
_MED = ("per seed, the median over the probes from step {compare_from} on of the standard / BN @ > 1. " + _GAP)
_ALL = ("per seed, the median over probes of the standard / BN factor > 1, for each of loss range, gradient change "
        "and effective beta@. " + _GAP + " Partly: it holds for two of the three.")
_LR = ("precondition: the standard net trains at some swept lr. Largest swept lr at which every seed trains "
       "(mean loss over the last {tail_frac:g} of the steps {rule}): BN > standard.")
CRITERIA = {
    **{f"vgg_{m}": Criterion(f"VGG: {claim} with BN", SRC, _PRE_VGG + _MED.replace("@", what), _factor)
       for m, claim, what in (
        ("loss_range", "the loss varies less along the gradient", "loss range"),
        ("grad_diff", "the gradient is more predictive", "largest gradient change"),
        ("beta_eff", "effective β-smoothness is lower", "effective β-smoothness"))},
    "vgg_early": Criterion("VGG: the gradient is more predictive with BN by close to two orders of magnitude "
                           "early in training", SRC,
                           _PRE_VGG + "per seed, the largest standard / BN gradient-change factor over the probes of "
                           "the first half of training (the claim is about a maximum) > {early_factor:g}; over "
                           "seeds as below. Partly: > {early_partly:g}. " + _GAP, _early),
    "dln": Criterion("DLN: the smoothing effect is present in deep linear networks too", SRC10,
                     "precondition: the standard DLN's tail loss < {trained_below:g} x its initial loss on every seed, "
                     "no run diverged. " + _ALL.replace("@", ""), _all_metrics),
    "vgg_random": Criterion("VGG: random directions behave alike", "Santurkar et al. 2018, Sec. 3.2",
                            _PRE_VGG + _ALL.replace("@", ", along random ({kind}) directions, "
                                                    "probes from step {compare_from} on"), _all_metrics),
    "dln_random": Criterion("DLN: random directions behave alike", "Santurkar et al. 2018, Sec. 3.2",
                            "precondition: as for the DLN row. "
                            + _ALL.replace("@", ", along random ({kind}) directions"),
                            _all_metrics),
    **{f"{net}_lr": Criterion(f"{net.upper()}: BN trains at larger learning rates", SRC31, _LR, _larger_lr)
       for net in ARCHS},
    "vgg_beyond": Criterion("VGG: BN keeps smoothing beyond 0.4 x the gradient", "Santurkar et al. 2018, Fig. 4 "
                            "caption", _PRE_VGG + "On the part of the gradient line beyond s = {mult_max:g} (steps "
                            "{beyond}), " + _ALL.replace("@", "").replace("median over probes", "median over the "
                                                                             "probes from step {compare_from} on"),
                            _all_metrics),
    "vgg_lipschitz": Criterion(
        "VGG: BN lowers gradient magnitudes (a more Lipschitz loss)", SRC31 + ", Thm 4.1",
        _PRE_VGG + "Site: the output of each weight layer, the input of its normaliser (the paper's y in Thm 4.1). "
        "Per layer and seed, the median over the probes from step {compare_from} on of ||dL/dy|| on the step's "
        "batch; BN < standard at every layer, each as a gap over paired seeds. " + _GAP + " Partly: at more than "
        "{layer_share:g} of the layers. The weight-gradient norms ||dL/dW|| (always-on records) are reported, "
        "not judged: they are not the paper's site.", _lower_grads),
}


def preconditions(cfg: Params, nets: dict) -> dict[str, bool]:
    """Per network: every standard core run trains (``trains``) and no core run diverged."""
    seeds = profiles.seeds(cfg)
    return {net: all(trains(cfg, net, nets[net].hist["none", s]) for s in seeds)
            and not any(nets[net].hist[n, s].diverged for n in NORMS for s in seeds) for net in ARCHS}


def claims(cfg: Params, along: dict, nets: dict, table: pd.DataFrame, beyond: dict, grads: dict) -> list[Claim]:
    """The chapter's claims, each decided by its criterion on the per-seed factors (``beyond``:
    ``split_line``'s; ``grads``: ``gradient_magnitudes``)."""
    s = factor_summary(cfg, along, profiles.seeds(cfg)).set_index(["network", "direction", "metric"]).sort_index()
    seeds = lambda net, m, col="med", d="grad": list(s.loc[[(net, d, m)], col])  # noqa: E731
    ok = preconditions(cfg, nets)
    th = {n: getattr(cfg, n) for n in THRESHOLDS}
    rows = [CRITERIA[f"vgg_{m}"](factors=seeds("vgg", m), trained=ok["vgg"], **th) for m in ("loss_range", "grad_diff")]
    rows += [CRITERIA["vgg_early"](factors=seeds("vgg", "grad_diff", "early"), trained=ok["vgg"], **th),
             CRITERIA["vgg_beta_eff"](factors=seeds("vgg", "beta_eff"), trained=ok["vgg"], **th),
             CRITERIA["dln"](factors={m: seeds("dln", m) for m in METRICS}, trained=ok["dln"], **th)]
    rows += [CRITERIA[f"{net}_random"](factors={m: seeds(net, m, d="rand") for m in METRICS}, trained=ok[net],
                                       kind=cfg.direction_kind, **th) for net in ARCHS]
    lrs = {"vgg": cfg.sweep_lrs, "dln": cfg.dln_sweep_lrs}
    rule = {"vgg": f"< {cfg.chance_frac:g} x ln 10", "dln": f"< {cfg.trained_below:g} x the initial loss"}
    rows += [CRITERIA[f"{net}_lr"](bn=largest_lr(table, net, "bn"), none=largest_lr(table, net, "none"),
                                   lrs=", ".join(f"{v:g}" for v in lrs[net]), seeds=cfg.sweep_seeds,
                                   rule=rule[net], **th) for net in ARCHS]
    b = factor_summary(cfg, beyond, profiles.seeds(cfg)).set_index("metric")
    far = ", ".join(f"{m * cfg.lr:.2g}" for m in cfg.beyond_mults)
    rows.append(CRITERIA["vgg_beyond"](factors={m: list(b.loc[[m], "med"]) for m in METRICS}, trained=ok["vgg"],
                                       mult_max=cfg.mult_max, beyond=f"{far} x the gradient", **th))
    return rows + [CRITERIA["vgg_lipschitz"](**{f"{site}_{n}": grads[site][n] for site in grads for n in NORMS},
                                             trained=ok["vgg"], **th)]


def numbers(cfg: Params, along: dict, nets: dict, table: pd.DataFrame) -> dict[str, float | str]:
    """The numbers the prose quotes, by glue key, means over seeds: ``<net>_<direction>_<metric>_<stat>``
    factors, ``<net>_{gnorm,early_loss,lr}_<norm>``, and settings the page header lacks."""
    seeds, out = profiles.seeds(cfg), {}
    summ = factor_summary(cfg, along, seeds).groupby(["network", "direction", "metric"], sort=False).mean()
    for (net, d, m), r in summ.iterrows():
        out.update({f"{net}_{d}_{m}_{k}": float(r[k]) for k in ("med", "early", "last")})
    for net, norm in ((net, norm) for net in ARCHS for norm in NORMS):
        hs = [nets[net].hist[norm, s] for s in seeds]
        out[f"{net}_gnorm_{norm}"] = np.mean([np.median(along[net, "grad"][norm, s]["grad_norm0"]) for s in seeds])
        out[f"{net}_early_loss_{norm}"] = np.mean([np.mean(h.train_loss[:max(1, h.steps_done // 2)]) for h in hs])
        out[f"{net}_lr_{norm}"] = ics_measure.lr_text(largest_lr(table, net, norm))
    out.update({k: getattr(cfg, k) for k in ("batch_size", "dln_depth", "dln_width", "dln_points", "dln_mult_min",
                                             "dln_mult_max", "trained_below", "dln_sweep_steps", "compare_from",
                                             "chance_frac", "tail_frac", "sweep_seeds")})
    return {**out, "chance_loss": CHANCE_LOSS, "vgg_chance_bar": cfg.chance_frac * CHANCE_LOSS,
            "dln_loss": next(iter(nets["dln"].values())).train.loss,
            "dln_sweep_lrs": listed(cfg.dln_sweep_lrs, ics_measure.lr_text),
            "sweep_lrs_text": listed(cfg.sweep_lrs, "{:g}".format),
            "vgg_step_min": cfg.mult_min * cfg.lr, "vgg_step_max": cfg.mult_max * cfg.lr,
            "seed_caption": plots.seed_caption(seeds)}


def new_numbers(cfg: Params, beyond: dict, grads: dict) -> dict[str, float | int | str]:
    """The numbers the prose of the two newer sections quotes: ``beyond_<metric>`` factors (means
    over seeds of the per-seed medians) and, per site, ``<site>_bn_lower`` layers where the mean
    over seeds of BN's gradient norm is below the standard net's, of ``layers``."""
    b = factor_summary(cfg, beyond, profiles.seeds(cfg)).groupby("metric")["med"].mean()
    out: dict[str, float | int | str] = {f"beyond_{m}": float(b[m]) for m in METRICS}
    out["beyond_steps"] = listed([m * cfg.lr for m in cfg.beyond_mults], "{:.2g}".format)
    out["beyond_mults_text"] = listed(cfg.beyond_mults, "{:g}".format)
    out["paper_cap"] = cfg.mult_max * cfg.lr
    for site, g in grads.items():
        out[f"{site}_bn_lower"] = int(np.sum(g["bn"].mean(0) < g["none"].mean(0)))
    out["layers"] = int(grads["act"]["bn"].shape[1])
    return out
