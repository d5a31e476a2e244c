"""Chapter "The smoothing effect" (Santurkar et al. 2018, Sec. 3.2; Figs. 4, 10, 11): the shared VGG and
deep-linear-network (DLN) trajectories of ``profiles``, with and without BN, probed from their checkpoints by
``probes.landscape.LineSearch`` (loss and gradient along the gradient and along random directions), and
learning-rate sweeps. Defaults are the quick profile."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

import numpy as np
import pandas as pd

from .. import profiles
from ..claims import VERDICTS, Claim, Criterion, verdict
from ..config import Interval, ListOf, OneOf, param
from ..probes import landscape
from ..probes.landscape import LineSearch

TITLE = "The smoothing effect: the landscape along the gradient"
NORMS, ARCHS = ("none", "bn"), ("vgg", "dln")
DIRECTIONS = {"grad": "along the gradient", "rand": "along a random direction"}
METRICS = {k: label for k, (label, _) in landscape.QUANTITIES.items()}  # the three quantities of Fig. 4
V, D = profiles.VGG["quick"], profiles.DLN["quick"]
_STEPS, _LR = Interval(int, 1, 1_000_000), Interval(float, 0, 100, low_open=True)
_pos = partial(Interval, float, 0, low_open=True)  # _pos(high): a float in (0, high]


@dataclass(frozen=True)
class Params(profiles.VGGParams, profiles.DLNParams):
    probe_every: int = param(25, _STEPS, "VGG steps between probes (paper: every step; choice)")
    mult_min: float = param(0.5, _pos(100), "smallest VGG step multiplier s (paper: 1/2)")
    mult_max: float = param(4.0, _pos(100), "largest VGG step multiplier s (paper: 4)")
    num_mults: int = param(6, Interval(int, 2, 100), "multipliers per line, log-spaced (choice)")
    direction_kind: str = param("unit", OneOf(("unit", "filter")), "random directions: unit or per filter (choice)")
    dln_probe_every: int = param(100, _STEPS, "DLN steps between probes (choice)")
    dln_mult_min: float = param(0.01, _pos(1000), "smallest DLN step multiplier (paper: 1/100)")
    dln_mult_max: float = param(30.0, _pos(1000), "largest DLN step multiplier (paper: 30)")
    sweep_lrs: tuple = param((0.1, 0.5, 2.0), ListOf(_LR, 2), "VGG learning rates of the sweep (choice)")
    sweep_steps: int = param(V["num_steps"], _STEPS, "VGG steps per sweep run (choice)")
    dln_sweep_lrs: tuple = param((1e-7, 1e-6, 1e-5, 1e-4), ListOf(_LR, 2), "DLN learning rates of the sweep (choice)")
    dln_sweep_steps: int = param(D["dln_steps"], _STEPS, "DLN steps per sweep run (choice)")
    trained_below: float = param(0.9, Interval(float, 0, 1, low_open=True, high_open=True),
                                 "a run 'trains' if its final loss < this x its initial loss (choice)")


_SMOKE, _PAPER = {**profiles.VGG["smoke"], **profiles.DLN["smoke"]}, {**profiles.VGG["paper"], **profiles.DLN["paper"]}
PROFILES = {
    "smoke": dict(_SMOKE, probe_every=2, num_mults=3, dln_probe_every=10, sweep_lrs=(0.1, 2.0),
                  sweep_steps=_SMOKE["num_steps"], dln_sweep_lrs=(1e-6, 1e-4), dln_sweep_steps=_SMOKE["dln_steps"]),
    "quick": {},
    "paper": dict(_PAPER, probe_every=100, num_mults=8, dln_probe_every=100, sweep_lrs=(0.01, 0.03, 0.1, 0.3, 1.0, 3.0),
                  sweep_steps=2000, dln_sweep_lrs=(1e-7, 3e-7, 1e-6, 3e-6, 1e-5, 3e-5, 1e-4), dln_sweep_steps=10_000),
}
KEY_SETTINGS = ("dataset", "depth", "width", "lr", "num_steps", "num_seeds", "probe_every", "mult_min", "mult_max",
                "num_mults", "direction_kind", "dln_lr", "dln_steps", "sweep_lrs", "sweep_steps")


def probe_steps(cfg: Params, net: str) -> list[int]:
    """Steps at which ``net`` is probed along the gradient (random directions: every other)."""
    n, every = (cfg.num_steps, cfg.probe_every) if net == "vgg" else (cfg.dln_steps, cfg.dln_probe_every)
    return list(range(0, n, every))


def line_searches(cfg: Params) -> dict[tuple[str, str], tuple[LineSearch, object]]:
    """``{(net, "grad" | "rand"): (LineSearch spec, steps)}``, ``steps`` a function of the History
    (the probe steps the run reached: a diverged run stops early)."""
    out = {}
    for net in ARCHS:
        lo, hi = (cfg.mult_min, cfg.mult_max) if net == "vgg" else (cfg.dln_mult_min, cfg.dln_mult_max)
        line, grid = LineSearch.geometric(lo, hi, cfg.num_mults), probe_steps(cfg, net)
        for d, spec, g in (("grad", line, grid), ("rand", replace(line, direction=cfg.direction_kind,
                                                                   seed=cfg.seed), grid[::2])):
            out[net, d] = (spec, lambda h, g=g: [s for s in g if s < h.steps_done])
    return out


def factor_summary(along: dict, seeds: list[int]) -> pd.DataFrame:
    """Per network, direction, quantity and seed, the standard / BN factor (``landscape.factors``):
    median over probed steps, largest, largest in the first half of training ("early"), last."""
    rows = []
    for (net, d), res in along.items():
        for seed in seeds:
            r = landscape.factors(res["none", seed], res["bn", seed])
            early = r["step"] < r["step"].max() / 2 if len(r["step"]) > 1 else np.ones(len(r["step"]), bool)
            rows += [{"network": net, "direction": d, "metric": m, "seed": seed, "med": np.median(r[m]),
                      "max": r[m].max(), "early": r[m][early].max(), "last": r[m][-1]} for m in METRICS]
    return pd.DataFrame(rows)


def sweep_table(cfg: Params, sweeps: dict) -> pd.DataFrame:
    """One row per (network, norm, lr) of ``{net: Runs keyed (norm, lr, steps, seed)}``: initial loss, final loss
    (mean over the last fifth of the steps, inf if diverged; seed means), diverged seeds, and whether every
    seed trains (final < ``trained_below`` x initial)."""
    rows = []
    for net, runs in sweeps.items():
        for norm, lr in sorted({k[:2] for k in runs}, key=lambda k: (NORMS.index(k[0]), k[1])):
            hs = [h for k, h in runs.hist.items() if k[:2] == (norm, lr)]
            first = [float(h.train_loss[0]) for h in hs]
            last = [np.inf if h.diverged else np.mean(h.train_loss[-max(1, round(h.steps_done / 5)):]) for h in hs]
            rows.append({"network": net, "norm": norm, "lr": lr, "initial loss": np.mean(first),
                         "final loss": np.mean(last), "diverged": sum(h.diverged for h in hs),
                         "trains": all(b < cfg.trained_below * a for a, b in zip(first, last))})
    return pd.DataFrame(rows)


def largest_lr(table: pd.DataFrame, net: str, norm: str) -> float:
    """Largest swept learning rate at which ``net`` with ``norm`` trains (0 if none)."""
    ok = table[(table["network"] == net) & (table["norm"] == norm) & table["trains"]]
    return float(ok["lr"].max()) if len(ok) else 0.0


def numbers(cfg: Params, along: dict, nets: dict, table: pd.DataFrame) -> dict[str, float | str]:
    """The numbers the prose quotes, by glue key, means over seeds: ``<net>_<direction>_<metric>_<stat>``
    factors, ``<net>_{gnorm,early_loss,lr}_<norm>``, and settings the page header lacks."""
    seeds, out = profiles.seeds(cfg), {}
    summ = factor_summary(along, seeds).groupby(["network", "direction", "metric"], sort=False).mean()
    for (net, d, m), r in summ.iterrows():
        out.update({f"{net}_{d}_{m}_{k}": float(r[k]) for k in ("med", "max", "early", "last")})
    for net, norm in ((net, norm) for net in ARCHS for norm in NORMS):
        hs = [nets[net].hist[norm, s] for s in seeds]
        out[f"{net}_gnorm_{norm}"] = np.mean([np.median(along[net, "grad"][norm, s]["grad_norm0"]) for s in seeds])
        out[f"{net}_early_loss_{norm}"] = np.mean([np.mean(h.train_loss[:max(1, h.steps_done // 2)]) for h in hs])
        out[f"{net}_lr_{norm}"] = largest_lr(table, net, norm)
    out.update({k: getattr(cfg, k) for k in ("batch_size", "dln_depth", "dln_width", "dln_points", "dln_probe_every",
                                             "dln_mult_min", "dln_mult_max", "trained_below", "dln_sweep_steps")})
    return {**out, "chance_loss": float(np.log(10)),  # cross-entropy of a uniform guess over 10 classes
            "dln_loss": next(iter(nets["dln"].values())).train.loss,
            "dln_sweep_lrs": ", ".join(f"{v:g}" for v in cfg.dln_sweep_lrs),
            "vgg_step_min": cfg.mult_min * cfg.lr, "vgg_step_max": cfg.mult_max * cfg.lr}


def _on_seeds(factors: list[float], *, above: float = 1.0, partly_above: float | None = None) -> tuple[str, str]:
    """Reproduced if every seed's factor exceeds ``above``; partly if some seed's does (with
    ``partly_above``: if every seed's exceeds that lower bar)."""
    f = np.asarray(factors, dtype=float)
    part = (f > partly_above).all() if partly_above is not None else (f > above).any()
    return (", ".join(f"x{v:.2f}" for v in f) + f" ({len(f)} seed{'s' * (len(f) > 1)})",
            verdict(bool((f > above).all()), partly=bool(part)))


def _all_metrics(factors: dict[str, list[float]]) -> tuple[str, str]:
    """Reproduced if every quantity's factor exceeds 1 on every seed; partly if two of the three do."""
    ok = [bool((np.asarray(v) > 1).all()) for v in factors.values()]
    return ", ".join(f"{m} x{np.mean(v):.2f}" for m, v in factors.items()), verdict(all(ok), partly=sum(ok) >= 2)


def _larger_lr(bn: float, none: float, lrs: str) -> tuple[str, str]:
    return f"BN {bn:g} vs standard {none:g} (swept {lrs})", verdict(bn > none > 0, partly=bn > none == 0)


SRC, SRC10, SRC31 = (f"Santurkar et al. 2018, Sec. {s}" for s in ("3.2, Fig. 4", "3.2, Fig. 10", "3.1"))
_MED = "median over probed steps of standard / BN {} > 1 on every seed (partly: on some seeds)"
_ALL = ("median standard / BN factor > 1 for loss range, gradient change and effective beta on every seed{} "
        "(partly: for two of the three)")
_LR = ("largest swept lr at which every seed trains (final loss < {trained_below:g} x initial): BN > standard > 0 "
       "(partly: BN trains at some swept lr, the standard network at none)")
CRITERIA = {
    **{f"vgg_{m}": Criterion(f"VGG: {claim} with BN", SRC, _MED.format(what), _on_seeds) for m, claim, what in (
        ("loss_range", "the loss varies less along the gradient", "loss range"),
        ("grad_diff", "the gradient is more predictive", "largest gradient change"),
        ("beta_eff", "effective beta-smoothness is lower", "effective beta-smoothness"))},
    "vgg_early": Criterion("VGG: ... by close to two orders of magnitude early in training", SRC,
                           "largest standard / BN gradient-change factor in the first half of training (the claim is "
                           "about a maximum) > 100 on every seed (partly: > 10 on every seed)",
                           lambda factors: _on_seeds(factors, above=100, partly_above=10)),
    "dln": Criterion("DLN: the smoothing effect is present in deep linear networks too", SRC10,
                     _ALL.format(""), _all_metrics),
    **{f"{net}_random": Criterion(f"{net.upper()}: random directions behave alike", "Santurkar et al. 2018, Sec. 3.2",
                                  _ALL.format(", along random ({kind}) directions"), _all_metrics) for net in ARCHS},
    **{f"{net}_lr": Criterion(f"{net.upper()}: BN trains at larger learning rates", SRC31, _LR, _larger_lr)
       for net in ARCHS},
}


def claims(cfg: Params, along: dict, table: pd.DataFrame) -> list[Claim]:
    """The chapter's claims, each decided by its criterion on the per-seed factors."""
    s = factor_summary(along, profiles.seeds(cfg)).set_index(["network", "direction", "metric"]).sort_index()
    seeds = lambda net, m, col="med", d="grad": list(s.loc[[(net, d, m)], col])  # noqa: E731
    rows = [CRITERIA[f"vgg_{m}"](factors=seeds("vgg", m)) for m in ("loss_range", "grad_diff")]
    rows += [CRITERIA["vgg_early"](factors=seeds("vgg", "grad_diff", "early")),
             CRITERIA["vgg_beta_eff"](factors=seeds("vgg", "beta_eff")),
             CRITERIA["dln"](factors={m: seeds("dln", m) for m in METRICS})]
    rows += [CRITERIA[f"{net}_random"](factors={m: seeds(net, m, d="rand") for m in METRICS}, kind=cfg.direction_kind)
             for net in ARCHS]
    lrs = {"vgg": cfg.sweep_lrs, "dln": cfg.dln_sweep_lrs}
    return rows + [CRITERIA[f"{net}_lr"](bn=largest_lr(table, net, "bn"), none=largest_lr(table, net, "none"),
                                         lrs=", ".join(f"{v:g}" for v in lrs[net]), trained_below=cfg.trained_below)
                   for net in ARCHS]


def tally(rows: list[Claim]) -> dict[str, int]:
    """How many claims got each verdict (``n_<verdict>``, spaces as underscores) and in all."""
    return {**{f"n_{v.replace(' ', '_')}": [c.verdict for c in rows].count(v) for v in VERDICTS}, "n_claims": len(rows)}
